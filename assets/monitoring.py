"""Monitoring: Evidently drift of the live LTE distribution against what the champion was trained on."""


import json
from datetime import datetime

import dagster as dg

from lte.feature_store import FeatureStore
from lte.storage import atomic_write_bytes
from orchestration.resources import DuckDBStoreResource, LteSettingsResource, MlflowResource
from orchestration.retries import SERVICE_RETRY, retry_transient_only

from . import plots
from .registry import champion_model

GROUP = "monitoring"


def champion_reference(duckdb: DuckDBStoreResource, mlflow: MlflowResource):
    """(reference LteBatch, live LteBatch, champion version): the snapshot the champion's training
    period ended on, and what serving reads now."""
    champion = mlflow.registry().get("champion")
    if champion is None:
        raise LookupError("no champion model: train and promote one (`make demo`) before monitoring drift")
    tags = champion.tags
    with duckdb.connect() as con:
        store = FeatureStore(con)
        reference = store.snapshot(
            as_of=datetime.fromisoformat(tags["lte_reference_as_of"]) if tags.get("lte_reference_as_of") else None,
            variant=tags.get("lte_variant", "uniform"),
            basis_hash=tags["basis_hash"],
        )
        current = store.live()
    return reference, current, champion.version


@dg.asset(
    group_name=GROUP,
    deps=[champion_model],
    kinds={"evidently"},
    owners=["team:lte"],
    retry_policy=SERVICE_RETRY,
    automation_condition=dg.AutomationCondition.eager(),
    description="Evidently embedding-drift report: the champion's training-time LTE snapshot vs the "
    "live LTEs (HTML + JSON), added to the Evidently workspace dashboard. Runs by itself after a new "
    "champion (automation sensor).",
)
@retry_transient_only
def lte_drift_report(
    context: dg.AssetExecutionContext, duckdb: DuckDBStoreResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    from monitoring.dashboard import add_to_workspace
    from monitoring.drift import drift_report

    settings = mlflow.settings()
    reference, current, version = champion_reference(duckdb, mlflow)
    chart = plots.drift_dimensions(reference.vectors, current.vectors, reference.n_events, current.n_events,
                                   f"Live LTEs vs champion v{version}'s training snapshot")
    result = drift_report(reference, current, settings.drift_dir, settings.drift,
                          run_name=f"{context.run_id[:8]}-champion-v{version}")
    png = atomic_write_bytes(result.html_path.with_name(f"{result.html_path.stem}-{chart.file_name}"), chart.png)
    run = add_to_workspace(settings.evidently_workspace, result)
    latest = {
        **result.to_dict(),
        "report": str(result.html_path),
        "reference_as_of": str(reference.as_of),
        "current_as_of": str(current.as_of),
        "champion_version": version,
    }
    latest.pop("summary", None)
    # The verdict the retrain sensor reads: replaced whole, never seen half written.
    atomic_write_bytes(settings.drift_dir / "latest.json", json.dumps(latest, indent=2, default=str).encode())
    return dg.MaterializeResult(
        metadata={
            "drifted": result.drifted,
            "score": float(result.score),
            "method": result.method,
            "threshold": float(result.threshold) if result.threshold is not None else "bootstrap",
            "share_drifted_dims": float(result.share_drifted_dims),
            "empty_share_current": float(result.empty_share_current),
            "report": dg.MetadataValue.path(str(result.html_path)),
            "report_url": dg.MetadataValue.url(f"file://{result.html_path}"),
            "dashboard_snapshots": run.n_snapshots,
            **chart.metadata(png),
        }
    )


@dg.asset_check(asset=lte_drift_report, description="Live LTEs have not drifted from the champion's training LTEs.")
def lte_not_drifted(lte_settings: LteSettingsResource) -> dg.AssetCheckResult:
    latest = lte_settings.settings().drift_dir / "latest.json"
    verdict = json.loads(latest.read_text())
    return dg.AssetCheckResult(
        passed=not verdict["drifted"],
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"score": float(verdict["score"]), "method": verdict["method"]},
    )
