"""LTE builders: exact values on hand-made events, window bounds, leakage properties, shards, ties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from lte.basis import build_basis
from lte.config import LteSettings
from lte.embeddings import compute_lte, concat_batches, window_event_counts
from lte.encoders import EncoderIdentity

T = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


class TableEncoder:
    """Encoder whose vector for text "item <i>" is row i of a fixed table (exact expected values)."""

    def __init__(self, table: np.ndarray):
        self.table = np.asarray(table, dtype=np.float32)
        self.identity = EncoderIdentity(name="table", version="1", dim=self.table.shape[1], normalize=False)

    def encode(self, texts):
        return self.table[[int(t.split()[1]) for t in texts]]


def make_basis(n_items: int = 6, dim: int = 4, seed: int = 0, known: int | None = None):
    """Basis over items 0..known-1 (default all) with random rows."""
    table = np.random.default_rng(seed).standard_normal((n_items, dim)).astype(np.float32)
    ids = np.arange(known if known is not None else n_items)
    return build_basis(ids, [f"item {i}" for i in ids], TableEncoder(table)), table


def events_con(rows: list[tuple], con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """In-memory store with an `events` table from (user_id, item_id, ts, event_type) tuples
    (replacing the table when an existing connection is passed)."""
    con = con or duckdb.connect()
    con.execute("""CREATE OR REPLACE TABLE events (event_id VARCHAR, user_id BIGINT, item_id BIGINT,
                   ts TIMESTAMPTZ, event_type VARCHAR)""")
    if rows:
        frame = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "event_type"])
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        frame.insert(0, "event_id", [f"e{i}" for i in range(len(frame))])
        con.execute("INSERT INTO events SELECT * FROM frame")
    return con


LAG_WINDOW = LteSettings(lag_days=10, window_days=30)


def test_uniform_is_the_exact_mean_of_window_items_and_bounds_are_half_open():
    basis, table = make_basis()
    lo, hi = T - 40 * DAY, T - 10 * DAY  # window [lo, hi)
    con = events_con([
        (1, 0, lo, "view"),  # on the lower bound: inside
        (1, 1, hi - timedelta(microseconds=1), "view"),  # last inside microsecond
        (1, 2, hi, "view"),  # on the upper bound T - lag: outside
        (1, 3, lo - timedelta(microseconds=1), "view"),  # just before the window: outside
        (1, 4, T + DAY, "view"),  # the future: outside
        (2, 5, hi + DAY, "view"),  # only lagged-away history: empty LTE, still a user
        (3, 0, T + DAY, "view"),  # no event before T: not a user at T
    ])
    batch = compute_lte(con, basis, T, LAG_WINDOW)
    assert batch.user_ids.tolist() == [1, 2]
    assert batch.n_events.tolist() == [2, 0]
    np.testing.assert_allclose(batch.vectors[0], (table[0] + table[1]) / 2, rtol=1e-6)
    assert np.all(batch.vectors[1] == 0) and np.isfinite(batch.vectors).all()
    assert (batch.window_start, batch.window_end) == (lo, hi)
    assert batch.basis_hash == basis.hash and batch.variant == "uniform"
    assert batch.vectors.dtype == np.float32 and batch.n_events.dtype == np.int32


def test_recency_weights_halve_every_half_life_back_from_window_end():
    basis, table = make_basis()
    hi = T - 10 * DAY
    con = events_con([(1, 0, hi - 1 * DAY, "view"), (1, 1, hi - 6 * DAY, "view"), (1, 2, hi - 11 * DAY, "view")])
    batch = compute_lte(con, basis, T, LAG_WINDOW.model_copy(update={"variant": "recency",
                                                                     "recency_half_life_days": 5.0}))
    weights = np.array([1.0, 0.5, 0.25])
    np.testing.assert_allclose(batch.vectors[0], weights @ table[:3] / weights.sum(), rtol=1e-5)


def test_normalize_event_types_dedupe_and_unknown_items():
    basis, table = make_basis(known=4)  # items 4 and 5 are not in the basis
    t1, t2 = T - 20 * DAY, T - 15 * DAY
    con = events_con([
        (1, 0, t1, "view"), (1, 0, t2, "view"), (1, 1, t2, "purchase"),
        (1, 4, t1, "view"), (1, 5, t2, "purchase"),
    ])
    plain = compute_lte(con, basis, T, LAG_WINDOW)
    assert plain.n_events.tolist() == [3] and plain.n_unknown_items == 2
    np.testing.assert_allclose(plain.vectors[0], (2 * table[0] + table[1]) / 3, rtol=1e-6)

    deduped = compute_lte(con, basis, T, LAG_WINDOW.model_copy(update={"dedupe_items": True}))
    assert deduped.n_events.tolist() == [2]
    np.testing.assert_allclose(deduped.vectors[0], (table[0] + table[1]) / 2, rtol=1e-6)

    purchases = compute_lte(con, basis, T, LAG_WINDOW.model_copy(update={"event_types": ("purchase",)}))
    assert purchases.n_events.tolist() == [1] and purchases.n_unknown_items == 1
    np.testing.assert_allclose(purchases.vectors[0], table[1], rtol=1e-6)

    unit = compute_lte(con, basis, T, LAG_WINDOW.model_copy(update={"normalize": True}))
    assert np.linalg.norm(unit.vectors[0]) == pytest.approx(1.0, abs=1e-6)


def test_explicit_users_include_users_without_history_as_zero_rows():
    basis, _ = make_basis()
    con = events_con([(1, 0, T - 20 * DAY, "view")])
    batch = compute_lte(con, basis, T, LAG_WINDOW, users=[7, 1, 7])
    assert batch.user_ids.tolist() == [1, 7] and batch.n_events.tolist() == [1, 0]
    assert np.all(batch.vectors[1] == 0)


def test_history_fraction_window_is_per_user():
    basis, table = make_basis()
    # User 1 spans 100 days before T: lag 20 days, window 80 days -> [T-100d, T-20d).
    # User 2 spans 10 days: lag 2 days, window 8 days -> [T-10d, T-2d).
    con = events_con([
        (1, 0, T - 100 * DAY, "view"), (1, 1, T - 21 * DAY, "view"), (1, 2, T - 20 * DAY, "view"),
        (2, 3, T - 10 * DAY, "view"), (2, 4, T - 3 * DAY, "view"), (2, 5, T - 1 * DAY, "view"),
    ])
    frac = LteSettings(window_unit="history_fraction", lag_fraction=0.2, window_fraction=0.8)
    batch = compute_lte(con, basis, T, frac)
    assert batch.n_events.tolist() == [2, 2]
    np.testing.assert_allclose(batch.vectors[0], (table[0] + table[1]) / 2, rtol=1e-6)
    np.testing.assert_allclose(batch.vectors[1], (table[3] + table[4]) / 2, rtol=1e-6)
    assert batch.window_start is None and batch.window_end is None
    counts = window_event_counts(con, [1, 2], [T, T - 2 * DAY], frac)  # per-user as_of
    # User 2 at T-2d spans 8 days: window [T-10d, T-3d.6) excludes the T-3d event.
    assert counts.tolist() == [2, 1]


def _random_events(rng: np.random.Generator, n: int, n_users: int = 30, n_items: int = 12) -> list[tuple]:
    seconds = rng.integers(0, 120 * 86_400, n) // 3600 * 3600  # hour grid: many exact ties
    return [
        (int(u), int(i), T - timedelta(seconds=int(s)), str(k))
        for u, i, s, k in zip(rng.integers(0, n_users, n), rng.integers(0, n_items, n), seconds,
                              rng.choice(["view", "cart"], n), strict=True)
    ]


@pytest.mark.parametrize("variant", ["uniform", "recency"])
def test_shards_union_equals_unsharded_bit_for_bit(variant):
    basis, _ = make_basis(n_items=12, dim=8)
    con = events_con(_random_events(np.random.default_rng(1), 3000))
    config = LteSettings(lag_days=5, window_days=60, variant=variant)
    whole = compute_lte(con, basis, T, config)
    shards = [compute_lte(con, basis, T, config, shard=(i, 4)) for i in range(4)]
    assert all(len(s) for s in shards) and sum(len(s) for s in shards) == len(whole)
    union = concat_batches(shards)
    assert np.array_equal(union.user_ids, whole.user_ids)
    assert np.array_equal(union.vectors.view(np.uint32), whole.vectors.view(np.uint32))
    assert np.array_equal(union.n_events, whole.n_events)


@pytest.mark.parametrize("variant", ["uniform", "recency"])
def test_same_timestamp_ties_and_insertion_order_do_not_change_a_bit(variant):
    basis, _ = make_basis(n_items=12, dim=8)
    rows = _random_events(np.random.default_rng(2), 3000)
    config = LteSettings(lag_days=5, window_days=60, variant=variant)
    reference = compute_lte(events_con(rows), basis, T, config)
    shuffled = [rows[i] for i in np.random.default_rng(3).permutation(len(rows))]
    again = compute_lte(events_con(shuffled), basis, T, config)
    assert np.array_equal(reference.vectors.view(np.uint32), again.vectors.view(np.uint32))


# --------------------------------------------------------------------------- leakage property

PROPERTY_BASIS, PROPERTY_TABLE = make_basis(n_items=8, dim=4, seed=5)
PROPERTY_SETTINGS = [
    LteSettings(lag_days=7, window_days=30),
    LteSettings(lag_days=7, window_days=30, variant="recency", recency_half_life_days=3, normalize=True),
    LteSettings(lag_days=0.5, window_days=10, dedupe_items=True, event_types=("view",)),
    LteSettings(window_unit="history_fraction", lag_fraction=0.3, window_fraction=0.7),
]
event_st = st.tuples(
    st.integers(0, 2),  # user
    st.integers(0, 7),  # item
    st.integers(-60 * 24, 24),  # hours relative to T
    st.sampled_from(["view", "cart"]),
)


PROPERTY_CON = duckdb.connect()  # reused: a fresh DuckDB per example would dominate the run time


def _lte_of(rows, config, users=(0, 1, 2)):
    rows = [(u, i, T + timedelta(hours=h), k) for u, i, h, k in rows]
    return compute_lte(events_con(rows, PROPERTY_CON), PROPERTY_BASIS, T, config, users=list(users))


def _lag_start(rows, config, user) -> datetime:
    """T - lag for this user (per-user in history_fraction mode)."""
    if config.window_unit == "days":
        return T - timedelta(days=config.lag_days)
    past = [T + timedelta(hours=h) for u, _, h, _ in rows if u == user and h < 0]
    if not past:
        return T
    span = T - min(past)
    return T - timedelta(microseconds=int(np.ceil(config.lag_fraction * span / timedelta(microseconds=1))))


@hyp_settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.lists(event_st, min_size=1, max_size=25),
    late=st.lists(event_st, min_size=1, max_size=6),
    config_index=st.integers(0, len(PROPERTY_SETTINGS) - 1),
    data=st.data(),
)
def test_events_at_or_after_T_minus_lag_never_change_the_lte(base, late, config_index, data):
    config = PROPERTY_SETTINGS[config_index]
    before = _lte_of(base, config)
    # Every late event lands at or after the user's T - lag: add them, move them, drop lagged ones.
    moved = []
    for user, item, _, kind in late:
        lag_start = _lag_start(base, config, user)
        offset_h = data.draw(st.integers(0, 24 * 10))
        hours = (lag_start - T) / timedelta(hours=1) + offset_h
        moved.append((user, item, float(np.ceil(hours)), kind))
    kept = [e for e in base if T + timedelta(hours=e[2]) < _lag_start(base, config, e[0])]
    for changed in (base + moved, kept + moved, kept):
        after = _lte_of(changed, config)
        assert np.array_equal(after.vectors.view(np.uint32), before.vectors.view(np.uint32))
        assert np.array_equal(after.n_events, before.n_events)


@hyp_settings(max_examples=25, deadline=None)
@given(hours_before_lag=st.integers(1, 20 * 24), item=st.integers(0, 7), other=st.integers(0, 7))
def test_changing_an_event_inside_the_window_changes_the_lte(hours_before_lag, item, other):
    config = PROPERTY_SETTINGS[0]
    ts_h = -config.lag_days * 24 - hours_before_lag  # inside [T - 37d, T - 7d)
    anchor = (0, 3, -config.lag_days * 24 - 1, "view")
    base = _lte_of([anchor, (0, item, ts_h, "view")], config, users=(0,))
    swapped = _lte_of([anchor, (0, (item + 1 + other % 7) % 8, ts_h, "view")], config, users=(0,))
    removed = _lte_of([anchor], config, users=(0,))
    assert not np.array_equal(base.vectors, swapped.vectors)
    assert base.n_events[0] == 2 and removed.n_events[0] == 1
    assert not np.array_equal(base.vectors, removed.vectors) or item == 3
