"""Shard-parallel LTE generation in Dagster: shard partitions + one writer equal the unsharded LTEs
exactly; the one-run job fans shards out under the multiprocess executor on a real instance."""

import os
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pytest

from assets.lte_shards import (
    AS_OF_TAG,
    LIVE_CHECK,
    lte_live_sharded,
    lte_live_sharded_sane,
    lte_shard,
    read_shard,
    shard_bytes,
)
from lte.embeddings import LteBatch, compute_lte
from lte.lte_checks import lte_sanity, n_events_histogram_markdown
from orchestration.partitions import (
    SHARD_COUNT,
    as_of_key,
    parse_shard_key,
    refresh_as_of,
    refresh_cadence,
    shard_count,
    shard_key,
    shard_partitions,
)
from orchestration.resources import lte_resources

# --------------------------------------------------------------------------- plain parts


def test_shard_keys_round_trip_and_cover_every_shard(monkeypatch):
    keys = shard_partitions.get_partition_keys()
    assert [parse_shard_key(k) for k in keys] == [(i, SHARD_COUNT) for i in range(SHARD_COUNT)]
    monkeypatch.delenv("LTE_LTE__SHARDS", raising=False)
    assert shard_count() == 4  # the default layout
    monkeypatch.setenv("LTE_LTE__SHARDS", "3")
    assert shard_count() == 3
    monkeypatch.setenv("LTE_LTE__SHARDS", "0")
    with pytest.raises(ValueError, match="shards"):
        shard_count()
    assert shard_key(3, 12) == "03-of-12"
    for bad in ("4-of-4", "a-of-4", "03", "1-of-x"):
        with pytest.raises(ValueError):
            parse_shard_key(bad)


def test_refresh_as_of_follows_the_event_log_capped_by_the_partition():
    live = datetime(2024, 6, 2, tzinfo=UTC)
    assert refresh_as_of(None, live) == live
    assert refresh_as_of(datetime(2025, 1, 2, tzinfo=UTC), live) == live  # replayed old log
    assert refresh_as_of(datetime(2024, 5, 1, tzinfo=UTC), live) == datetime(2024, 5, 1, tzinfo=UTC)
    assert refresh_cadence(7) == "weekly" and refresh_cadence(14) == "weekly"
    assert refresh_cadence(1) == "daily" and refresh_cadence(30) == "daily"


def _batch(vectors, n_events, basis_hash="b1"):
    t = datetime(2024, 1, 1, tzinfo=UTC)
    return LteBatch(np.arange(len(n_events), dtype=np.int64), np.asarray(vectors, np.float32),
                    np.asarray(n_events, np.int32), t, t - timedelta(days=10), t - timedelta(days=1), basis_hash,
                    "uniform", n_unknown_items=3)


def test_shard_file_round_trips_bit_for_bit():
    batch = _batch(np.random.default_rng(0).normal(size=(5, 3)) / 10, [1, 0, 2, 3, 4])
    back, index, count = read_shard(shard_bytes(batch, 2, 4))
    assert (index, count) == (2, 4)
    assert back.vectors.tobytes() == batch.vectors.tobytes()
    assert np.array_equal(back.user_ids, batch.user_ids) and np.array_equal(back.n_events, batch.n_events)
    assert (back.as_of, back.window_start, back.window_end) == (batch.as_of, batch.window_start, batch.window_end)
    assert (back.basis_hash, back.variant, back.n_unknown_items) == ("b1", "uniform", 3)


def test_sanity_rules():
    good = _batch([[0.6, 0.0, 0.0], [0.0, 0.0, 0.0]], [2, 0])
    assert lte_sanity(good, "b1", max_empty_share=0.5).passed
    assert not lte_sanity(good, "b1", max_empty_share=0.4).passed  # 1 of 2 users empty
    assert not lte_sanity(good, "other", max_empty_share=0.5).basis_matches_current
    assert not lte_sanity(good, None, max_empty_share=0.5).passed
    nan = _batch([[np.nan, 0, 0], [0.1, 0, 0]], [1, 1])
    assert not lte_sanity(nan, "b1", 0.5).finite
    too_long = _batch([[2.0, 0, 0]], [1])
    assert not lte_sanity(too_long, "b1", 0.5).norms_in_unit_ball
    zero_but_counted = _batch([[0.0, 0, 0]], [3])
    assert not lte_sanity(zero_but_counted, "b1", 0.5).norms_in_unit_ball


def test_histogram_counts_every_user_once():
    table = n_events_histogram_markdown(np.array([0, 0, 1, 3, 7, 150]))
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    counts = {label.strip(): int(n) for label, n in rows}
    assert counts["0"] == 2 and counts["1"] == 1 and counts["2-4"] == 1 and counts["5-9"] == 1
    assert counts["100+"] == 1 and sum(counts.values()) == 6


# --------------------------------------------------------------------------- Dagster, tiny data


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A home with tiny synthetic events and a frozen hashing basis; no LTE yet."""
    from lte import basis as content
    from lte import catalog, events
    from lte.datasets.synthetic import generate
    from lte.db import connect
    from lte.encoders import get_encoder
    from lte.storage import open_store

    path = tmp_path_factory.mktemp("shards") / "home"
    saved = os.environ.get("LTE_HOME")
    os.environ["LTE_HOME"] = str(path)
    resources = lte_resources(home=str(path), encoder="hashing", synthetic_size="tiny")
    settings = resources["lte_settings"].settings()
    data = generate("tiny", seed=0)
    con = connect(settings.duckdb_path)
    events.ingest_frame(con, data.events, source="synthetic:tiny")
    catalog.upsert_items(con, data.items)
    items = catalog.load_items(con)
    con.close()
    content.sync_basis(items, get_encoder(settings.basis), open_store(None, settings.artifacts_dir))
    yield path, resources
    if saved is None:
        os.environ.pop("LTE_HOME", None)
    else:
        os.environ["LTE_HOME"] = saved


def _unsharded_and_live(resources, as_of):
    from lte import basis as content
    from lte.feature_store import FeatureStore

    basis = content.current_basis(resources["artifact_store"].store())
    with resources["duckdb"].connect() as con:  # FeatureStore creates its tables on first use
        expected = compute_lte(con, basis, as_of, resources["lte_settings"].settings().lte)
        live = FeatureStore(con).live()
    return expected, live


def _assert_identical(a: LteBatch, b: LteBatch):
    assert np.array_equal(a.user_ids, b.user_ids)
    assert np.array_equal(a.n_events, b.n_events)
    assert a.vectors.dtype == b.vectors.dtype == np.float32
    assert a.vectors.tobytes() == b.vectors.tobytes()  # bit for bit, not approximately
    assert (a.as_of, a.basis_hash, a.variant) == (b.as_of, b.basis_hash, b.variant)


def _materialize_shards(resources, instance, tags=None) -> list[int]:
    """Every shard partition, one run each; returns each shard's user count."""
    users = []
    for key in shard_partitions.get_partition_keys():
        result = dg.materialize([lte_shard], partition_key=key, resources=resources, instance=instance,
                                tags=tags)
        assert result.success
        (event,) = result.get_asset_materialization_events()
        users.append(event.materialization.metadata["users"].value)
    return users


def test_shard_partitions_then_one_writer_equal_the_unsharded_lte(home):
    path, resources = home
    instance = dg.DagsterInstance.ephemeral()
    shard_users = _materialize_shards(resources, instance)
    assert all(n > 0 for n in shard_users), f"a tiny shard is empty: {shard_users}"

    result = dg.materialize([lte_live_sharded, lte_live_sharded_sane], resources=resources, instance=instance)
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["published_live"].value is True
    assert metadata["users"].value == sum(shard_users)
    assert "| events in window | users | share |" in metadata["n_events_histogram"].value
    (check,) = result.get_asset_check_evaluations()
    expected, live = _unsharded_and_live(resources, datetime.fromisoformat(metadata["as_of"].value))
    max_empty_share = resources["lte_settings"].settings().lte.max_empty_share
    assert check.passed == lte_sanity(live, expected.basis_hash, max_empty_share).passed
    assert check.metadata["basis_matches_current"].value is True
    _assert_identical(live, expected)
    files = sorted((path / "artifacts" / "lte_shards").rglob("*.npz"))
    assert [f.name for f in files] == [f"{k}.npz" for k in shard_partitions.get_partition_keys()]


def test_publish_refuses_incomplete_shards_and_never_moves_live_back(home):
    path, resources = home
    instance = dg.DagsterInstance.ephemeral()
    _materialize_shards(resources, instance)  # live at the event log's as_of, later than `earlier`
    assert dg.materialize([lte_live_sharded], resources=resources, instance=instance).success
    _, live_before = _unsharded_and_live(resources, datetime.now(UTC))
    earlier = (live_before.as_of - timedelta(days=60)).isoformat()  # inside the log, before live
    tags = {AS_OF_TAG: earlier}
    first = shard_partitions.get_partition_keys()[0]
    dg.materialize([lte_shard], partition_key=first, resources=resources, instance=instance, tags=tags)
    failed = dg.materialize([lte_live_sharded], resources=resources, instance=instance, tags=tags,
                            raise_on_error=False)
    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.error)
    assert str(shard_partitions.get_partition_keys()[1:]) in message and "missing" in message

    for key in shard_partitions.get_partition_keys()[1:]:
        dg.materialize([lte_shard], partition_key=key, resources=resources, instance=instance, tags=tags)
    result = dg.materialize([lte_live_sharded], resources=resources, instance=instance, tags=tags)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["published_live"].value is False
    expected, live_after = _unsharded_and_live(resources, datetime.fromisoformat(earlier))
    assert live_after.as_of == live_before.as_of  # live did not move back in time
    from lte.feature_store import FeatureStore

    with resources["duckdb"].connect() as con:
        stored = FeatureStore(con).snapshot(datetime.fromisoformat(earlier), basis=expected.basis_hash)
    assert len(expected) > 0
    _assert_identical(stored, expected)  # ... but the older snapshot joined the history
    assert metadata["older_shard_files_deleted"].value == 0  # nothing older than `earlier`

    # Publishing the later as_of again prunes the scratch files of the earlier one, keeps its own.
    shard_dir = path / "artifacts" / "lte_shards" / live_before.basis_hash / live_before.variant
    assert len(list(shard_dir.iterdir())) == 2
    again = dg.materialize([lte_live_sharded], resources=resources, instance=instance)
    again_metadata = again.get_asset_materialization_events()[0].materialization.metadata
    assert again_metadata["older_shard_files_deleted"].value == len(shard_partitions.get_partition_keys())
    (kept,) = list(shard_dir.iterdir())
    assert kept.name == as_of_key(live_before.as_of)
    assert len(list(kept.glob("*.npz"))) == len(shard_partitions.get_partition_keys())


@pytest.mark.slow
def test_refresh_job_runs_shards_in_parallel_processes_on_a_real_instance(home, tmp_path):
    """`refresh_lte_sharded` under the multiprocess executor against a sqlite-backed instance."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from orchestration.instance import ensure_dagster_home

    path, resources = home
    with resources["duckdb"].connect(read_only=True) as con:
        (last_event,) = con.execute("SELECT max(ts) FROM events").fetchone()
    # The cadence partition of the log's last day: its end is the log's live as_of (next midnight).
    partition = last_event.astimezone(UTC).strftime("%Y-%m-%d")
    live_as_of = datetime.fromisoformat(partition).replace(tzinfo=UTC) + timedelta(days=1)
    settings = resources["lte_settings"].settings().model_copy(update={"home": tmp_path / "dagster-owner"})
    saved = os.environ.get("DAGSTER_HOME")
    ensure_dagster_home(settings)
    try:
        recon = ReconstructableRepository.for_module(
            "orchestration.definitions", "defs", working_directory=os.getcwd()
        ).get_reconstructable_job("refresh_lte_sharded")
        run_config = {"resources": {"lte_settings": {"config": {"home": str(path), "encoder": "hashing"}}},
                      "execution": {"config": {"max_concurrent": 2}}}
        with dg.DagsterInstance.get() as instance:
            result = dg.execute_job(recon, instance=instance, run_config=run_config,
                                    tags={"dagster/partition": partition})
            assert result.success
            records = instance.all_logs(result.run_id)
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved

    steps = {r.dagster_event.step_key for r in records if r.dagster_event and r.dagster_event.is_step_success}
    assert {f"lte_shard_{k.replace('-', '_')}" for k in shard_partitions.get_partition_keys()} <= steps
    pids = {r.dagster_event.pid for r in records
            if r.dagster_event and r.dagster_event.is_step_start and r.dagster_event.pid}
    assert len(pids) >= SHARD_COUNT, "each step runs in its own process under the multiprocess executor"
    materialized = [r.dagster_event.event_specific_data.materialization for r in records
                    if r.dagster_event and r.dagster_event.is_step_materialization]
    shard_partitions_seen = {m.partition for m in materialized if m.asset_key == lte_shard.key}
    assert shard_partitions_seen == set(shard_partitions.get_partition_keys())
    (live_event,) = [m for m in materialized if m.asset_key == lte_live_sharded.key]
    checks = [r.dagster_event.event_specific_data for r in records
              if r.dagster_event and r.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert [c.check_name for c in checks] == [LIVE_CHECK]

    as_of = datetime.fromisoformat(live_event.metadata["as_of"].value)
    assert as_of == live_as_of
    expected, live = _unsharded_and_live(resources, as_of)
    _assert_identical(live, expected)
    assert live_event.metadata["published_live"].value is True
