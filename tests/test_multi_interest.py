"""Multi-interest LTE (ENCODE): shapes, lagged window only, determinism, planted tastes, storage, readers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from lte.basis import build_basis
from lte.config import DriftSettings, LteSettings
from lte.embeddings import compute_lte, concat_batches, lte_tokens
from lte.encoders import EncoderIdentity
from lte.feature_store import FeatureStore

T = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)
DIM = 16
LAG, WINDOW = 10, 60
A_ITEMS, B_ITEMS, C_ITEMS = range(0, 5), range(5, 10), range(10, 12)


class TableEncoder:
    """Encoder whose vector for text "item <i>" is row i of a fixed table."""

    def __init__(self, table: np.ndarray):
        self.table = np.asarray(table, dtype=np.float32)
        self.identity = EncoderIdentity(name="table", version="1", dim=self.table.shape[1], normalize=True)

    def encode(self, texts):
        return self.table[[int(t.split()[1]) for t in texts]]


def taste_basis():
    """Unit rows around three orthogonal tastes: items 0-4 near e0 (A), 5-9 near e1 (B), 10-11 near e2 (C)."""
    rng = np.random.default_rng(0)
    anchors = np.eye(DIM, dtype=np.float32)[:3]
    taste = np.array([0] * len(A_ITEMS) + [1] * len(B_ITEMS) + [2] * len(C_ITEMS))
    table = anchors[taste] + 0.15 * rng.standard_normal((taste.size, DIM)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    ids = np.arange(taste.size)
    return build_basis(ids, [f"item {i}" for i in ids], TableEncoder(table)), anchors


def random_basis(n_items: int = 12, dim: int = 8, seed: int = 0):
    table = np.random.default_rng(seed).standard_normal((n_items, dim)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    ids = np.arange(n_items)
    return build_basis(ids, [f"item {i}" for i in ids], TableEncoder(table))


def events_con(rows: list[tuple], con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A store whose `events` table holds (user_id, item_id, ts) rows."""
    con = con or duckdb.connect()
    con.execute("""CREATE OR REPLACE TABLE events (event_id VARCHAR, user_id BIGINT, item_id BIGINT,
                   ts TIMESTAMPTZ, event_type VARCHAR)""")
    if rows:
        frame = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        frame.insert(0, "event_id", [f"e{i}" for i in range(len(frame))])
        frame["event_type"] = "view"
        con.execute("INSERT INTO events SELECT * FROM frame")
    return con


def settings(k: int = 2, **extra) -> LteSettings:
    return LteSettings(variant="multi_interest", lag_days=LAG, window_days=WINDOW, interests=k, **extra)


def two_taste_rows(user: int = 1) -> list[tuple]:
    """Inside the window [T - 70 d, T - 10 d): 8 events on A items (item 0 three times), 5 on B items."""
    a_items = [0, 0, 0, 1, 2, 3, 4, 1]
    b_items = [5, 6, 7, 8, 9]
    return [(user, item, T - (20 + i) * DAY) for i, item in enumerate(a_items + b_items)]


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def _random_events(rng: np.random.Generator, n: int, n_users: int = 40, n_items: int = 12) -> list[tuple]:
    seconds = rng.integers(0, 90 * 86_400, n) // 3600 * 3600  # hour grid: many exact ties
    return [(int(u), int(i), T - timedelta(seconds=int(s)))
            for u, i, s in zip(rng.integers(0, n_users, n), rng.integers(0, n_items, n), seconds, strict=True)]


# --------------------------------------------------------------------------- the variant


def test_rows_are_k_centroids_flattened_largest_first_with_zero_empty_slots():
    basis, _ = taste_basis()
    rows = two_taste_rows(user=1) + [
        (2, 5, T - 30 * DAY), (2, 5, T - 31 * DAY), (2, 10, T - 32 * DAY),  # 2 distinct items < k
        (3, 0, T - 5 * DAY),  # only inside the lag: an empty LTE
    ]
    batch = compute_lte(events_con(rows), basis, T, settings(k=3))
    assert lte_tokens(settings(k=3)) == 3 and batch.tokens == 3
    assert batch.vectors.shape == (3, 3 * DIM) and batch.token_vectors().shape == (3, 3, DIM)
    assert batch.user_ids.tolist() == [1, 2, 3] and batch.n_events.tolist() == [13, 3, 0]
    two_items = batch.token_vectors()[1]
    np.testing.assert_array_equal(two_items[0], basis.vectors[5])  # 2 events: first
    np.testing.assert_array_equal(two_items[1], basis.vectors[10])
    assert not two_items[2].any()  # no third item: empty slot
    assert not batch.vectors[2].any()  # no window events: the zero row
    sizes_first = np.linalg.norm(batch.token_vectors()[0], axis=1)
    assert (sizes_first > 0).all() and (sizes_first <= 1 + 1e-6).all()


def test_two_separated_tastes_give_one_centroid_near_each_taste():
    basis, anchors = taste_basis()
    rows = two_taste_rows()
    batch = compute_lte(events_con(rows), basis, T, settings(k=2))
    first, second = batch.token_vectors()[0]
    # A has 8 events, B 5: A's centroid comes first. Each centroid is the exact mean of its taste's events.
    a_mean = basis.vectors[[item for _, item, _ in rows if item in A_ITEMS]].mean(0)
    b_mean = basis.vectors[[item for _, item, _ in rows if item in B_ITEMS]].mean(0)
    np.testing.assert_allclose(first, a_mean, atol=1e-6)
    np.testing.assert_allclose(second, b_mean, atol=1e-6)
    assert cosine(first, anchors[0]) > 0.9 and cosine(second, anchors[1]) > 0.9
    assert abs(cosine(first, anchors[1])) < 0.3 and abs(cosine(second, anchors[0])) < 0.3
    # The uniform LTE of the same window mixes both tastes: neither is represented well.
    uniform = compute_lte(events_con(rows), basis, T, LteSettings(lag_days=LAG, window_days=WINDOW)).vectors[0]
    assert cosine(uniform, anchors[0]) < 0.9 and cosine(uniform, anchors[1]) < 0.9

    # With more slots than tastes, every centroid still belongs to one taste and both are covered.
    many = compute_lte(events_con(rows), basis, T, settings(k=4)).token_vectors()[0]
    nearest = [int(np.argmax([cosine(c, a) for a in anchors[:2]])) for c in many if c.any()]
    assert sorted(set(nearest)) == [0, 1] and len(nearest) == 4
    assert all(max(cosine(c, anchors[0]), cosine(c, anchors[1])) > 0.8 for c in many)


def test_clusters_come_only_from_the_lagged_window():
    basis, anchors = taste_basis()
    base = two_taste_rows()
    lo, hi = T - (LAG + WINDOW) * DAY, T - LAG * DAY
    outside = [  # taste C, which the window never shows
        (1, 10, hi), (1, 11, hi),  # exactly T - lag: outside (half-open window)
        (1, 10, T - 3 * DAY), (1, 11, T - US),  # the short-term horizon [T - lag, T)
        (1, 10, T), (1, 11, T + 5 * DAY),  # at and after as_of
        (1, 10, lo - US),  # just before the window starts
    ]
    config = settings(k=3)
    reference = compute_lte(events_con(base), basis, T, config)
    planted = compute_lte(events_con(base + outside), basis, T, config)
    assert np.array_equal(planted.vectors.view(np.uint32), reference.vectors.view(np.uint32))
    assert planted.n_events.tolist() == reference.n_events.tolist() == [13]
    # The same taste-C events inside the window do change the centroids (the test can fail).
    inside = [(1, item, hi - US - i * DAY) for i, (_, item, _) in enumerate(outside)]
    moved = compute_lte(events_con(base + inside), basis, T, config)
    assert not np.array_equal(moved.vectors, reference.vectors)
    assert max(cosine(c, anchors[2]) for c in moved.token_vectors()[0]) > 0.9


def test_deterministic_across_runs_insertion_orders_shards_and_batching(monkeypatch):
    import lte.multi_interest as multi_interest

    basis = random_basis()
    rows = _random_events(np.random.default_rng(1), 3000)
    config = LteSettings(variant="multi_interest", lag_days=5, window_days=60, interests=3)
    whole = compute_lte(events_con(rows), basis, T, config)
    assert (whole.n_events > 3).sum() > 20  # the k-means path runs, for many point counts
    again = compute_lte(events_con(rows), basis, T, config)
    shuffled = compute_lte(events_con([rows[i] for i in np.random.default_rng(3).permutation(len(rows))]),
                           basis, T, config)
    shards = concat_batches([compute_lte(events_con(rows), basis, T, config, shard=(i, 4)) for i in range(4)])
    monkeypatch.setattr(multi_interest, "_CHUNK_FLOATS", 1)  # one user per batched k-means call
    one_by_one = compute_lte(events_con(rows), basis, T, config)
    for other in (again, shuffled, shards, one_by_one):
        assert np.array_equal(other.user_ids, whole.user_ids)
        assert np.array_equal(other.vectors.view(np.uint32), whole.vectors.view(np.uint32))
    assert shards.tokens == 3


def test_one_interest_is_the_uniform_mean_and_normalize_scales_each_centroid():
    basis = random_basis()
    con = events_con(_random_events(np.random.default_rng(4), 1500) + [(999, 3, T - 20 * DAY)])  # 999: one item
    uniform = compute_lte(con, basis, T, LteSettings(lag_days=5, window_days=60))
    single = compute_lte(con, basis, T, LteSettings(variant="multi_interest", lag_days=5, window_days=60,
                                                    interests=1))
    np.testing.assert_allclose(single.vectors, uniform.vectors, atol=1e-6)
    normalized = compute_lte(con, basis, T, LteSettings(variant="multi_interest", lag_days=5, window_days=60,
                                                        interests=3, normalize=True)).token_vectors()
    norms = np.linalg.norm(normalized, axis=2)
    present = normalized.any(axis=2)
    np.testing.assert_allclose(norms[present], 1.0, atol=1e-6)
    assert (norms[~present] == 0).all() and (~present).any()


# --------------------------------------------------------------------------- storage and readers


def test_rows_carry_the_basis_hash_and_round_trip_through_as_of_and_live():
    basis, _ = taste_basis()
    rows = two_taste_rows(1) + two_taste_rows(2)[:3] + [(3, 0, T - 3 * DAY)]
    con = events_con(rows)
    store = FeatureStore(con)
    batch = compute_lte(con, basis, T, settings(k=3))
    assert store.publish_live(batch) == 3
    assert con.execute("SELECT DISTINCT basis_hash, variant, len(vector) FROM lte_snapshots").fetchall() == [
        (basis.hash, "multi_interest", 3 * DIM)]

    live = store.live()
    assert live.tokens == 3 and live.basis_hash == basis.hash and live.variant == "multi_interest"
    assert np.array_equal(live.vectors, batch.vectors)
    some = store.live(users=[2, 99], basis=basis)
    assert some.tokens == 3 and some.vectors.shape == (2, 3 * DIM) and not some.vectors[1].any()
    assert store.snapshot(variant="multi_interest").tokens == 3

    for model_basis in (basis, basis.hash):
        read = store.as_of([1, 2, 3, 1], [T, T + DAY, T, T - DAY], "multi_interest", model_basis)
        assert read.tokens == 3 and read.vectors.shape == (4, 3 * DIM)
        assert np.array_equal(read.vectors[:3], batch.vectors)
        assert read.basis_hashes == [basis.hash] * 3 + [None]  # nothing before the first snapshot
        assert not read.vectors[3].any() and read.n_events[3] == 0

    # One (variant, basis) keeps one k: a snapshot with another k is refused, not silently mixed.
    with pytest.raises(ValueError, match="vectors per user"):
        store.write_snapshot(compute_lte(con, basis, T + DAY, settings(k=2)))
    assert store.snapshot_times_available("multi_interest") == [T]


def test_serving_reads_live_rows_as_k_centroids_with_a_mask():
    from training.serve import live_lte

    basis, _ = taste_basis()
    rows = two_taste_rows(1) + [(2, 5, T - 30 * DAY), (3, 0, T - 3 * DAY)]
    con = events_con(rows)
    batch = compute_lte(con, basis, T, settings(k=3))
    FeatureStore(con).publish_live(batch)
    live = live_lte(con, [2, 1, 3, 42])  # 42: no live row
    lte, mask = live.model_inputs(DIM, tokens=3)
    assert lte.shape == (4, 3, DIM) and mask.shape == (4, 3)
    assert mask.tolist() == [[True, False, False], [True, True, True], [False] * 3, [False] * 3]
    np.testing.assert_array_equal(lte[1], batch.token_vectors()[0])
    np.testing.assert_array_equal(lte[0, 0], basis.vectors[5])
    with pytest.raises(ValueError, match="reads 1 vector"):
        live.model_inputs(DIM, tokens=1)  # a single-vector model cannot read k centroids


def test_sanity_check_and_drift_read_multi_interest_rows(tmp_path):
    from lte.lte_checks import lte_sanity, lte_set_figures
    from monitoring.drift import drift_report, user_vectors

    basis, anchors = taste_basis()
    rng = np.random.default_rng(5)
    rows = [(u, int(item), T - int(rng.integers(11, 69)) * DAY)
            for u in range(300) for item in rng.choice(12, size=6)]
    batch = compute_lte(events_con(rows), basis, T, settings(k=3))
    assert np.linalg.norm(batch.vectors, axis=1).max() > 1.01  # a flattened row leaves the unit ball...
    sanity = lte_sanity(batch, basis.hash, max_empty_share=0.5)
    assert sanity.passed, sanity.metadata()  # ...each centroid does not
    assert 0 < lte_set_figures(batch)["mean_norm"] <= 1
    broken = batch.vectors.copy()
    broken[0, DIM:2 * DIM] *= 3  # one second centroid outside the unit ball
    assert not lte_sanity(replace(batch, vectors=broken), basis.hash, 0.5).norms_in_unit_ball

    # Drift compares one basis-space vector per user: the mean of its non-empty centroids.
    means = user_vectors(batch)
    tokens = batch.token_vectors()
    present = tokens.any(axis=2)
    np.testing.assert_allclose(means[0], tokens[0][present[0]].mean(0), atol=1e-6)
    assert means.shape == (300, DIM)
    result = drift_report(batch, batch, tmp_path, DriftSettings(), run_name="multi")
    assert result.n_compared_reference == result.n_compared_current == 300


# --------------------------------------------------------------------------- training data


@pytest.fixture
def multi_pipeline(loaded_con, settings):
    """Tiny shop, hashing basis, multi_interest (k=3) and uniform snapshots on the 30-day cadence."""
    from lte import catalog
    from lte.encoders import get_encoder
    from lte.feature_store import backfill, snapshot_cadence_times

    items = catalog.load_items(loaded_con)
    basis = build_basis(items["item_id"].to_numpy(), items["text"].tolist(), get_encoder(settings.basis))
    store = FeatureStore(loaded_con)
    multi = settings.with_overrides(lte={"variant": "multi_interest", "interests": 3}, train={"train_days": None})
    for lte_settings in (multi.lte, settings.lte):
        backfill(loaded_con, basis, snapshot_cadence_times(loaded_con, lte_settings), lte_settings, store=store)
    return loaded_con, store, basis, multi


def test_build_dataset_returns_k_centroids_and_masks(multi_pipeline):
    from training.data import build_dataset

    con, store, basis, multi = multi_pipeline
    ds = build_dataset(con, store, basis, multi)
    assert ds.lte_tokens == 3 and ds.variant == "multi_interest"
    for name in ("train", "val", "test"):
        part = getattr(ds, name)
        n = len(part)
        assert part.lte.shape == (n, 3, basis.dim) and part.lte_mask.shape == (n, 3)
        lte, mask = part.lte.numpy(), part.lte_mask.numpy()
        assert ((np.abs(lte).sum(axis=2) > 0) == mask).all()  # True exactly on non-empty interests
        assert (mask[:, 0] >= mask[:, 1]).all() and (mask[:, 1] >= mask[:, 2]).all()  # largest first
        read = store.as_of(part.user_ids.numpy(), part.input_start_us, "multi_interest", basis)
        np.testing.assert_array_equal(lte[read.n_events > 0], read.vectors.reshape(n, 3, -1)[read.n_events > 0])
        assert (~mask[read.n_events == 0]).all() and not lte[read.n_events == 0].any()
        assert ds.stats()[name]["no_lte_fraction"] == pytest.approx(float((~mask.any(axis=1)).mean()))
    train_mask = ds.train.lte_mask.numpy()
    assert (~train_mask.any(axis=1)).any() and train_mask.any(axis=1).any()  # early chunks: no LTE at all
    assert train_mask[:, 1].any()  # several interests occur

    single = build_dataset(con, store, basis, multi.with_overrides(lte={"variant": "uniform"}))
    assert single.lte_tokens == 1
    assert single.train.lte.shape == (len(single.train), basis.dim) and single.train.lte_mask.ndim == 1
    assert (single.train.lte_mask.numpy() == train_mask.any(axis=1)).all()  # same windows, same emptiness


def test_build_dataset_without_snapshots_gives_all_false_masks(loaded_con, settings):
    from lte import catalog
    from lte.encoders import get_encoder
    from training.data import build_dataset

    items = catalog.load_items(loaded_con)
    basis = build_basis(items["item_id"].to_numpy(), items["text"].tolist(), get_encoder(settings.basis))
    multi = settings.with_overrides(lte={"variant": "multi_interest", "interests": 4})
    ds = build_dataset(loaded_con, FeatureStore(loaded_con), basis, multi)
    assert ds.lte_tokens == 4 and ds.train.lte.shape[1:] == (4, basis.dim)
    assert not ds.train.lte_mask.any() and not ds.train.lte.any()
    assert ds.stats()["train"]["no_lte_fraction"] == 1.0
