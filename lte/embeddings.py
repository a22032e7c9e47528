"""Long-term embeddings (LTE): each user's lagged history summarised in the frozen basis space.

    LTE(u, T) = aggregate(basis[item] for events of u with  T - lag - window <= ts < T - lag)

Semantics (../shared/DESIGN.md, "Time, lag and leakage"):
- Time bounds: the window is half-open, [T - lag - window, T - lag). An event at exactly T - lag is
  outside it, so nothing at or after T - lag can ever change LTE(u, T) (tested as a property).
- `window_unit="history_fraction"` makes the window per user instead: with span = T - (first event
  of u before T), lag_u = ceil(lag_fraction * span) and window_u = ceil(window_fraction * span)
  microseconds. The same half-open rule applies; only events before T can move the span.
- Users: every user with any event (of any type) before T, or exactly the `users` asked for. A user
  with nothing usable in the window gets the zero vector and n_events = 0, never NaN.
- Events: `lte_settings.event_types` filters by type (empty = all); `dedupe_items` counts an item
  repeated in the window once (at its latest timestamp). Items missing from the basis are ignored
  and counted in `LteBatch.n_unknown_items`.
- Variants: `uniform` = mean of the basis rows; `recency` = weighted mean with weight
  0.5 ** (age / recency_half_life_days), age measured back from the user's window end;
  `multi_interest` = k interest centroids (lte/multi_interest.py): a row is k vectors of the
  basis dimension, flattened (`LteBatch.tokens` = k; single-vector variants have tokens = 1).
  `normalize` then L2-normalises every non-zero vector (each centroid on its own).
- Determinism: summation runs in the canonical order (user, basis row, ts). Same-timestamp ties
  (ts, item_id, event_id) cannot change a result: two events of one user with equal ts and item
  contribute bit-identical terms (same row, same weight), so their mutual order is irrelevant and
  the result is bit-identical across runs, insertion orders and shard layouts.

Implementation: DuckDB SQL pulls the windowed (user row, basis row[, ts]) triples; one
scipy.sparse CSR (users x basis rows, weights) times the dense basis gives every LTE at once.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from lte.config import LteSettings

US_PER_DAY = 86_400_000_000
NO_EVENT_US = -9_223_372_036_854_775_807  # "first event" of a user with none before as_of


@dataclass
class LteBatch:
    """LTEs of many users at one as_of, on one basis, by one variant.

    Rows are aligned: user_ids[i] has vectors[i] and n_events[i]. `window_start`/`window_end` are
    the window bounds in "days" mode and None in "history_fraction" mode (bounds differ per user).
    A multi-token variant (multi_interest) stores `tokens` vectors per user, flattened in one row:
    vectors (n, tokens * basis dim); `token_vectors()` gives them as (n, tokens, basis dim).
    """

    user_ids: np.ndarray  # (n,) int64
    vectors: np.ndarray  # (n, tokens * dim) float32; zero row where n_events == 0
    n_events: np.ndarray  # (n,) int32: events that contributed (after filters, dedupe, known items)
    as_of: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    basis_hash: str | None
    variant: str | None
    n_unknown_items: int = 0  # window events ignored because their item is not in the basis
    tokens: int = 1  # vectors per user in a row (k for multi_interest)

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def dim(self) -> int:
        """Width of a stored row: tokens * basis dimension."""
        return int(self.vectors.shape[1])

    def token_vectors(self) -> np.ndarray:
        """(n, tokens, dim) view of the rows (tokens = 1 for single-vector variants)."""
        return split_tokens(self.vectors, self.tokens)

    @property
    def empty_share(self) -> float:
        """Share of users whose LTE is empty (n_events == 0); 0.0 for an empty batch."""
        return float(np.mean(self.n_events == 0)) if len(self) else 0.0

    def summary(self) -> dict:
        """Small, JSON-able description (for CLI output and asset metadata)."""
        # Norm of the first vector: the LTE itself, or the largest interest of a multi-interest LTE.
        norms = np.linalg.norm(self.token_vectors()[:, 0], axis=1) if len(self) else np.zeros(0)
        nonempty = self.n_events > 0
        return {
            "as_of": self.as_of,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "basis_hash": self.basis_hash,
            "variant": self.variant,
            "tokens": self.tokens,
            "users": len(self),
            "empty_users": int((~nonempty).sum()),
            "empty_share": self.empty_share,
            "mean_norm_nonempty": float(norms[nonempty].mean()) if nonempty.any() else None,
            "mean_events_nonempty": float(self.n_events[nonempty].mean()) if nonempty.any() else None,
            "unknown_item_events": int(self.n_unknown_items),
        }


def concat_batches(batches: Sequence[LteBatch]) -> LteBatch:
    """One batch from shard batches of the same (as_of, basis, variant); rows sorted by user id."""
    if not batches:
        raise ValueError("concat_batches needs at least one batch")
    first = batches[0]
    key = (first.as_of, first.basis_hash, first.variant, first.window_start, first.window_end, first.tokens)
    for batch in batches[1:]:
        other = (batch.as_of, batch.basis_hash, batch.variant, batch.window_start, batch.window_end,
                 batch.tokens)
        if other != key:
            raise ValueError(f"cannot concatenate LTE batches of different snapshots: {key} vs {other}")
    user_ids = np.concatenate([b.user_ids for b in batches])
    order = np.argsort(user_ids, kind="stable")
    user_ids = user_ids[order]
    if user_ids.size and (np.diff(user_ids) == 0).any():
        raise ValueError("shard batches overlap: a user appears in more than one batch")
    return replace(
        first,
        user_ids=user_ids,
        vectors=np.concatenate([b.vectors for b in batches], axis=0)[order],
        n_events=np.concatenate([b.n_events for b in batches])[order],
        n_unknown_items=sum(b.n_unknown_items for b in batches),
    )


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class WindowedEvents:
    """The events inside each user's window.

    user_row indexes the output rows [0, n_users); basis_row indexes basis.vectors (never -1 here);
    age_days = (user's window end - ts) in days, > 0, present only for variants that need time.
    Order: (user_row, basis_row, ts) when age_days is present; otherwise unspecified (a variant
    without time must give the same result for any order, as weighted_mean does)."""

    n_users: int
    user_row: np.ndarray  # (m,) int64, non-decreasing
    basis_row: np.ndarray  # (m,) int32
    age_days: np.ndarray | None  # (m,) float64


VariantFn = Callable[[WindowedEvents, "BasisLike", LteSettings], np.ndarray]


@dataclass(frozen=True)
class Variant:
    """How windowed events become vectors: fn(events, basis, settings) -> (n_users, tokens * dim)
    float32. `tokens` = None: one vector per user; otherwise tokens(settings) vectors per user
    (a multi-token variant such as multi_interest), flattened in the row."""

    fn: VariantFn
    needs_time: bool
    tokens: Callable[[LteSettings], int] | None = None


def weighted_mean(events: WindowedEvents, basis_vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per user: sum_i w_i * basis[row_i] / sum_i w_i, as one CSR @ dense product; zero rows stay 0."""
    n = events.n_users
    totals = np.bincount(events.user_row, weights=weights, minlength=n)
    data = (weights / totals[events.user_row]).astype(np.float32) if weights.size else weights.astype(np.float32)
    # COO -> CSR keeps each row's input order (counting sort by row), then sums repeated columns
    # after sorting each row by column: deterministic for a deterministic per-row input order, and
    # for any order when a row's terms are all equal (uniform weights).
    matrix = sp.coo_matrix(
        (data, (events.user_row, events.basis_row)), shape=(n, basis_vectors.shape[0]), dtype=np.float32
    ).tocsr()
    return np.ascontiguousarray(matrix @ basis_vectors, dtype=np.float32)


def _uniform(events: WindowedEvents, basis: BasisLike, settings: LteSettings) -> np.ndarray:
    return weighted_mean(events, basis.vectors, np.ones(events.user_row.size, dtype=np.float64))


def _recency(events: WindowedEvents, basis: BasisLike, settings: LteSettings) -> np.ndarray:
    if settings.recency_half_life_days <= 0:
        raise ValueError(f"recency_half_life_days must be > 0, got {settings.recency_half_life_days}")
    age = events.age_days
    # Shift ages so each user's newest event weighs exactly 1: the normalised mean is unchanged,
    # and a long window cannot underflow every weight of a user to 0 (which would give NaN).
    newest = np.full(events.n_users, np.inf)
    np.minimum.at(newest, events.user_row, age)
    weights = np.exp2(-(age - newest[events.user_row]) / settings.recency_half_life_days)
    return weighted_mean(events, basis.vectors, weights)


def _autoencoder(events: WindowedEvents, basis: BasisLike, settings: LteSettings) -> np.ndarray:
    """The trained asymmetric autoencoder's encoder (lte/autoencoder.py); its decoder is the basis."""
    from lte.autoencoder import encode_users

    model = _autoencoder_model(settings.autoencoder_checkpoint, basis)
    # Per user, oldest first (largest age first): the encoder keeps the most recent items when a
    # window exceeds its max_window_items.
    order = np.lexsort((-events.age_days, events.user_row))
    users, rows, ages = events.user_row[order], events.basis_row[order], events.age_days[order]
    splits = np.searchsorted(users, np.arange(1, events.n_users))
    return encode_users(model, np.split(rows.astype(np.int64), splits), np.split(ages, splits))


_AUTOENCODERS: dict[tuple[str, str], object] = {}


def _autoencoder_model(checkpoint: str | None, basis: BasisLike):
    if not checkpoint:
        raise ValueError(
            "lte.variant = 'autoencoder' needs a trained encoder: materialize the `lte_autoencoder` "
            "asset (or set lte.autoencoder_checkpoint to a file saved by lte.autoencoder.save)"
        )
    key = (str(checkpoint), basis.hash)
    if key not in _AUTOENCODERS:
        from lte.autoencoder import load

        _AUTOENCODERS[key] = load(checkpoint, basis)
    return _AUTOENCODERS[key]


VARIANTS: dict[str, Variant] = {
    "uniform": Variant(_uniform, needs_time=False),
    "recency": Variant(_recency, needs_time=True),
    "autoencoder": Variant(_autoencoder, needs_time=True),
}


def register_variant(name: str, fn: VariantFn, needs_time: bool,
                     tokens: Callable[[LteSettings], int] | None = None) -> None:
    """Add a variant usable as lte_settings.variant; `tokens(settings)` = vectors per user for a
    multi-token variant (None = one)."""
    VARIANTS[name] = Variant(fn, needs_time, tokens)


def _variant(name: str) -> Variant:
    variant = VARIANTS.get(name)
    if variant is None:
        raise ValueError(
            f"unknown LTE variant {name!r}; available: {sorted(VARIANTS)} "
            "(others must be added with lte.embeddings.register_variant)"
        )
    return variant


def is_multi_token(variant: str | None) -> bool:
    """True for a variant that stores several vectors per user (multi_interest)."""
    return variant is not None and variant in VARIANTS and VARIANTS[variant].tokens is not None


def lte_tokens(lte_settings: LteSettings) -> int:
    """Vectors per user that lte_settings.variant produces (1 for single-vector variants)."""
    variant = _variant(lte_settings.variant)
    return 1 if variant.tokens is None else int(variant.tokens(lte_settings))


def split_tokens(vectors: np.ndarray, tokens: int) -> np.ndarray:
    """(n, tokens * dim) rows -> (n, tokens, dim)."""
    vectors = np.asarray(vectors)
    if tokens < 1 or vectors.ndim != 2 or vectors.shape[1] % tokens:
        raise ValueError(f"cannot split LTE rows of shape {vectors.shape} into {tokens} vectors each")
    return vectors.reshape(vectors.shape[0], tokens, vectors.shape[1] // tokens)


def nonempty_tokens(token_vectors: np.ndarray, n_events: np.ndarray) -> np.ndarray:
    """(n, tokens) bool: True where the user has window events and that vector is non-zero (an
    empty interest slot of a multi-interest LTE is the zero vector)."""
    n_events = np.asarray(n_events)
    return (n_events > 0)[:, None] & np.any(np.asarray(token_vectors) != 0, axis=-1)


# --------------------------------------------------------------------------- windows


class BasisLike:
    """What compute_lte needs from lte.basis.Basis (documentation only; any such object works)."""

    vectors: np.ndarray  # (n, dim) float32
    item_ids: np.ndarray  # (n,) int64
    hash: str


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, e.g. datetime(2025, 1, 1, tzinfo=UTC); got {moment}")
    return moment.astimezone(UTC)


def to_epoch_us(moment: datetime) -> int:
    delta = _utc(moment, "time") - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value))


def _days_us(days: float, name: str) -> int:
    if not math.isfinite(days) or days < 0:
        raise ValueError(f"{name} must be a finite number of days >= 0, got {days}")
    return int(round(days * US_PER_DAY))


def window_bounds_us(
    as_of_us: np.ndarray, first_us: np.ndarray, settings: LteSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user window [lo, hi) in epoch microseconds. first_us = first event before as_of
    (ignored in "days" mode); NO_EVENT_US (no event before as_of) gives an empty window."""
    as_of_us = np.asarray(as_of_us, dtype=np.int64)
    first_us = np.asarray(first_us, dtype=np.int64)
    first_us = np.where(first_us == NO_EVENT_US, as_of_us, first_us)  # span 0: empty window
    if settings.window_unit == "days":
        hi = as_of_us - _days_us(settings.lag_days, "lag_days")
        return hi - _days_us(settings.window_days, "window_days"), hi
    span = np.maximum(as_of_us - first_us, 0).astype(np.float64)
    hi = as_of_us - np.ceil(settings.lag_fraction * span).astype(np.int64)
    lo = hi - np.ceil(settings.window_fraction * span).astype(np.int64)
    return lo, hi


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, table: pa.Table) -> Iterator[str]:
    """A uniquely named view of an Arrow table for the duration of one query."""
    name = f"_lte_{uuid.uuid4().hex[:12]}"
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)


def _shard_sql(shard: tuple[int, int] | None, column: str) -> str:
    """SQL predicate for user-hash shard i of n (DuckDB's hash(): deterministic for a DuckDB version)."""
    if shard is None:
        return "TRUE"
    index, count = shard
    if not (isinstance(index, int) and isinstance(count, int) and count >= 1 and 0 <= index < count):
        raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard}")
    return f"hash({column}::BIGINT) % {count} = {index}"


def _users_before(
    con: duckdb.DuckDBPyConnection,
    as_of_us: int,
    users: Sequence[int] | np.ndarray | None,
    shard: tuple[int, int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(user_ids ascending, epoch_us of each one's first event before as_of or NO_EVENT_US)."""
    shard_sql = _shard_sql(shard, "user_id")
    if users is None:
        result = con.execute(
            f"""SELECT user_id, epoch_us(min(ts)) AS first_us FROM events
                WHERE ts < $as_of AND {shard_sql}
                GROUP BY user_id ORDER BY user_id""",
            {"as_of": from_epoch_us(as_of_us)},
        ).fetchnumpy()
        return result["user_id"].astype(np.int64), result["first_us"].astype(np.int64)
    asked = pa.table({"user_id": np.unique(np.asarray(users, dtype=np.int64))})
    with _registered(con, asked) as asked_name:
        result = con.execute(
            f"""SELECT a.user_id, coalesce(epoch_us(min(e.ts)), {NO_EVENT_US}) AS first_us
                FROM {asked_name} a LEFT JOIN events e
                  ON e.user_id = a.user_id AND e.ts < $as_of
                WHERE {_shard_sql(shard, "a.user_id")}
                GROUP BY a.user_id ORDER BY a.user_id""",
            {"as_of": from_epoch_us(as_of_us)},
        ).fetchnumpy()
    return result["user_id"].astype(np.int64), result["first_us"].astype(np.int64)


def _first_events(con: duckdb.DuckDBPyConnection, user_ids: np.ndarray, as_of_us: np.ndarray) -> np.ndarray:
    """epoch_us of each user's first event before their own as_of (NO_EVENT_US if none)."""
    requests = pa.table({"user_row": np.arange(user_ids.size), "user_id": user_ids, "as_of_us": as_of_us})
    with _registered(con, requests) as name:
        result = con.execute(
            f"""SELECT r.user_row, coalesce(epoch_us(min(e.ts)), {NO_EVENT_US}) AS first_us
                FROM {name} r LEFT JOIN events e ON e.user_id = r.user_id AND epoch_us(e.ts) < r.as_of_us
                GROUP BY r.user_row ORDER BY r.user_row"""
        ).fetchnumpy()
    return result["first_us"].astype(np.int64)


def _window_rows(
    con: duckdb.DuckDBPyConnection,
    user_ids: np.ndarray,
    lo_us: np.ndarray,
    hi_us: np.ndarray,
    settings: LteSettings,
    basis_item_ids: np.ndarray | None,
    with_time: bool,
    per_user_bounds: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(user_row, basis_row or -1 for unknown items, ts_us or None) of every windowed event; sorted
    by (user_row, basis_row, ts_us) when with_time (rows tied on all three are identical terms).

    basis_item_ids=None maps every item to row 0 (used to count events without a basis)."""
    if user_ids.size == 0 or not (hi_us > lo_us).any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.astype(np.int32), (empty if with_time else None)
    requests = pa.table({
        "user_id": user_ids, "user_row": np.arange(user_ids.size, dtype=np.int64),
        "lo_us": lo_us, "hi_us": hi_us,
    })
    if basis_item_ids is None:
        item_rows = pa.table({"item_id": pa.array([], pa.int64()), "basis_row": pa.array([], pa.int32())})
        row_sql = "0::INTEGER"
    else:
        item_rows = pa.table({
            "item_id": np.asarray(basis_item_ids, dtype=np.int64),
            "basis_row": np.arange(len(basis_item_ids), dtype=np.int32),
        })
        row_sql = "coalesce(b.basis_row, -1)::INTEGER"
    type_sql = "list_contains($types, e.event_type)" if settings.event_types else "TRUE"
    params: dict = {"lo": from_epoch_us(lo_us.min()), "hi": from_epoch_us(hi_us.max())}
    if settings.event_types:
        params["types"] = list(settings.event_types)
    with _registered(con, requests) as req, _registered(con, item_rows) as items:
        # The constant [lo, hi) envelope lets DuckDB skip row groups by ts; in "days" mode it is the
        # exact window, otherwise each user's own bounds are applied on top.
        per_user_sql = "epoch_us(e.ts) >= r.lo_us AND epoch_us(e.ts) < r.hi_us" if per_user_bounds else "TRUE"
        windowed = f"""
            SELECT r.user_row, e.item_id, {row_sql} AS basis_row, epoch_us(e.ts) AS ts_us
            FROM events e
            JOIN {req} r ON e.user_id = r.user_id
            LEFT JOIN {items} b ON e.item_id = b.item_id
            WHERE e.ts >= $lo AND e.ts < $hi
              AND {per_user_sql} AND {type_sql}"""
        if settings.dedupe_items:  # one row per (user, item), at the item's latest time in the window
            windowed = f"""SELECT user_row, item_id, any_value(basis_row) AS basis_row, max(ts_us) AS ts_us
                           FROM ({windowed}) GROUP BY user_row, item_id"""
        # With time, weights differ between repeats of an item, so the summation order must be
        # fixed: sort by (user, row, ts). Without time every term of a row is equal and scipy's
        # canonical CSR (rows sorted by column) is already deterministic, so the sort is skipped.
        columns = "user_row, basis_row" + (", ts_us" if with_time else "")
        order = f"ORDER BY {columns}" if with_time else ""
        result = con.execute(f"SELECT {columns} FROM ({windowed}) {order}", params).fetchnumpy()
    user_row = result["user_row"].astype(np.int64)
    basis_row = result["basis_row"].astype(np.int32)
    ts_us = result["ts_us"].astype(np.int64) if with_time else None
    return user_row, basis_row, ts_us


def _windowed_events(
    n_users: int, user_row: np.ndarray, basis_row: np.ndarray, ts_us: np.ndarray | None, hi_us: np.ndarray
) -> WindowedEvents:
    """Rows come from _window_rows: sorted by (user_row, basis_row, ts) when ts_us is given."""
    age_days = None
    if ts_us is not None:
        age_days = (hi_us[user_row] - ts_us).astype(np.float64) / US_PER_DAY
    return WindowedEvents(n_users, user_row, basis_row, age_days)


def compute_lte(
    con: duckdb.DuckDBPyConnection,
    basis: BasisLike,
    as_of: datetime,
    lte_settings: LteSettings,
    users: Sequence[int] | np.ndarray | None = None,
    shard: tuple[int, int] | None = None,
) -> LteBatch:
    """LTEs at `as_of` from the `events` table (see the module docstring for exact semantics).

    users=None: every user with an event before as_of; otherwise exactly these users (duplicates
    removed). shard=(i, n): only users with hash(user_id) % n == i; the union over i of the shard
    results equals the unsharded result row for row, bit for bit. Rows are sorted by user id."""
    as_of = _utc(as_of, "as_of")
    variant = _variant(lte_settings.variant)
    tokens = lte_tokens(lte_settings)
    as_of_us = to_epoch_us(as_of)
    user_ids, first_us = _users_before(con, as_of_us, users, shard)
    lo_us, hi_us = window_bounds_us(np.full(user_ids.size, as_of_us), first_us, lte_settings)
    user_row, basis_row, ts_us = _window_rows(
        con, user_ids, lo_us, hi_us, lte_settings, basis.item_ids, variant.needs_time,
        per_user_bounds=lte_settings.window_unit != "days",
    )
    known = basis_row >= 0
    n_unknown = int((~known).sum())
    if n_unknown:
        user_row, basis_row = user_row[known], basis_row[known]
        ts_us = ts_us[known] if ts_us is not None else None
    events = _windowed_events(user_ids.size, user_row, basis_row, ts_us, hi_us)
    vectors = np.ascontiguousarray(variant.fn(events, basis, lte_settings), dtype=np.float32)
    expected = (user_ids.size, tokens * basis.vectors.shape[1])
    if vectors.shape != expected:
        raise ValueError(f"variant {lte_settings.variant!r} returned {vectors.shape}, expected {expected}"
                         + (f" ({tokens} vectors per user)" if tokens > 1 else ""))
    if lte_settings.normalize:  # each vector on its own (every centroid of a multi-interest row)
        flat = vectors.reshape(-1, basis.vectors.shape[1])
        norms = np.linalg.norm(flat, axis=1)
        nonzero = norms > 0
        flat[nonzero] /= norms[nonzero, None]
    window_start = window_end = None
    if lte_settings.window_unit == "days":
        window_end = as_of - timedelta(microseconds=_days_us(lte_settings.lag_days, "lag_days"))
        window_start = window_end - timedelta(microseconds=_days_us(lte_settings.window_days, "window_days"))
    return LteBatch(
        user_ids=user_ids,
        vectors=vectors,
        n_events=np.bincount(events.user_row, minlength=user_ids.size).astype(np.int32),
        as_of=as_of,
        window_start=window_start,
        window_end=window_end,
        basis_hash=basis.hash,
        variant=lte_settings.variant,
        n_unknown_items=n_unknown,
        tokens=tokens,
    )


def window_event_counts(
    con: duckdb.DuckDBPyConnection,
    user_ids: Sequence[int] | np.ndarray,
    as_of: Sequence[datetime] | np.ndarray,
    lte_settings: LteSettings,
) -> np.ndarray:
    """Events in each user's window at that user's own as_of (filters and dedupe applied, every
    item counted, no basis needed). The window rules are exactly compute_lte's; as_of may be
    datetimes or epoch microseconds (int64). Used to measure LTE coverage on real data."""
    user_ids = np.asarray(user_ids, dtype=np.int64)
    as_of_us = np.array(
        [to_epoch_us(t) if isinstance(t, datetime) else int(t) for t in as_of], dtype=np.int64
    )
    if as_of_us.shape != user_ids.shape:
        raise ValueError(f"need one as_of per user: {user_ids.shape} users, {as_of_us.shape} times")
    first_us = _first_events(con, user_ids, as_of_us)
    lo_us, hi_us = window_bounds_us(as_of_us, first_us, lte_settings)
    # as_of differs per user, so each user's own bounds are applied whatever the window unit.
    user_row, _, _ = _window_rows(
        con, user_ids, lo_us, hi_us, lte_settings, None, with_time=False, per_user_bounds=True
    )
    return np.bincount(user_row, minlength=user_ids.size).astype(np.int64)


# Registers "multi_interest" (after everything above exists: lte.multi_interest imports from here).
import lte.multi_interest  # noqa: E402, F401
