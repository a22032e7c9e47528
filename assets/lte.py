"""Lagged LTE generation: historical snapshots for training, and the one live row per user.

The pipeline's clock is the event log's: the live as_of is the midnight after the last event, so
a replay of the same log gives the same LTEs (with live data the two clocks coincide).

When the artifact store is on S3, `lte_snapshots` and `lte_live` also upload a Parquet copy of the
rows they materialized (lte/lte_export.py), from which `python -m lte.lte_export restore` rebuilds
the feature store of a lost or new LTE_HOME. `lte_live` (and its check) are declarative: they run
by themselves after a new `content_basis` or `lte_snapshots` once the automation sensor is on.
"""


from datetime import timedelta

import dagster as dg
import numpy as np
import pandas as pd

from lte import basis as content
from lte import embeddings
from lte.events import time_range
from lte.feature_store import FeatureStore, backfill, snapshot_cadence_times
from lte.lte_checks import lte_sanity
from lte.lte_export import export_lte
from lte.storage import atomic_write_bytes
from orchestration.resources import (
    ArtifactStoreResource,
    DuckDBStoreResource,
    LteSettingsResource,
    MlflowResource,
)
from orchestration.retries import SERVICE_RETRY, retry_transient_only

from . import plots
from .basis import content_basis
from .ingestion import events

GROUP = "lte"


def _live_as_of(last_event) -> pd.Timestamp:
    return pd.Timestamp(last_event).floor("D") + timedelta(days=1)


def autoencoder_checkpoint(settings, basis_hash: str):
    return settings.artifacts_dir / "autoencoders" / basis_hash / "encoder.pt"


def variant_settings(settings, basis_hash: str):
    """settings.lte, pointing the autoencoder variant at the encoder trained for this basis."""
    if settings.lte.variant != "autoencoder" or settings.lte.autoencoder_checkpoint:
        return settings.lte
    return settings.lte.model_copy(update={"autoencoder_checkpoint": str(autoencoder_checkpoint(settings, basis_hash))})


@dg.asset(
    group_name=GROUP,
    deps=[events, content_basis],
    kinds={"pytorch", "mlflow"},
    owners=["team:lte"],
    retry_policy=SERVICE_RETRY,
    description="The asymmetric LTE autoencoder (learned encoder, decoder fixed to the basis), trained "
    "on training-period behaviour only. Trained when lte.variant = 'autoencoder'; otherwise a no-op.",
)
@retry_transient_only
def lte_autoencoder(
    context: dg.AssetExecutionContext,
    duckdb: DuckDBStoreResource,
    artifact_store: ArtifactStoreResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    settings = mlflow.settings()
    if settings.lte.variant != "autoencoder":
        return dg.MaterializeResult(metadata={"trained": False, "reason": f"lte.variant is {settings.lte.variant!r}"})
    from lte.autoencoder import AutoencoderConfig, load_examples, save, train_autoencoder
    from training.registry import log_autoencoder_run

    basis = content.current_basis(artifact_store.store())
    with duckdb.connect() as con:
        # Point-in-time: only events before the validation period (the cut training/data.py uses).
        from training.data import temporal_cutoffs

        cutoff = temporal_cutoffs(con, settings)[0]
        config = AutoencoderConfig(threads=settings.train.threads)
        examples = load_examples(con, basis, cutoff.to_pydatetime(), settings.lte, config)
    model, history = train_autoencoder(examples, basis, config, seed=settings.train.seed)
    path = save(model, autoencoder_checkpoint(settings, basis.hash))  # temp file + rename
    run_id = log_autoencoder_run(settings, path, history, basis.hash, config.to_dict())
    best = next((row for row in history.epochs if row["epoch"] == history.best_epoch), {})
    return dg.MaterializeResult(
        metadata={
            "trained": True,
            "checkpoint": dg.MetadataValue.path(str(path)),
            "trained_before": str(cutoff),
            "val_nll": float(best.get("val_nll", float("nan"))),
            "val_nll_uniform": float(history.val_nll_uniform),
            "best_epoch": history.best_epoch,
            "mlflow_run_id": run_id,
            "basis_hash": basis.hash,
        }
    )


def _batch_metadata(batch) -> dict:
    empty = batch.n_events == 0
    # norm of the (largest-interest) vector: token 0 of each row, the whole row for single-vector variants
    norms = np.linalg.norm(batch.token_vectors()[~empty, 0], axis=1) if (~empty).any() else np.zeros(1)
    return {
        "as_of": str(batch.as_of),
        "users": int(len(batch.user_ids)),
        "users_without_lte": int(empty.sum()),
        "empty_share": round(float(empty.mean()) if len(empty) else 0.0, 4),
        "mean_norm": round(float(norms.mean()), 4),
        "mean_events_in_window": round(float(batch.n_events[~empty].mean()) if (~empty).any() else 0.0, 1),
        "basis_hash": batch.basis_hash,
        "variant": batch.variant,
        "vectors_per_user": int(batch.tokens),
    }


def _export_to_s3(context, con, artifact_store: ArtifactStoreResource, table: str, basis_hash: str,
                  variant: str, as_of: list) -> dict:
    """Upload a Parquet copy of the rows just committed when artifacts live on S3; metadata."""
    if not artifact_store.is_s3():
        return {}
    export = export_lte(con, artifact_store.store(), table, basis_hash, variant, as_of)
    context.log.info(f"exported {export.rows} {table} rows to {export.uri}")
    return {"export": dg.MetadataValue.path(export.uri), "export_rows": export.rows}


@dg.asset(
    group_name=GROUP,
    deps=[events, content_basis, lte_autoencoder],
    kinds={"duckdb", "s3"},
    owners=["team:lte"],
    retry_policy=SERVICE_RETRY,
    description="Append-only LTE history: one snapshot per user every `lte.snapshot_every_days`, "
    "window [as_of - lag - window, as_of - lag). Training reads these point-in-time. Each snapshot "
    "is one transaction (a failed backfill leaves whole snapshots, which a rerun skips).",
)
@retry_transient_only
def lte_snapshots(
    context: dg.AssetExecutionContext,
    lte_settings: LteSettingsResource,
    duckdb: DuckDBStoreResource,
    artifact_store: ArtifactStoreResource,
) -> dg.MaterializeResult:
    settings = lte_settings.settings()
    basis = content.current_basis(artifact_store.store())
    with duckdb.connect() as con:
        _, last = time_range(con)
        times = snapshot_cadence_times(con, settings.lte, end=_live_as_of(last).to_pydatetime())
        rows = backfill(con, basis, times, variant_settings(settings, basis.hash))
        export = _export_to_s3(context, con, artifact_store, "lte_snapshots", basis.hash, settings.lte.variant, times)
    return dg.MaterializeResult(
        metadata={"snapshots": len(times), "rows_written": rows, "first_as_of": str(times[0]),
                  "last_as_of": str(times[-1]), "basis_hash": basis.hash, "variant": settings.lte.variant,
                  **export}
    )


@dg.asset(
    group_name=GROUP,
    deps=[content_basis, lte_snapshots],
    kinds={"duckdb", "s3"},
    owners=["team:lte"],
    retry_policy=SERVICE_RETRY,
    automation_condition=dg.AutomationCondition.eager(),
    description="The single live LTE per user that serving reads: stored as a snapshot and swapped "
    "live in one transaction. Runs by itself after a new basis or new snapshots (automation sensor).",
)
@retry_transient_only
def lte_live(
    context: dg.AssetExecutionContext,
    lte_settings: LteSettingsResource,
    duckdb: DuckDBStoreResource,
    artifact_store: ArtifactStoreResource,
) -> dg.MaterializeResult:
    settings = lte_settings.settings()
    basis = content.current_basis(artifact_store.store())
    with duckdb.connect() as con:
        _, last = time_range(con)
        batch = embeddings.compute_lte(con, basis, _live_as_of(last).to_pydatetime(), variant_settings(settings, basis.hash))
        chart = plots.norm_histogram(batch.token_vectors()[:, 0], batch.n_events,  # largest interest if k > 1
                                     f"Live LTE norms, as_of {batch.as_of:%Y-%m-%d}")
        FeatureStore(con).publish_live(batch)  # snapshot + live swap: one transaction
        export = _export_to_s3(context, con, artifact_store, "lte_live", batch.basis_hash, batch.variant, [batch.as_of])
    png = atomic_write_bytes(settings.artifacts_dir / "plots" / context.run_id / chart.file_name, chart.png)
    return dg.MaterializeResult(metadata={**_batch_metadata(batch), **chart.metadata(png), **export})


@dg.asset_check(
    asset=lte_live,
    automation_condition=dg.AutomationCondition.eager(),
    description="No NaN/inf, norms in range, empty share under the threshold, basis is current.",
)
def lte_live_sane(
    lte_settings: LteSettingsResource, duckdb: DuckDBStoreResource, artifact_store: ArtifactStoreResource
) -> dg.AssetCheckResult:
    current = content.current_basis(artifact_store.store())
    with duckdb.connect() as con:
        batch = FeatureStore(con).live()
    sanity = lte_sanity(batch, current.hash if current is not None else None,
                        lte_settings.settings().lte.max_empty_share)
    return dg.AssetCheckResult(passed=sanity.passed, metadata=sanity.metadata())
