"""Training and evaluation sequences from the event store, with point-in-time LTE.

Vocabulary: item index = basis row + 1 (0 = padding). Events whose item is not in the basis are
dropped (they cannot be scored). A user's events are ordered by (ts, item_id, event_id), since
same-second ties are common (MovieLens).

Splits (`settings.train.split`):
- `temporal` (the pipeline default, production-realistic): with `t_last` the last event time,
  `t_test = t_last - test_days` and `t_val = t_test - val_days`. Training events have ts < t_val
  (and ts >= t_val - train_days when train_days is set),
  validation targets t_val <= ts < t_test, test targets ts >= t_test.
- `leave_one_out` (for comparison with RecBole / published SASRec): per user with >= 3 events the last
  event is the test target, the second last the validation target, the rest train.

Training examples: each user's training events are cut into chunks of `max_len` next-item targets,
aligned at the user's last training event; every position of a chunk is a target (causal LM), so
every prefix of the history is trained on exactly once.
Evaluation examples: every validation (test) event of a user that has at least one earlier event is
one target; its input is the up to `max_len` events just before it (any split: they were observed).

LTE of an example (point-in-time, never from the future): the feature store read with
`time = ts of the FIRST item of the example's input sequence`, i.e. the latest snapshot with
as_of <= that time, whose window ends at as_of - lag. So neither the input sequence nor any target
of the example can be inside the LTE window: the LTE and the short-term sequence never share a
temporal horizon (the paper's lagged window). Users with no snapshot or an empty window get
lte_mask = False (the model's learned "no LTE" token) and a zero vector.

Multi-interest LTE (variant `multi_interest`, k = the stored snapshots' k): `lte` is (N, k, dim), one
row per interest centroid (largest cluster first), and `lte_mask` (N, k) is True for each non-empty
interest; an example without any LTE has an all-False row. Other variants keep (N, dim) and (N,).
`SequenceDataset.lte_tokens` is k (1 for single-vector variants).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import torch

from lte.embeddings import is_multi_token, nonempty_tokens, split_tokens

US_PER_DAY = 86_400 * 1_000_000

# Per-dataset default sequence length (ModelSettings.max_len = None picks these). Synthetic users
# have ~60 sessions a year of ~2 items, so 8 items are the last ~4 sessions, about 3-4 weeks: the
# short-term window shows the intent of the moment and long-term taste must come from the lagged LTE,
# as in the paper. The suggested 200 would span a synthetic user's whole history, so the
# lagged LTE window (which ends before the first input item) would be empty for almost everyone.
# Measured on the "small" shop: NDCG@100 uplift of prefix over none was +4.6% at 12 items and
# +12% at 8 items (same generator), because fewer of a user's facets are visible in the window.
DEFAULT_MAX_LEN = {"synthetic": 8, "ml-100k": 50, "ml-latest-small": 50}


def temporal_cutoffs_us(last_event_us: int, settings) -> tuple[int, int]:
    """(t_val, t_test) in epoch microseconds: t_test = last event - test_days, t_val = t_test - val_days."""
    t_test = int(last_event_us - settings.train.test_days * US_PER_DAY)
    return int(t_test - settings.train.val_days * US_PER_DAY), t_test


def temporal_cutoffs(con: duckdb.DuckDBPyConnection, settings) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(t_val, t_test) of the stored events, as UTC timestamps; training reads only ts < t_val."""
    (last_us,) = con.execute("SELECT epoch_us(max(ts)) FROM events").fetchall()[0]
    if last_us is None:
        raise LookupError("the events table is empty: ingest events before training")
    return tuple(pd.Timestamp(t, unit="us", tz="UTC") for t in temporal_cutoffs_us(int(last_us), settings))


def resolve_max_len(settings) -> int:
    """settings.model.max_len, or the dataset default when it is None."""
    return settings.model.max_len or DEFAULT_MAX_LEN[settings.data.dataset]


@dataclass
class SequencePart:
    """Padded tensors of one split. items (N, L) int64, left-padded with 0.

    targets: (N, L) for the training part (targets[n, t] follows items[n, :t+1]; 0 = none),
    (N,) for validation/test parts (the item that followed the whole sequence).
    lte (N, lte_dim) float32 and lte_mask (N,) bool, or (N, k, lte_dim) and (N, k) for a multi-interest
    LTE (mask False = empty interest slot), user_ids (N,) int64, input_start_us (N,) int64
    (time of the first input item, the LTE read time), target_us (N,) int64 (eval parts only, else empty).
    """

    items: torch.Tensor
    targets: torch.Tensor
    lte: torch.Tensor
    lte_mask: torch.Tensor
    user_ids: torch.Tensor
    input_start_us: np.ndarray
    target_us: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return self.items.shape[0]


@dataclass
class SequenceDataset:
    train: SequencePart
    val: SequencePart
    test: SequencePart
    n_items: int
    lte_dim: int
    max_len: int
    split: str
    variant: str | None  # LTE variant read from the feature store; None = no LTE read (zeros)
    basis_hash: str
    item_counts: np.ndarray  # (n_items + 1,) training-target counts per item index, for the popularity baseline
    cutoffs: dict  # t_val / t_test (ISO strings) for `temporal`; empty for leave_one_out
    item_content: np.ndarray  # (n_items, lte_dim) float32 basis vectors in row order (the model's item features)

    @property
    def lte_tokens(self) -> int:
        """LTE vectors per example: k for a multi-interest LTE ((N, k, dim) tensors), else 1."""
        return int(self.train.lte.shape[1]) if self.train.lte.ndim == 3 else 1

    def stats(self) -> dict:
        def part(p: SequencePart) -> dict:
            n = len(p)
            has_lte = p.lte_mask.any(dim=1) if p.lte_mask.ndim == 2 else p.lte_mask  # any non-empty interest
            return {"examples": n, "users": int(np.unique(p.user_ids.numpy()).size),
                    "targets": int((p.targets > 0).sum()),
                    "no_lte_fraction": float((~has_lte).float().mean()) if n else 0.0}

        return {"split": self.split, "max_len": self.max_len, "n_items": self.n_items, "variant": self.variant,
                "lte_tokens": self.lte_tokens, "cutoffs": self.cutoffs,
                "train": part(self.train), "val": part(self.val), "test": part(self.test)}


def load_event_arrays(con: duckdb.DuckDBPyConnection, basis) -> dict[str, np.ndarray]:
    """Events as numpy arrays sorted by (user, ts, item_id, event_id): user, token (basis row + 1), t_us."""
    frame = con.execute(
        "SELECT user_id, item_id, epoch_us(ts) AS t_us FROM events ORDER BY user_id, ts, item_id, event_id"
    ).fetchnumpy()
    rows = np.asarray(basis.rows(np.asarray(frame["item_id"], dtype=np.int64)), dtype=np.int64)
    known = rows >= 0
    if not known.any():
        raise ValueError("no event refers to an item of the basis: build the basis from the current catalog first")
    return {"user": np.asarray(frame["user_id"], dtype=np.int64)[known], "token": rows[known] + 1,
            "t_us": np.asarray(frame["t_us"], dtype=np.int64)[known]}


def _user_starts(user: np.ndarray) -> np.ndarray:
    """For each event, the index of its user's first event (arrays sorted by user)."""
    first = np.r_[True, user[1:] != user[:-1]]
    starts = np.flatnonzero(first)
    return starts[np.cumsum(first) - 1]


def _train_chunks(user, token, t_us, max_len: int):
    """Cut each user's (already restricted to training) events into right-aligned chunks of targets."""
    start = _user_starts(user)
    group = np.cumsum(np.r_[True, user[1:] != user[:-1]]) - 1
    n_per_user = np.bincount(group)
    local = np.arange(len(user)) - start
    n = n_per_user[group]
    target = np.flatnonzero(local >= 1)  # every event after a user's first is a next-item target
    chunks_per_user = np.ceil(np.maximum(n_per_user - 1, 0) / max_len).astype(np.int64)
    offset = np.r_[0, np.cumsum(chunks_per_user)[:-1]]
    dist = n[target] - 1 - local[target]  # 0 for the user's last training event
    example = offset[group[target]] + dist // max_len
    slot = max_len - 1 - dist % max_len
    n_examples = int(chunks_per_user.sum())
    items = np.zeros((n_examples, max_len), dtype=np.int64)
    targets = np.zeros((n_examples, max_len), dtype=np.int64)
    items[example, slot] = token[target - 1]
    targets[example, slot] = token[target]
    first_input_us = np.full(n_examples, np.iinfo(np.int64).max)
    np.minimum.at(first_input_us, example, t_us[target - 1])
    user_ids = np.zeros(n_examples, dtype=np.int64)
    user_ids[example] = user[target]
    return items, targets, user_ids, first_input_us


def _eval_examples(user, token, t_us, target_index: np.ndarray, max_len: int):
    """Inputs = the up to max_len events before each target (same user), left-padded."""
    start = _user_starts(user)
    target_index = target_index[target_index > start[target_index]]  # need at least one earlier event
    window = target_index[:, None] - max_len + np.arange(max_len)[None, :]  # (N, L) global indices
    valid = window >= start[target_index][:, None]
    items = np.where(valid, token[np.clip(window, 0, None)], 0)
    first_input = np.maximum(target_index - max_len, start[target_index])
    return items, token[target_index], user[target_index], t_us[first_input], t_us[target_index]


def _read_lte(feature_store, basis, variant: str | None, user_ids: np.ndarray, times_us: np.ndarray,
              tokens_if_none_stored: int = 1):
    """Point-in-time LTE for each (user, time); zeros and mask False when variant is None.

    Single-vector variants: (n, dim) and (n,). Multi-token variants (multi_interest): (n, k, dim) and
    (n, k), with k the stored snapshots' (`tokens_if_none_stored` when the variant has none yet)."""
    n = len(user_ids)
    multi = is_multi_token(variant)
    if variant is None or n == 0:
        shape = (n, tokens_if_none_stored, basis.dim) if multi else (n, basis.dim)
        return np.zeros(shape, dtype=np.float32), np.zeros(shape[:-1], dtype=bool)
    result = feature_store.as_of(user_ids, np.asarray(times_us, dtype=np.int64), variant, basis)
    n_events = np.asarray(result.n_events)
    vectors = np.where((n_events > 0)[:, None], np.asarray(result.vectors, dtype=np.float32), 0.0)
    if not multi:
        return vectors.astype(np.float32), n_events > 0
    # Rows are k * dim wide once the variant has any usable snapshot, matched or not.
    stored = any(t is not None for t in result.snapshot_as_of) or bool(feature_store.snapshot_times_available(variant))
    if not stored:
        return np.zeros((n, tokens_if_none_stored, basis.dim), np.float32), np.zeros((n, tokens_if_none_stored), bool)
    vectors = split_tokens(vectors.astype(np.float32), vectors.shape[1] // basis.dim)
    return vectors, nonempty_tokens(vectors, n_events)


def build_dataset(con: duckdb.DuckDBPyConnection, feature_store, basis, settings,
                  variant: str | None = "settings") -> SequenceDataset:
    """Sequences, splits and point-in-time LTE for one training run.

    variant: the LTE variant to read ("settings" = settings.lte.variant; None = read no LTE, all
    examples get the "no LTE" mask, enough for integration `none`).
    """
    if variant == "settings":
        variant = settings.lte.variant
    max_len = resolve_max_len(settings)
    ev = load_event_arrays(con, basis)
    user, token, t_us = ev["user"], ev["token"], ev["t_us"]
    if settings.train.split == "temporal":
        t_val, t_test = temporal_cutoffs_us(int(t_us.max()), settings)
        is_train = t_us < t_val
        if settings.train.train_days is not None:
            is_train &= t_us >= t_val - settings.train.train_days * US_PER_DAY
        val_index = np.flatnonzero((t_us >= t_val) & (t_us < t_test))
        test_index = np.flatnonzero(t_us >= t_test)
        cutoffs = {"t_val": pd.Timestamp(t_val, unit="us", tz="UTC").isoformat(),
                   "t_test": pd.Timestamp(t_test, unit="us", tz="UTC").isoformat()}
    elif settings.train.split == "leave_one_out":
        start = _user_starts(user)
        last = np.r_[user[1:] != user[:-1], True]
        n_user = np.flatnonzero(last) - np.unique(start) + 1
        n_of_event = np.repeat(n_user, n_user)
        local = np.arange(len(user)) - start
        eligible = n_of_event >= 3
        test_index = np.flatnonzero(eligible & (local == n_of_event - 1))
        val_index = np.flatnonzero(eligible & (local == n_of_event - 2))
        is_train = ~eligible | (local < n_of_event - 2)
        cutoffs = {}
    else:
        raise ValueError(f"unknown split {settings.train.split!r}: use 'temporal' or 'leave_one_out'")
    if not is_train.any():
        raise ValueError("no training events before the validation cut-off: reduce val_days/test_days")

    tr_items, tr_targets, tr_users, tr_first = _train_chunks(user[is_train], token[is_train], t_us[is_train], max_len)
    parts = {}
    k = settings.lte.interests  # the k of a multi-interest LTE when none is stored yet
    lte, mask = _read_lte(feature_store, basis, variant, tr_users, tr_first, k)
    parts["train"] = SequencePart(torch.from_numpy(tr_items), torch.from_numpy(tr_targets), torch.from_numpy(lte),
                                  torch.from_numpy(mask), torch.from_numpy(tr_users), tr_first)
    for name, index in (("val", val_index), ("test", test_index)):
        items, targets, users, first_us, target_us = _eval_examples(user, token, t_us, index, max_len)
        lte, mask = _read_lte(feature_store, basis, variant, users, first_us, k)
        parts[name] = SequencePart(torch.from_numpy(items), torch.from_numpy(targets), torch.from_numpy(lte),
                                   torch.from_numpy(mask), torch.from_numpy(users), first_us, target_us)
    item_counts = np.bincount(tr_targets[tr_targets > 0], minlength=len(basis.item_ids) + 1)
    return SequenceDataset(parts["train"], parts["val"], parts["test"], n_items=len(basis.item_ids),
                           lte_dim=basis.dim, max_len=max_len, split=settings.train.split, variant=variant,
                           basis_hash=basis.hash, item_counts=item_counts, cutoffs=cutoffs,
                           item_content=np.asarray(basis.vectors, dtype=np.float32))
