"""The `autoencoder` LTE variant: a learned encoder, a decoder fixed to the frozen content basis.

The paper (arXiv 2604.08181, Dzhoha & Malykh) reports that "an asymmetric autoencoder with a fixed
decoder grounded in the semantic basis" fine-tunes the LTE from behaviour "while preserving high
inertia" (+2.1% relative NDCG@500 over the uniform average, offline). The body of the paper is not
available (../shared/PAPER-NOTES.md section 0); every concrete choice below is ours and is argued,
with measurements, in docs/autoencoder.md.

Model (C = basis vectors (n, d), unit rows; W = the user's lagged-window items, as basis rows):
    u       = mean_{i in W} C_i                                   the uniform LTE
    a_i     = k(C_i) . q(u) / sqrt(h) + g . C_i + r(age_i)         attention logit per window item
    p       = sum_i softmax(a)_i C_i                               attention-pooled basis vector
    z       = p + M p + b                                          the autoencoder LTE, in basis space
    decoder = softmax(C z / T) over the whole catalog              FIXED: C is a buffer, T frozen
q, g, r, M and b start at zero, so an untrained encoder returns exactly u (the uniform LTE): the
learned part is a correction on top of the average, and `inertia` penalises ||z - u||^2 to keep it one.
The encoder has no per-item parameters: it reads items only through their basis rows, so it applies
unchanged to items added by a basis extension (rows appended, old rows bit-identical).

Training target (config.target): "next_period" = the user's items in [t, t + horizon) for an LTE
computed at t (what the LTE is used for downstream), or "same_window" = the window's own items
(plain reconstruction). Point-in-time: every example comes from events with ts < the training as_of.

This module imports torch but never Dagster or MLflow; the lead's asset and registry code call it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    import duckdb

    from lte.basis import Basis
    from lte.config import LteSettings
    from lte.storage import ArtifactStore

CHECKPOINT_FORMAT = "lte-autoencoder/1"
_DAY_S = 86400.0
_MASKED_LOGIT = -1e9  # finite, so a user with no window items gets zero weights, never NaN


@dataclass(frozen=True)
class AutoencoderConfig:
    """Hyper-parameters of the encoder, its training data and its training loop."""

    # same_window = reconstruct the window's own items; next_period = predict [t, t + horizon).
    # Reconstruction won on held-out users even for next-period prediction (docs/autoencoder.md).
    target: Literal["same_window", "next_period"] = "same_window"
    horizon_days: float = 30.0  # also sets the newest anchor: as_of - horizon
    n_anchors: int = 6  # training LTE times per user: t_k = as_of - horizon - k * anchor_every_days
    anchor_every_days: float = 30.0
    max_window_items: int = 512  # the most recent window items the encoder reads (input only)
    key_dim: int = 32  # width of the attention keys/queries
    # Item age (days before the LTE's as_of) in the attention logits; off by default: it did not
    # help on the planted data, and without it `encode_users` needs no ages.
    use_recency: bool = False
    temperature: float | None = None  # decoder temperature; None = calibrated on the uniform LTE
    inertia: float = 1.0  # weight of mean ||z - u||^2 (u = uniform LTE) in the loss
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-2
    weight_decay: float = 0.0
    val_share: float = 0.15  # share of users held out for early stopping
    patience: int = 4  # epochs without a better validation NLL before stopping
    threads: int = 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutoencoderConfig:
        return cls(**data)


# --------------------------------------------------------------------------- padding helpers


def pad_rows(rows: Sequence[np.ndarray], pad: int, max_len: int | None = None) -> np.ndarray:
    """(n, L) int64, row j = rows[j] left-aligned and padded with `pad`; keeps the LAST max_len
    entries of a longer row (rows are in time order, so the most recent items survive)."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    if max_len is not None:
        lengths = np.minimum(lengths, max_len)
    width = max(int(lengths.max(initial=0)), 1)
    out = np.full((len(rows), width), pad, dtype=np.int64)
    if lengths.sum() == 0:
        return out
    flat = np.concatenate([np.asarray(r, dtype=np.int64)[len(r) - k :] for r, k in zip(rows, lengths, strict=True)])
    user = np.repeat(np.arange(len(rows)), lengths)
    col = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[user, col] = flat
    return out


def pad_values(values: Sequence[np.ndarray], lengths_like: np.ndarray, max_len: int | None = None) -> np.ndarray:
    """float32 companion of `pad_rows` (same truncation), padded with 0."""
    out = np.zeros(lengths_like.shape, dtype=np.float32)
    for j, v in enumerate(values):
        k = len(v) if max_len is None else min(len(v), max_len)
        if k:
            out[j, :k] = np.asarray(v, dtype=np.float32)[len(v) - k :]
    return out


def _recency_features(ages_days: torch.Tensor) -> torch.Tensor:
    """(B, L) ages in days -> (B, L, 2): log-age scaled to ~[0, 1] and its square."""
    x = torch.log1p(ages_days.clamp(min=0.0)) / math.log1p(400.0)
    return torch.stack([x, x * x], dim=-1)


# --------------------------------------------------------------------------- the model


class LteAutoencoder(nn.Module):
    """Learned set encoder over basis rows; decoder = softmax(C z / T) with C and T frozen buffers.

    `basis_vectors` (n, d) become the buffer `basis` (one extra zero row at index n is the padding
    item), registered non-persistent: it is the decoder, never trained and never saved (the
    checkpoint stores the basis hash instead and `load` is given the basis).
    """

    def __init__(self, basis_vectors: np.ndarray | torch.Tensor, config: AutoencoderConfig, temperature: float):
        super().__init__()
        vectors = torch.tensor(np.asarray(basis_vectors, dtype=np.float32))  # a copy: the basis stays read-only
        n_items, dim = vectors.shape
        padded = torch.cat([vectors, torch.zeros(1, dim)], dim=0)
        self.register_buffer("basis", padded, persistent=False)
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.config = config
        self.n_items, self.dim = int(n_items), int(dim)
        # The basis this encoder was trained for (set by train_autoencoder / load; saved by save).
        self.basis_hash: str | None = None
        self.basis_manifest: dict[str, Any] | None = None
        h = config.key_dim
        # Zero-initialised parts make the untrained encoder the uniform average ("high inertia").
        self.key = nn.Linear(dim, h, bias=False)  # random: with q = 0 it contributes nothing yet
        self.query = nn.Linear(dim, h, bias=False)
        self.item_gate = nn.Linear(dim, 1, bias=False)
        self.recency = nn.Linear(2, 1, bias=False)
        self.mix = nn.Linear(dim, dim, bias=True)
        for zero in (self.query.weight, self.item_gate.weight, self.recency.weight, self.mix.weight, self.mix.bias):
            nn.init.zeros_(zero)
        nn.init.normal_(self.key.weight, std=1.0 / math.sqrt(dim))

    @property
    def pad_row(self) -> int:
        return self.n_items

    def item_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-item attention terms (keys (n+1, h), gate (n+1,)): depend only on the basis row, so
        they are computed once per forward (or once per `encode_users` call), not per event."""
        return self.key(self.basis), self.item_gate(self.basis).squeeze(-1)

    def uniform(self, rows: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) padded rows -> (B, d) plain mean of the window's basis rows (0 for empty windows)."""
        present = rows != self.pad_row if present is None else present
        counts = present.sum(dim=1, keepdim=True).clamp(min=1)
        return F.embedding_bag(rows, self.basis, mode="sum") / counts

    def encode(
        self,
        rows: torch.Tensor,
        ages_days: torch.Tensor | None = None,
        tables: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) padded rows [+ (B, L) ages] -> (z (B, d), u (B, d)); both 0 for empty windows."""
        present = rows != self.pad_row  # (B, L)
        has_items = present.any(dim=1, keepdim=True)  # (B, 1)
        u = self.uniform(rows, present)
        keys, gate = tables if tables is not None else self.item_tables()
        q = self.query(u) / math.sqrt(keys.shape[1])  # (B, h)
        logits = torch.bmm(keys[rows], q.unsqueeze(2)).squeeze(2) + gate[rows]  # (B, L, h) @ (B, h, 1)
        if self.config.use_recency:
            if ages_days is None:
                raise ValueError("this autoencoder was trained with recency features: pass window ages (days)")
            logits = logits + self.recency(_recency_features(ages_days)).squeeze(-1)
        weights = torch.softmax(logits.masked_fill(~present, _MASKED_LOGIT), dim=1)
        pooled = F.embedding_bag(rows, self.basis, mode="sum", per_sample_weights=weights)  # (B, d)
        z = (pooled + self.mix(pooled)) * has_items
        return z, u

    def forward(self, rows: torch.Tensor, ages_days: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(rows, ages_days)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (B, n_items) log-probabilities of the fixed decoder softmax(C z / T)."""
        return torch.log_softmax(z @ self.basis[: self.n_items].T / self.temperature, dim=1)


def target_nll(log_probs: torch.Tensor, targets: torch.Tensor, pad_row: int) -> torch.Tensor:
    """(B, n) log-probs, (B, T) padded target rows -> (B,) mean NLL per user over its targets
    (multinomial likelihood; each user weighs the same whatever their number of targets)."""
    present = targets != pad_row
    picked = log_probs.gather(1, targets.clamp(max=log_probs.shape[1] - 1))
    return -(picked * present).sum(1) / present.sum(1).clamp(min=1)


# --------------------------------------------------------------------------- data from the event store


@dataclass
class UserWindows:
    """Each user's lagged-window items, as basis rows in (ts, item_id, event_id) order.

    Window = [as_of - lag - window, as_of - lag); `ages_days[j]` = (as_of - ts) in days, >= lag.
    Events whose item is not in the basis are dropped (the basis is the LTE's vocabulary)."""

    user_ids: np.ndarray  # (n,) int64
    rows: list[np.ndarray]  # int64 basis rows per user (may be empty when `users` was given)
    ages_days: list[np.ndarray]  # float32 per user, aligned with rows
    as_of: datetime
    window_start: datetime
    window_end: datetime


@dataclass
class AutoencoderExamples:
    """Training pairs: one per (user, anchor time t) with >= 1 window item and >= 1 target item."""

    user_ids: np.ndarray  # (n,) int64
    anchors: list[datetime]  # (n,) LTE time t of each example
    window_rows: list[np.ndarray]
    window_ages: list[np.ndarray]
    target_rows: list[np.ndarray]
    as_of: datetime | None = None  # the training cutoff: no event at or after it was read
    target: str = "next_period"
    facts: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.user_ids)

    def subset(self, index: np.ndarray) -> AutoencoderExamples:
        idx = np.asarray(index, dtype=np.int64)
        pick = idx.tolist()
        return replace(
            self,
            user_ids=self.user_ids[idx],
            anchors=[self.anchors[i] for i in pick],
            window_rows=[self.window_rows[i] for i in pick],
            window_ages=[self.window_ages[i] for i in pick],
            target_rows=[self.target_rows[i] for i in pick],
        )


def _events_frame(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, event_types: Sequence[str] = ()
) -> pd.DataFrame:
    """Events with start <= ts < end, ordered by (user_id, ts, item_id, event_id)."""
    sql = "SELECT user_id, item_id, ts, event_id FROM events WHERE ts >= ? AND ts < ?"
    params: list[Any] = [start, end]
    if event_types:
        sql += f" AND event_type IN ({', '.join('?' for _ in event_types)})"
        params.extend(event_types)
    sql += " ORDER BY user_id, ts, item_id, event_id"
    frame = con.execute(sql, params).df()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def _split_by_user(
    frame: pd.DataFrame, basis: Basis, as_of: datetime, dedupe: bool
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Sorted event frame -> (user ids, rows per user, ages per user); unknown items dropped."""
    rows = basis.rows(frame["item_id"].to_numpy(np.int64))
    known = rows >= 0
    frame = frame.loc[known]
    rows = rows[known]
    ages = ((pd.Timestamp(as_of) - frame["ts"]).dt.total_seconds().to_numpy() / _DAY_S).astype(np.float32)
    users = frame["user_id"].to_numpy(np.int64)
    if dedupe:  # an item repeated in the window counts once, at its most recent event
        last = ~pd.DataFrame({"u": users, "r": rows}).duplicated(keep="last").to_numpy()
        users, rows, ages = users[last], rows[last], ages[last]
    if users.size == 0:
        return np.zeros(0, dtype=np.int64), [], []
    user_ids, starts = np.unique(users, return_index=True)  # users are sorted by the SQL
    return user_ids, np.split(rows, starts[1:]), np.split(ages, starts[1:])


def _window_bounds(as_of: datetime, lte_settings: LteSettings) -> tuple[datetime, datetime]:
    end = as_of - timedelta(days=lte_settings.lag_days)
    return end - timedelta(days=lte_settings.window_days), end


def load_windows(
    con: duckdb.DuckDBPyConnection,
    basis: Basis,
    as_of: datetime,
    lte_settings: LteSettings,
    users: Sequence[int] | np.ndarray | None = None,
) -> UserWindows:
    """Window items of every user with >= 1 basis-known event in the lagged window, or, with
    `users`, of exactly those users in that order (empty arrays where the window is empty).
    Reads only events with ts < as_of - lag."""
    start, end = _window_bounds(as_of, lte_settings)
    frame = _events_frame(con, start, end, lte_settings.event_types)
    user_ids, rows, ages = _split_by_user(frame, basis, as_of, lte_settings.dedupe_items)
    if users is not None:
        wanted = np.asarray(users, dtype=np.int64)
        pos = {int(u): j for j, u in enumerate(user_ids)}
        empty_rows, empty_ages = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        rows = [rows[pos[u]] if u in pos else empty_rows for u in wanted.tolist()]
        ages = [ages[pos[u]] if u in pos else empty_ages for u in wanted.tolist()]
        user_ids = wanted
    return UserWindows(user_ids, rows, ages, as_of, start, end)


def load_examples(
    con: duckdb.DuckDBPyConnection,
    basis: Basis,
    as_of: datetime,
    lte_settings: LteSettings,
    config: AutoencoderConfig,
) -> AutoencoderExamples:
    """Training examples from the `events` table, point-in-time at the training cutoff `as_of`.

    Anchors t_k = as_of - horizon - k * anchor_every_days, k = 0 .. n_anchors - 1. For anchor t the
    input is the LTE window [t - lag - window, t - lag) and the target is
    - next_period: the user's items in [t, t + horizon), the period the LTE at t is used for;
    - same_window: the window's own items (reconstruction).
    Since t + horizon <= as_of, no event with ts >= as_of is ever read (one bounded SQL query).
    """
    horizon = timedelta(days=config.horizon_days)
    anchors = [as_of - horizon - k * timedelta(days=config.anchor_every_days) for k in range(config.n_anchors)]
    earliest, _ = _window_bounds(anchors[-1], lte_settings)
    frame = _events_frame(con, earliest, as_of, lte_settings.event_types)
    return examples_from_frame(frame, basis, as_of, anchors, lte_settings, config)


def examples_from_frame(
    frame: pd.DataFrame,
    basis: Basis,
    as_of: datetime,
    anchors: Sequence[datetime],
    lte_settings: LteSettings,
    config: AutoencoderConfig,
) -> AutoencoderExamples:
    """`load_examples` on an events frame (user_id, item_id, ts, [event_id]); rows with
    ts >= as_of are dropped first, so the cutoff holds whatever the frame holds."""
    frame = frame.copy()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    if "event_id" not in frame:
        frame["event_id"] = ""
    frame = frame.loc[frame["ts"] < pd.Timestamp(as_of)]
    frame = frame.sort_values(["user_id", "ts", "item_id", "event_id"], kind="stable")
    horizon = timedelta(days=config.horizon_days)
    out: dict[str, list] = {"users": [], "anchors": [], "rows": [], "ages": [], "targets": []}
    for anchor in anchors:
        if config.target == "next_period" and anchor + horizon > as_of:
            raise ValueError(f"anchor {anchor} + horizon reaches past the training cutoff {as_of}")
        start, end = _window_bounds(anchor, lte_settings)
        in_window = frame.loc[(frame["ts"] >= pd.Timestamp(start)) & (frame["ts"] < pd.Timestamp(end))]
        w_users, w_rows, w_ages = _split_by_user(in_window, basis, anchor, lte_settings.dedupe_items)
        if config.target == "same_window":
            t_pos = {int(u): r for u, r in zip(w_users, w_rows, strict=True)}
        else:
            later = frame.loc[(frame["ts"] >= pd.Timestamp(anchor)) & (frame["ts"] < pd.Timestamp(anchor + horizon))]
            t_users, t_rows, _ = _split_by_user(later, basis, anchor, dedupe=False)
            t_pos = {int(u): r for u, r in zip(t_users, t_rows, strict=True)}
        for u, r, a in zip(w_users.tolist(), w_rows, w_ages, strict=True):
            if u in t_pos:
                out["users"].append(u)
                out["anchors"].append(anchor)
                out["rows"].append(r)
                out["ages"].append(a)
                out["targets"].append(t_pos[u])
    return AutoencoderExamples(
        user_ids=np.asarray(out["users"], dtype=np.int64),
        anchors=out["anchors"],
        window_rows=out["rows"],
        window_ages=out["ages"],
        target_rows=out["targets"],
        as_of=as_of,
        target=config.target,
        facts={"n_anchors": len(anchors), "n_users": len(set(out["users"]))},
    )


# --------------------------------------------------------------------------- training


@dataclass
class _Padded:
    rows: torch.Tensor  # (N, L)
    ages: torch.Tensor  # (N, L)
    targets: torch.Tensor  # (N, T)
    lengths: torch.Tensor  # (N,) window lengths after truncation
    target_lengths: torch.Tensor

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows of idx, trimmed to the batch's longest window/target (less padding, same result)."""
        width = max(int(self.lengths[idx].max()), 1)
        t_width = max(int(self.target_lengths[idx].max()), 1)
        return self.rows[idx, :width], self.ages[idx, :width], self.targets[idx, :t_width]


def _pad_examples(ex: AutoencoderExamples, pad: int, max_len: int) -> _Padded:
    rows = pad_rows(ex.window_rows, pad, max_len)
    ages = pad_values(ex.window_ages, rows, max_len)
    targets = pad_rows(ex.target_rows, pad)
    return _Padded(
        rows=torch.from_numpy(rows),
        ages=torch.from_numpy(ages),
        targets=torch.from_numpy(targets),
        lengths=torch.from_numpy((rows != pad).sum(1)),
        target_lengths=torch.from_numpy((targets != pad).sum(1)),
    )


def calibrate_temperature(
    basis_vectors: np.ndarray, uniform: torch.Tensor, targets: torch.Tensor, pad: int, max_examples: int = 4000
) -> float:
    """The decoder temperature T minimising the NLL of the *uniform* LTE (geometric grid search).

    Done once, before the encoder is trained, then frozen: the decoder is fixed and fair to the
    baseline, so any gain of the autoencoder comes from the encoder, not from a better-scaled decoder."""
    n = min(len(uniform), max_examples)
    scores = uniform[:n] @ torch.tensor(np.asarray(basis_vectors)).T  # (n, n_items)
    best_t, best_nll = 1.0, math.inf
    for t in np.geomspace(0.003, 3.0, 61):
        nll = float(target_nll(torch.log_softmax(scores / float(t), dim=1), targets[:n], pad).mean())
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


@dataclass
class TrainHistory:
    epochs: list[dict[str, float]]  # per epoch: epoch, train_loss, val_nll, seconds
    val_nll_uniform: float  # the fixed decoder applied to the uniform LTE, same val users
    best_epoch: int
    temperature: float
    n_train: int
    n_val: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _split_users(user_ids: np.ndarray, val_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Example indices (train, val), split by user so a validation user is never trained on."""
    unique = np.unique(user_ids)
    rng = np.random.default_rng(seed)
    n_val = int(round(val_share * unique.size)) if unique.size > 1 else 0
    val_users = rng.permutation(unique)[:n_val]
    is_val = np.isin(user_ids, val_users)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _encoded_batches(model: LteAutoencoder, data: _Padded, uniform: bool, batch_size: int):
    """(LTE, targets) per batch of `data`, without gradient: the encoder's LTE, or with `uniform`
    the plain average it starts from."""
    with torch.inference_mode():
        tables = model.item_tables()
        for start in range(0, len(data.rows), batch_size):
            rows, ages, targets = data.batch(torch.arange(start, min(start + batch_size, len(data.rows))))
            z, u = model.encode(rows, ages, tables)
            yield (u if uniform else z), targets


def _mean_nll(model: LteAutoencoder, data: _Padded, uniform: bool, batch_size: int = 1024) -> float:
    """Mean per-user target NLL over all examples in `data` (no gradient)."""
    total, count = 0.0, 0
    for lte, targets in _encoded_batches(model, data, uniform, batch_size):
        total += float(target_nll(model.decode(lte), targets, model.pad_row).sum())
        count += len(lte)
    return total / max(count, 1)


def train_autoencoder(
    examples: AutoencoderExamples,
    basis: Basis,
    config: AutoencoderConfig | None = None,
    seed: int = 0,
    log: Any = None,
) -> tuple[LteAutoencoder, TrainHistory]:
    """Train the encoder (decoder fixed) on `examples`; users are split train/val by `seed`, and
    the weights of the epoch with the lowest validation NLL are returned. Same inputs and seed give
    bit-identical weights (single-process CPU). `log`, if given, is called with each epoch's dict."""
    config = config or AutoencoderConfig()
    if len(examples) == 0:
        raise ValueError("no training examples: no user has both window items and targets before as_of")
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(seed)
        pad = basis.n_items
        train_idx, val_idx = _split_users(examples.user_ids, config.val_share, seed)
        train = _pad_examples(examples.subset(train_idx), pad, config.max_window_items)
        val = _pad_examples(examples.subset(val_idx), pad, config.max_window_items) if val_idx.size else None

        probe = LteAutoencoder(basis.vectors, config, temperature=1.0)
        temperature = config.temperature
        if temperature is None:
            with torch.inference_mode():
                order = torch.randperm(len(train.rows), generator=torch.Generator().manual_seed(seed))
                sample = order[:4000]
                rows, _, targets = train.batch(sample)
                temperature = calibrate_temperature(basis.vectors, probe.uniform(rows), targets, pad)
        model = LteAutoencoder(basis.vectors, config, temperature=temperature)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        order_rng = torch.Generator().manual_seed(seed)
        eval_data = val if val is not None else train
        val_uniform = _mean_nll(model, eval_data, uniform=True)
        best_nll, best_state, best_epoch, stale = _mean_nll(model, eval_data, uniform=False), None, 0, 0
        best_state = copy.deepcopy(model.state_dict())
        epochs: list[dict[str, float]] = []
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            order = torch.randperm(len(train.rows), generator=order_rng)
            loss_sum, n_seen = 0.0, 0
            for start in range(0, len(order), config.batch_size):
                idx = order[start : start + config.batch_size]
                rows, ages, targets = train.batch(idx)
                z, u = model.encode(rows, ages)
                nll = target_nll(model.decode(z), targets, pad).mean()
                loss = nll + config.inertia * ((z - u) ** 2).sum(1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(idx)
                n_seen += len(idx)
            model.eval()
            val_nll = _mean_nll(model, eval_data, uniform=False)
            record = {
                "epoch": epoch,
                "train_loss": loss_sum / n_seen,
                "val_nll": val_nll,
                "seconds": time.perf_counter() - t0,
            }
            epochs.append(record)
            if log is not None:
                log(record)
            if val_nll < best_nll - 1e-6:
                best_nll, best_epoch, stale = val_nll, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= config.patience:
                    break
        model.load_state_dict(best_state)
        model.eval()
    finally:
        torch.set_num_threads(threads)
    history = TrainHistory(
        epochs=epochs,
        val_nll_uniform=val_uniform,
        best_epoch=best_epoch,
        temperature=float(model.temperature),  # as stored (float32)
        n_train=int(train_idx.size),
        n_val=int(val_idx.size),
        seconds=time.perf_counter() - started,
    )
    model.basis_hash = basis.hash
    model.basis_manifest = basis.manifest.to_dict()
    return model, history


# --------------------------------------------------------------------------- applying


def _encode_batches(
    model: LteAutoencoder,
    window_rows: Sequence[np.ndarray],
    window_ages: Sequence[np.ndarray] | None,
    batch_size: int,
    uniform: bool,
) -> np.ndarray:
    n = len(window_rows)
    out = np.zeros((n, model.dim), dtype=np.float32)
    if window_ages is not None and len(window_ages) != n:
        raise ValueError(f"{n} windows but {len(window_ages)} age arrays")
    lengths = np.fromiter((len(r) for r in window_rows), dtype=np.int64, count=n)
    order = np.argsort(lengths, kind="stable")  # similar lengths per batch: little padding
    order = order[lengths[order] > 0]  # empty window -> zero vector (already in `out`)
    max_len = model.config.max_window_items
    with torch.inference_mode():
        tables = None if uniform else model.item_tables()
        for start in range(0, order.size, batch_size):
            idx = order[start : start + batch_size]
            rows = pad_rows([window_rows[i] for i in idx], model.pad_row, max_len)
            rows_t = torch.from_numpy(rows)
            if uniform:
                z = model.uniform(rows_t)
            else:
                ages = None
                if window_ages is not None:
                    ages = torch.from_numpy(pad_values([window_ages[i] for i in idx], rows, max_len))
                z, _ = model.encode(rows_t, ages, tables)
            out[idx] = z.numpy()
    return out


def encode_users(
    model: LteAutoencoder,
    window_rows: Sequence[np.ndarray],
    window_ages: Sequence[np.ndarray] | None = None,
    batch_size: int = 2048,
) -> np.ndarray:
    """(n, dim) float32 autoencoder LTEs, row j for window_rows[j] (basis rows in time order;
    ages = days before the LTE's as_of, required when the model uses recency). Users with an
    empty window get the zero vector; n_events is the caller's business."""
    model.eval()
    return _encode_batches(model, window_rows, window_ages, batch_size, uniform=False)


def encode_uniform(model: LteAutoencoder, window_rows: Sequence[np.ndarray], batch_size: int = 2048) -> np.ndarray:
    """The uniform LTE of each window through the same batched path (baseline for comparisons;
    note: capped at config.max_window_items most recent items, like the encoder input)."""
    return _encode_batches(model, window_rows, None, batch_size, uniform=True)


def likelihood_report(model: LteAutoencoder, examples: AutoencoderExamples, k: int = 100) -> dict[str, float]:
    """Fixed-decoder fit of autoencoder vs uniform LTE on `examples`: mean per-user target NLL and
    NDCG@k of the decoder's full-catalog ranking against the (de-duplicated) target items; plus
    how far the autoencoder LTE moved from the uniform one (inertia): mean ||z - u|| / mean ||u||
    and mean cosine(z, u)."""
    data = _pad_examples(examples, model.pad_row, model.config.max_window_items)
    report: dict[str, float] = {"n_examples": float(len(examples))}
    for name, uniform in (("autoencoder", False), ("uniform", True)):
        report[f"nll_{name}"] = _mean_nll(model, data, uniform=uniform)
        report[f"ndcg@{k}_{name}"] = _decoder_ndcg(model, data, uniform, k)
    with torch.inference_mode():
        z, u = model.encode(data.rows, data.ages)
    report["relative_shift"] = float(torch.linalg.norm(z - u, dim=1).mean() / torch.linalg.norm(u, dim=1).mean())
    report["cosine_to_uniform"] = float(F.cosine_similarity(z, u, dim=1).mean())
    return report


def _decoder_ndcg(model: LteAutoencoder, data: _Padded, uniform: bool, k: int, batch_size: int = 512) -> float:
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float32))
    total, count = 0.0, 0
    for lte, targets in _encoded_batches(model, data, uniform, batch_size):
        top = (lte @ model.basis[: model.n_items].T).topk(min(k, model.n_items), dim=1).indices  # (B, k)
        relevant = torch.zeros(len(lte), model.n_items + 1, dtype=torch.bool)
        relevant.scatter_(1, targets, True)
        relevant = relevant[:, : model.n_items]
        hits = relevant.gather(1, top).float()
        dcg = (hits * discounts[: top.shape[1]]).sum(1)
        n_rel = relevant.sum(1).clamp(max=top.shape[1])
        ideal = torch.cumsum(discounts[: top.shape[1]], 0)[n_rel.clamp(min=1) - 1]
        total += float((dcg / ideal).sum())
        count += len(lte)
    return total / max(count, 1)


# --------------------------------------------------------------------------- versioning


def save(model: LteAutoencoder, path: str | Path) -> Path:
    """Write the encoder weights, config, decoder temperature and the basis it was trained for
    (hash + manifest). The basis vectors themselves are not stored: `load` is given the basis."""
    if model.basis_hash is None:
        raise ValueError("model has no basis_hash: train it with train_autoencoder or load it with load")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "state_dict": model.state_dict(),
        "basis_hash": model.basis_hash,
        "basis_manifest": model.basis_manifest,
        "dim": model.dim,
        "n_items_trained": model.n_items,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)  # atomic: a reader never sees half a checkpoint
    return path


def _refuse(trained_hash: str, serving_hash: str, reason: str) -> Exception:
    try:
        from lte.basis import BasisMismatchError
    except ImportError:  # lte/basis.py absent: same message shape, plain ValueError
        return ValueError(
            f"basis mismatch: the autoencoder was trained on basis {trained_hash} but was given basis "
            f"{serving_hash} ({reason}). Retrain it on basis {serving_hash} or load basis {trained_hash}."
        )
    return BasisMismatchError(trained_hash, serving_hash, reason)


def load(path: str | Path, basis: Basis, store: ArtifactStore | None = None) -> LteAutoencoder:
    """The autoencoder saved at `path`, with `basis` as its fixed decoder and input vocabulary.

    Accepted: the exact basis it was trained on, or (with `store`, through lte.basis.compatible) an
    extension of it with the same encoder (old rows unchanged, new items appended: the encoder has
    no per-item weights, so it applies to them as is). Anything else raises BasisMismatchError
    naming both hashes."""
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an LTE autoencoder checkpoint ({CHECKPOINT_FORMAT})")
    trained_hash = checkpoint["basis_hash"]
    if basis.dim != checkpoint["dim"]:
        raise _refuse(trained_hash, basis.hash, f"dimension {checkpoint['dim']} vs {basis.dim}")
    if basis.hash != trained_hash:
        if store is None or checkpoint["basis_manifest"] is None:
            raise _refuse(trained_hash, basis.hash, "different basis; pass the artifact store to accept extensions")
        from lte.basis import BasisManifest, compatible

        trained_manifest = BasisManifest.from_dict(checkpoint["basis_manifest"])
        if not compatible(trained_manifest, basis.manifest, store):
            raise _refuse(trained_hash, basis.hash, "not the same basis nor an extension of it")
    config = AutoencoderConfig.from_dict(checkpoint["config"])
    model = LteAutoencoder(basis.vectors, config, temperature=1.0)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    # Keep the *trained-for* basis: a re-save must not claim the extension as its training basis.
    model.basis_hash = trained_hash
    model.basis_manifest = checkpoint["basis_manifest"]
    return model
