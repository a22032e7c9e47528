"""Scale-out LTE generation: user-hash shards computed in parallel, published by one writer.

DuckDB allows many read-only processes OR one writer, so the work splits in two kinds of step:
- shard steps (any number at once) open the store read-only, compute their shard's LTEs with
  `compute_lte(..., shard=(i, n))` and write them to an artifact file `lte_shards/<basis>/<variant>/
  <as_of>/<i>-of-<n>.npz` (atomic: write-then-rename locally, one PUT on S3);
- one publish step (the only writer) loads every shard file of the same (as_of, basis_hash,
  variant, n), refuses a set that misses a shard or mixes snapshots, concatenates them
  (`concat_batches`: the union equals the unsharded result bit for bit), appends the snapshot and
  swaps `lte_live` to it in one transaction. A snapshot older than the live one is only appended:
  live never moves back in time.

Two ways to run the same functions:
- assets: `lte_shard` (static partitions, one per shard: a backfill runs one run per shard, in
  parallel where the run launcher allows it, e.g. k8s) and `lte_live_sharded` (all shards -> live);
- the `refresh_lte_sharded` job: one run, the shard steps fanned out in parallel by the run's
  executor (multiprocess; one pod per step with LTE_EXECUTOR=k8s, orchestration/executors.py),
  partitioned by the refresh cadence (orchestration/partitions.py). Its steps
  record their results as materializations of the same two assets and the same check.

The as_of is the event log's clock (docs/decisions.md 2), capped by the cadence partition's end;
the run tag `lte/as_of` (ISO time, tz-aware) pins it instead.
"""

import io
from datetime import datetime

import dagster as dg
import numpy as np
import pandas as pd

from lte import basis as content
from lte.embeddings import LteBatch, compute_lte, concat_batches, from_epoch_us, to_epoch_us
from lte.feature_store import FeatureStore
from lte.lte_checks import LteSanity, lte_sanity, lte_set_figures
from lte.storage import ArtifactStore
from orchestration.executors import executor_from_env
from orchestration.partitions import (
    SHARD_COUNT,
    as_of_key,
    parse_shard_key,
    refresh_as_of,
    refresh_partitions,
    shard_key,
    shard_partitions,
)
from orchestration.resources import ArtifactStoreResource, DuckDBStoreResource
from orchestration.retries import SERVICE_RETRY, retry_transient_only

from .basis import content_basis
from .ingestion import events
from .lte import _live_as_of, lte_autoencoder, variant_settings

GROUP = "lte_sharded"
AS_OF_TAG = "lte/as_of"
SHARD_PREFIX = "lte_shards"
NO_TIME_US = np.iinfo(np.int64).min  # window bounds absent (history_fraction windows)


# --------------------------------------------------------------------------- plain steps


def plan_refresh(duckdb: DuckDBStoreResource, artifact_store: ArtifactStoreResource,
                 window_end: datetime | None = None, as_of: str | None = None) -> dict:
    """What every shard of one refresh must agree on: as_of, basis hash, variant, shard count.

    as_of: the `as_of` argument (ISO, tz-aware) if given, else the event log's live as_of capped by
    `window_end`. Opens the store read-only. A plain dict so it crosses process boundaries as is."""
    settings = artifact_store.settings()
    basis_hash = content.current_hash(artifact_store.store())
    if basis_hash is None:
        raise LookupError("no content basis yet: materialize `content_basis` before generating LTEs")
    if as_of:
        moment = pd.Timestamp(as_of)
        if moment.tzinfo is None:
            raise ValueError(f"run tag {AS_OF_TAG} must be timezone-aware, e.g. 2025-03-01T00:00:00+00:00; got {as_of!r}")
        moment = moment.tz_convert("UTC").to_pydatetime()
    else:
        with duckdb.connect(read_only=True) as con:
            (last,) = con.execute("SELECT max(ts) FROM events").fetchall()[0]
        if last is None:
            raise LookupError("the events table is empty: ingest events (materialize `events`) first")
        moment = refresh_as_of(window_end, _live_as_of(last).to_pydatetime())
    return {"as_of": moment.isoformat(), "basis_hash": basis_hash, "variant": settings.lte.variant,
            "count": SHARD_COUNT}


def shard_file_key(plan: dict, index: int) -> str:
    as_of = datetime.fromisoformat(plan["as_of"])
    return f"{SHARD_PREFIX}/{plan['basis_hash']}/{plan['variant']}/{as_of_key(as_of)}/{shard_key(index, plan['count'])}.npz"


def _time_us(moment: datetime | None) -> int:
    return NO_TIME_US if moment is None else to_epoch_us(moment)


def _time(value: int) -> datetime | None:
    return None if value == NO_TIME_US else from_epoch_us(value)


def shard_bytes(batch: LteBatch, index: int, count: int) -> bytes:
    """One shard's LteBatch as .npz bytes (no pickles: plain arrays and strings)."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        user_ids=batch.user_ids.astype(np.int64), vectors=batch.vectors.astype(np.float32),
        n_events=batch.n_events.astype(np.int32),
        times_us=np.array([_time_us(batch.as_of), _time_us(batch.window_start), _time_us(batch.window_end)], np.int64),
        basis_hash=np.array(batch.basis_hash), variant=np.array(batch.variant),
        shard=np.array([index, count, batch.n_unknown_items], np.int64),
        tokens=np.array(batch.tokens, np.int64),  # vectors per user (multi_interest: k)
    )
    return buffer.getvalue()


def read_shard(data: bytes) -> tuple[LteBatch, int, int]:
    """(batch, shard index, shard count) from `shard_bytes` output."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        as_of_us, start_us, end_us = (int(v) for v in npz["times_us"])
        index, count, unknown = (int(v) for v in npz["shard"])
        batch = LteBatch(
            user_ids=npz["user_ids"], vectors=npz["vectors"], n_events=npz["n_events"],
            as_of=_time(as_of_us), window_start=_time(start_us), window_end=_time(end_us),
            basis_hash=str(npz["basis_hash"]), variant=str(npz["variant"]), n_unknown_items=unknown,
            tokens=int(npz["tokens"]) if "tokens" in npz.files else 1,  # shards written before k existed
        )
    return batch, index, count


def compute_shard(duckdb: DuckDBStoreResource, artifact_store: ArtifactStoreResource, plan: dict,
                  index: int) -> tuple[str, LteBatch]:
    """Compute shard `index` of the plan read-only and store it; returns (artifact key, batch).
    Recomputing a shard rewrites the same key with the same bytes' content (deterministic)."""
    store = artifact_store.store()
    basis = content.load_basis(store, plan["basis_hash"])  # the plan's basis, even if CURRENT moved since
    lte = variant_settings(artifact_store.settings(), basis.hash)
    if lte.variant != plan["variant"]:
        raise ValueError(f"lte.variant is {lte.variant!r} but this refresh was planned for "
                         f"{plan['variant']!r}: settings changed mid-run; launch the refresh again")
    with duckdb.connect(read_only=True) as con:
        batch = compute_lte(con, basis, datetime.fromisoformat(plan["as_of"]), lte,
                            shard=(index, plan["count"]))
    key = shard_file_key(plan, index)
    store.put_bytes(shard_bytes(batch, index, plan["count"]), key)
    return key, batch


def load_shards(store: ArtifactStore, plan: dict) -> LteBatch:
    """Every shard of the plan, concatenated (rows sorted by user id). Raises when a shard file is
    missing or holds another snapshot, naming the shard partitions to (re)materialize."""
    keys = [shard_file_key(plan, i) for i in range(plan["count"])]
    missing = [shard_key(i, plan["count"]) for i, key in enumerate(keys) if not store.exists(key)]
    if missing:
        raise LookupError(
            f"LTE shards {missing} of as_of {plan['as_of']} (basis {plan['basis_hash'][:12]}, variant "
            f"{plan['variant']!r}) are missing: materialize those `lte_shard` partitions (or run the "
            "`refresh_lte_sharded` job) first"
        )
    expected = (to_epoch_us(datetime.fromisoformat(plan["as_of"])), plan["basis_hash"], plan["variant"])
    batches = []
    for want, key in enumerate(keys):
        batch, index, count = read_shard(store.get_bytes(key))
        found = (to_epoch_us(batch.as_of), batch.basis_hash, batch.variant)
        if found != expected or (index, count) != (want, plan["count"]):
            raise ValueError(f"{store.uri(key)} holds shard {index}/{count} of {found}, expected shard "
                             f"{want}/{plan['count']} of {expected}; rematerialize that shard")
        batches.append(batch)
    return concat_batches(batches)


def publish_shards(duckdb: DuckDBStoreResource, artifact_store: ArtifactStoreResource,
                   plan: dict) -> tuple[LteBatch, bool, int]:
    """Append the plan's snapshot from its shard files and make it live (one transaction), unless
    live already holds a later as_of; then prune older shard files. Returns (batch, published_live,
    shard files deleted). The only writing step."""
    files = artifact_store.store()
    batch = load_shards(files, plan)
    with duckdb.connect() as con:
        store = FeatureStore(con)
        store.ensure_schema()
        (live_as_of,) = con.execute("SELECT max(as_of) FROM lte_live").fetchall()[0]
        published = live_as_of is None or pd.Timestamp(live_as_of) <= pd.Timestamp(batch.as_of)
        if published:
            store.publish_live(batch)
        else:
            store.write_snapshot(batch)
    return batch, published, prune_shard_files(files, plan)


def prune_shard_files(store: ArtifactStore, plan: dict) -> int:
    """Delete the shard files of as_of values older than the plan's (same basis and variant), once
    the plan is published: their snapshots are in the feature store, the files are scratch. The
    plan's own files stay, so a retried publish still finds them. Returns the number deleted."""
    prefix = f"{SHARD_PREFIX}/{plan['basis_hash']}/{plan['variant']}/"
    current = as_of_key(datetime.fromisoformat(plan["as_of"]))
    stale = [key for key in store.list(prefix) if key[len(prefix):].split("/", 1)[0] < current]
    for key in stale:  # as_of keys (20250301T000000Z) sort in time order
        store.delete(key)
    return len(stale)


def live_sanity(duckdb: DuckDBStoreResource, artifact_store: ArtifactStoreResource) -> LteSanity:
    """The shared LTE sanity rules (lte/lte_checks.py) applied to the live table."""
    current = content.current_hash(artifact_store.store())
    with duckdb.connect() as con:  # FeatureStore creates its tables if absent: not read-only
        batch = FeatureStore(con).live()
    return lte_sanity(batch, current, artifact_store.settings().lte.max_empty_share)


def _shard_metadata(key: str, batch: LteBatch, store: ArtifactStore, plan: dict) -> dict:
    figures = lte_set_figures(batch)
    return {
        "as_of": plan["as_of"], "basis_hash": plan["basis_hash"], "variant": plan["variant"],
        "users": figures["users"], "empty_share": figures["empty_share"], "mean_norm": figures["mean_norm"],
        "file": dg.MetadataValue.path(store.uri(key)),
    }


def _live_metadata(batch: LteBatch, published: bool, plan: dict, pruned: int) -> dict:
    figures = lte_set_figures(batch)
    return {
        "as_of": plan["as_of"], "basis_hash": plan["basis_hash"], "variant": plan["variant"],
        "shards": plan["count"], "published_live": published, "older_shard_files_deleted": pruned,
        "users": figures["users"], "users_without_lte": figures["users_without_lte"],
        "empty_share": figures["empty_share"], "mean_norm": figures["mean_norm"],
        "n_events_histogram": dg.MetadataValue.md(figures["n_events_histogram"]),
    }


# --------------------------------------------------------------------------- assets


@dg.asset(
    group_name=GROUP,
    partitions_def=shard_partitions,
    deps=[events, content_basis, lte_autoencoder],
    kinds={"duckdb", "numpy"},
    owners=["team:lte"],
    retry_policy=SERVICE_RETRY,
    description="One user-hash shard of the live LTEs (users with hash(user_id) % n == i), computed "
    "read-only and stored as an artifact file; `lte_live_sharded` publishes all shards at once.",
)
@retry_transient_only
def lte_shard(
    context: dg.AssetExecutionContext, duckdb: DuckDBStoreResource, artifact_store: ArtifactStoreResource
) -> dg.MaterializeResult:
    index, count = parse_shard_key(context.partition_key)
    plan = plan_refresh(duckdb, artifact_store, as_of=context.run.tags.get(AS_OF_TAG))
    if count != plan["count"]:
        raise ValueError(f"partition {context.partition_key} belongs to a {count}-shard layout but "
                         f"lte.shards is {plan['count']}: materialize the current partitions")
    key, batch = compute_shard(duckdb, artifact_store, plan, index)
    return dg.MaterializeResult(metadata=_shard_metadata(key, batch, artifact_store.store(), plan))


@dg.asset(
    group_name=GROUP,
    deps=[lte_shard],
    kinds={"duckdb"},
    owners=["team:lte"],
    retry_policy=SERVICE_RETRY,
    description="The live LTEs assembled from every `lte_shard` of the same as_of, basis and "
    "variant: appended to the history and swapped into `lte_live` atomically (the same table "
    "`lte_live` writes). Equals the unsharded computation exactly.",
)
@retry_transient_only
def lte_live_sharded(
    context: dg.AssetExecutionContext, duckdb: DuckDBStoreResource, artifact_store: ArtifactStoreResource
) -> dg.MaterializeResult:
    plan = plan_refresh(duckdb, artifact_store, as_of=context.run.tags.get(AS_OF_TAG))
    batch, published, pruned = publish_shards(duckdb, artifact_store, plan)
    if not published:
        context.log.info(f"live holds a later snapshot than {plan['as_of']}: appended to history only")
    return dg.MaterializeResult(metadata=_live_metadata(batch, published, plan, pruned))


LIVE_CHECK = "lte_live_sharded_sane"


@dg.asset_check(asset=lte_live_sharded, name=LIVE_CHECK,
                description="No NaN/inf, norms in range, empty share under lte.max_empty_share, basis is current.")
def lte_live_sharded_sane(duckdb: DuckDBStoreResource, artifact_store: ArtifactStoreResource) -> dg.AssetCheckResult:
    sanity = live_sanity(duckdb, artifact_store)
    return dg.AssetCheckResult(passed=sanity.passed, metadata=sanity.metadata())


# --------------------------------------------------------------------------- one-run parallel job


@dg.op(description="Fix as_of (event-log clock, capped by the cadence partition), basis and variant.")
def plan_lte_refresh(
    context: dg.OpExecutionContext, duckdb: DuckDBStoreResource, artifact_store: ArtifactStoreResource
) -> dict:
    window_end = context.partition_time_window.end if context.has_partition_key else None
    plan = plan_refresh(duckdb, artifact_store, window_end=window_end, as_of=context.run.tags.get(AS_OF_TAG))
    context.log.info(f"refresh plan: {plan}")
    return plan


def _shard_op(index: int, count: int) -> dg.OpDefinition:
    partition = shard_key(index, count)

    @dg.op(name=f"lte_shard_{partition.replace('-', '_')}", description=f"Compute LTE shard {partition} read-only.",
           retry_policy=SERVICE_RETRY)
    @retry_transient_only
    def compute(context: dg.OpExecutionContext, duckdb: DuckDBStoreResource, artifact_store: ArtifactStoreResource,
                plan: dict) -> str:
        key, batch = compute_shard(duckdb, artifact_store, plan, index)
        context.log_event(dg.AssetMaterialization(
            asset_key=lte_shard.key, partition=partition,
            metadata=_shard_metadata(key, batch, artifact_store.store(), plan)))
        return key

    return compute


SHARD_OPS = [_shard_op(i, SHARD_COUNT) for i in range(SHARD_COUNT)]


@dg.op(description="The single writer: check the shard files cover every shard, concatenate, publish.",
       retry_policy=SERVICE_RETRY)
@retry_transient_only
def publish_lte_shards(context: dg.OpExecutionContext, duckdb: DuckDBStoreResource,
                       artifact_store: ArtifactStoreResource, plan: dict, shard_files: list[str]) -> None:
    if len(set(shard_files)) != plan["count"]:
        raise ValueError(f"expected {plan['count']} distinct shard files, got {sorted(shard_files)}")
    batch, published, pruned = publish_shards(duckdb, artifact_store, plan)
    context.log_event(dg.AssetMaterialization(asset_key=lte_live_sharded.key,
                                              metadata=_live_metadata(batch, published, plan, pruned)))
    sanity = live_sanity(duckdb, artifact_store)
    context.log_event(dg.AssetCheckEvaluation(asset_key=lte_live_sharded.key, check_name=LIVE_CHECK,
                                              passed=sanity.passed, metadata=sanity.metadata()))


@dg.job(
    partitions_def=refresh_partitions,
    executor_def=executor_from_env(default=dg.multiprocess_executor),
    description="Refresh the live LTEs in one run: plan -> every user-hash shard in parallel "
    "(read-only) -> one writer publishes. Partitioned by the refresh cadence; as_of follows the event log.",
    tags={"team": "lte"},
)
def refresh_lte_sharded():
    plan = plan_lte_refresh()
    publish_lte_shards(plan, [shard(plan) for shard in SHARD_OPS])
