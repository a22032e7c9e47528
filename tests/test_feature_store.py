"""Feature store: append-only snapshots, atomic live swap (real kill -9), point-in-time reads, basis rules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from lte.basis import BasisMismatchError, HashingEncoder, build_basis, publish_basis
from lte.config import LteSettings
from lte.embeddings import LteBatch, compute_lte
from lte.feature_store import FeatureStore, backfill, snapshot_times
from lte.storage import LocalStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def make_batch(as_of: datetime, users, dim: int = 4, seed: int = 0, basis_hash: str = "b" * 64,
               variant: str = "uniform") -> LteBatch:
    rng = np.random.default_rng(seed)
    users = np.asarray(users, dtype=np.int64)
    return LteBatch(
        user_ids=users,
        vectors=rng.standard_normal((users.size, dim)).astype(np.float32),
        n_events=rng.integers(0, 5, users.size).astype(np.int32),
        as_of=as_of, window_start=as_of - 40 * DAY, window_end=as_of - 10 * DAY,
        basis_hash=basis_hash, variant=variant,
    )


@pytest.fixture
def store():
    fs = FeatureStore(duckdb.connect())
    fs.ensure_schema()
    return fs


def test_snapshots_are_append_only_first_write_wins_and_replace_is_explicit(store):
    first = make_batch(T0, [1, 2, 3], seed=1)
    assert store.write_snapshot(first) == 3
    assert store.write_snapshot(make_batch(T0, [1, 2, 3], seed=2)) == 0  # same key: no-op
    assert store.write_snapshot(make_batch(T0, [3, 4], seed=3)) == 1  # only the new user 4
    stored = store.snapshot(T0)
    assert stored.user_ids.tolist() == [1, 2, 3, 4]
    assert np.array_equal(stored.vectors[:3], first.vectors)
    assert stored.window_start == T0 - 40 * DAY and stored.basis_hash == "b" * 64

    fixed = make_batch(T0, [2], seed=9)
    assert store.write_snapshot(fixed, replace=True) == 1
    assert np.array_equal(store.snapshot(T0).vectors[1], fixed.vectors[0])
    assert store.snapshot_times_available() == [T0]


def test_publish_live_swaps_the_whole_set_and_live_equals_history(store):
    old, new = make_batch(T0, [1, 2, 3], seed=1), make_batch(T0 + 7 * DAY, [2, 3, 4, 5], seed=2)
    assert store.publish_live(old) == 3
    assert store.publish_live(new) == 4
    live = store.live()
    assert live.user_ids.tolist() == [2, 3, 4, 5] and live.as_of == T0 + 7 * DAY
    assert np.array_equal(live.vectors, new.vectors) and np.array_equal(live.n_events, new.n_events)
    picked = store.live(users=[5, 1, 2])  # user 1 left live: zero row, n_events 0
    assert picked.user_ids.tolist() == [5, 1, 2] and picked.n_events[1] == 0
    assert np.array_equal(picked.vectors[0], new.vectors[3]) and not picked.vectors[1].any()
    assert store.snapshot_times_available() == [T0, T0 + 7 * DAY]  # publishing also records history
    assert store.publish_snapshot(T0, "b" * 64, "uniform") == 3  # roll live back to a stored snapshot
    assert store.live().as_of == T0


def test_as_of_returns_the_latest_snapshot_at_or_before_each_time_never_a_future_one(store):
    times = [T0, T0 + 7 * DAY, T0 + 14 * DAY]
    batches = [make_batch(t, [1, 2], seed=i) for i, t in enumerate(times)]
    for batch in batches:
        store.write_snapshot(batch)
    store.write_snapshot(make_batch(T0 + 3 * DAY, [1, 2], seed=7, variant="recency"))  # other variant
    rng = np.random.default_rng(0)
    query_times = [T0 - DAY, T0, T0 + 7 * DAY - timedelta(microseconds=1), T0 + 10 * DAY, T0 + 99 * DAY]
    query_times += [T0 + timedelta(hours=int(h)) for h in rng.integers(-48, 24 * 20, 30)]
    users = rng.integers(1, 4, len(query_times))  # user 3 has no snapshot at all
    result = store.as_of(users, query_times, "uniform", "b" * 64)
    for i, (user, moment) in enumerate(zip(users, query_times, strict=True)):
        eligible = [k for k, t in enumerate(times) if t <= moment]
        if user == 3 or not eligible:
            assert result.snapshot_as_of[i] is None and result.n_events[i] == 0
            assert not result.vectors[i].any()
            continue
        k = eligible[-1]
        assert result.snapshot_as_of[i] == times[k] <= moment
        assert np.array_equal(result.vectors[i], batches[k].vectors[user - 1])
    assert result.snapshot_as_of[1] == T0  # a snapshot exactly at the example time is usable
    assert result.snapshot_as_of[2] == T0  # one microsecond before the next one: the older one


def _two_families(tmp_path: Path):
    """Basis B, its extension C (same encoder, new item), and D from another encoder."""
    artifacts = LocalStore(tmp_path / "artifacts")
    texts = ["red leather boots", "blue denim jacket", "green wool scarf"]
    b = publish_basis(artifacts, build_basis([1, 2, 3], texts, HashingEncoder(dim=16)))
    c = publish_basis(artifacts, build_basis([4], ["black silk dress"], HashingEncoder(dim=16), parent=b))
    d = publish_basis(artifacts, build_basis([1, 2, 3], texts, HashingEncoder(dim=16, ngram_range=(2, 3))))
    return artifacts, b, c, d


def test_rollback_model_on_frozen_basis_reads_todays_lte_and_incompatible_reads_are_refused(tmp_path):
    artifacts, b, c, d = _two_families(tmp_path)
    con = duckdb.connect()
    con.execute("CREATE TABLE events (event_id VARCHAR, user_id BIGINT, item_id BIGINT, ts TIMESTAMPTZ, event_type VARCHAR)")
    con.execute("""INSERT INTO events VALUES ('a', 1, 1, ?, 'view'), ('b', 1, 4, ?, 'view'), ('c', 2, 2, ?, 'view')""",
                [T0 - 30 * DAY, T0 + 5 * DAY, T0 - 20 * DAY])
    config = LteSettings(lag_days=1, window_days=60)
    store = FeatureStore(con, artifact_store=artifacts)
    # Model v1 trained on snapshots of B; later the catalog grew (basis C) and C snapshots went live.
    store.write_snapshot(compute_lte(con, b, T0, config))
    today = T0 + 30 * DAY
    store.publish_live(compute_lte(con, c, today, config))
    assert store.live().basis_hash == c.hash

    # Rollback to model v1 (basis B): today's live LTEs are readable, and the as_of path serves the
    # C snapshot because C only appended rows to B.
    live = store.live(users=[1, 2], basis=b)
    assert live.n_events.tolist() == [2, 1]
    point = store.as_of([1, 1], [T0 + DAY, today], "uniform", b)
    assert point.basis_hashes == [b.hash, c.hash] and point.snapshot_as_of == [T0, today]
    np.testing.assert_allclose(point.vectors[1], (b.vectors[0] + c.vectors[3]) / 2, rtol=1e-6)

    # A model on another encoder family (D) is refused, naming both hashes.
    with pytest.raises(BasisMismatchError, match=d.hash):
        store.as_of([1], [today], "uniform", d)
    with pytest.raises(BasisMismatchError, match=c.hash):
        store.live(basis=d)
    # Without the artifact store an extension cannot be verified, so only the exact basis is served.
    plain = FeatureStore(con)
    assert plain.as_of([1], [today], "uniform", b.hash).snapshot_as_of == [T0]
    with pytest.raises(BasisMismatchError):
        plain.live(basis=b.hash)


def test_snapshot_times_grid_and_resumable_backfill(loaded_con, tiny_data):
    grid = snapshot_times(datetime(2024, 3, 5, 13, tzinfo=UTC), datetime(2024, 3, 20, tzinfo=UTC), 7)
    assert all(t.hour == 0 and (t - datetime(1970, 1, 1, tzinfo=UTC)).days % 7 == 0 for t in grid)
    assert len(grid) == 2 and grid[0] >= datetime(2024, 3, 5, 13, tzinfo=UTC)
    assert snapshot_times(T0, T0, 1) == [T0]

    basis = build_basis(tiny_data.items.item_id.to_numpy(), tiny_data.items.text.tolist(), HashingEncoder(dim=16))
    times = snapshot_times(datetime(2024, 6, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC), 30)
    config = LteSettings(lag_days=7, window_days=90)
    added = backfill(loaded_con, basis, times[:5], config)
    assert added > 0 and backfill(loaded_con, basis, times[:5], config) == 0
    more = backfill(loaded_con, basis, times, config)
    store = FeatureStore(loaded_con)
    assert store.snapshot_times_available("uniform", basis) == times
    total = loaded_con.execute("SELECT count(*) FROM lte_snapshots").fetchall()[0][0]
    assert total == added + more
    expected = compute_lte(loaded_con, basis, times[-1], config)
    assert np.array_equal(store.snapshot(times[-1], basis=basis).vectors, expected.vectors)


CHILD = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime
    import numpy as np
    from lte.db import connect
    from lte.embeddings import LteBatch
    from lte.feature_store import FeatureStore

    path, ready, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    def batch(k):
        rng = np.random.default_rng(k)
        return LteBatch(np.arange(n, dtype=np.int64) + 1000 * k, rng.standard_normal((n, 32)).astype(np.float32),
                        np.full(n, k + 1, np.int32), datetime(2025, 1, 1 + k, tzinfo=UTC), None, None, "h" * 64, "uniform")
    store = FeatureStore(connect(path))
    batches = [batch(0), batch(1)]
    store.publish_live(batches[0])
    open(ready, "w").close()
    i = 1
    while True:  # publish forever until killed; most wall time is inside a publish transaction
        store.publish_live(batches[i % 2])
        i += 1
""")


def test_publish_live_is_all_old_or_all_new_under_kill_9(tmp_path):
    db, ready, n = tmp_path / "lte.duckdb", tmp_path / "ready", 20_000
    script = tmp_path / "publisher.py"
    script.write_text(CHILD)
    rng = np.random.default_rng(0)
    expected = {}
    for k in (0, 1):
        r = np.random.default_rng(k)
        expected[datetime(2025, 1, 1 + k, tzinfo=UTC)] = (np.arange(n) + 1000 * k, r.standard_normal((n, 32)).astype(np.float32))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for round_no in range(4):
        ready.unlink(missing_ok=True)
        child = subprocess.Popen([sys.executable, str(script), str(db), str(ready), str(n)], env=env)
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                assert child.poll() is None, f"publisher exited early with {child.returncode}"
                assert time.monotonic() < deadline, "publisher never became ready"
                time.sleep(0.02)
            time.sleep(float(rng.uniform(0.1, 0.8)))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        assert child.returncode == -signal.SIGKILL
        con = duckdb.connect(str(db))
        try:
            store = FeatureStore(con)
            live = store.live()
            users, vectors = expected[live.as_of]  # a KeyError here would mean a mixed/unknown as_of
            assert len(live) == n, f"round {round_no}: {len(live)} live rows, expected {n}"
            assert np.array_equal(live.user_ids, users) and np.array_equal(live.vectors, vectors)
            counts = con.execute("SELECT count(*) FROM lte_snapshots GROUP BY as_of").fetchall()
            assert all(c == n for (c,) in counts)
        finally:
            con.close()
