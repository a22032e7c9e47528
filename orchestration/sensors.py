"""Sensors: retrain when the live LTEs drift away from the champion's training LTEs."""

import json
from types import SimpleNamespace

import dagster as dg

from orchestration.jobs import ingest, retrain
from orchestration.resources import ArtifactStoreResource, DuckDBStoreResource, LteSettingsResource


@dg.sensor(
    job=retrain,
    name="retrain_on_drift",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests `retrain` once per new drift verdict that says the LTEs drifted, when "
    "`drift.retrain_on_drift` is on (off by default).",
)
def retrain_on_drift(context: dg.SensorEvaluationContext, lte_settings: LteSettingsResource):
    from monitoring.drift import should_retrain

    settings = lte_settings.settings()
    latest = settings.drift_dir / "latest.json"
    if not latest.exists():
        return dg.SkipReason(f"no drift verdict at {latest} yet")
    verdict = json.loads(latest.read_text())
    run_name = str(verdict.get("run_name") or verdict.get("report"))
    if context.cursor == run_name:
        return dg.SkipReason(f"verdict {run_name} already handled")
    context.update_cursor(run_name)
    if not should_retrain(SimpleNamespace(**verdict), settings.drift):
        return dg.SkipReason(
            f"{run_name}: drifted={verdict['drifted']}, retrain_on_drift={settings.drift.retrain_on_drift}"
        )
    return dg.RunRequest(run_key=f"drift-{run_name}", tags={"lte/trigger": "drift"})


@dg.sensor(
    job=ingest,
    name="landing_files",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Starts `ingest` when the landing location holds files whose content hash has no "
    "verdict yet; each file is ingested exactly once.",
)
def landing_files(context: dg.SensorEvaluationContext, artifact_store: ArtifactStoreResource,
                  duckdb: DuckDBStoreResource):
    from assets.ingestion import landing_uri
    from lte.ingest_files import pending_files

    settings = artifact_store.settings()
    with duckdb.connect() as con:
        pending = pending_files(landing_uri(settings), con, settings.storage.s3_endpoint_url)
    if not pending:
        return dg.SkipReason("no new files in the landing location")
    hashes = sorted(f.content_hash for f in pending)
    return dg.RunRequest(run_key="landing-" + "-".join(h[:12] for h in hashes),
                         tags={"lte/files": str(len(pending))})
