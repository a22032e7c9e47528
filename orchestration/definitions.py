"""The one Dagster `Definitions` of LTE: assets grouped like the pipeline diagram, checks, jobs,
schedules, sensors (including the declarative-automation sensor), the executor and the resources."""

from __future__ import annotations

import dagster as dg

from assets import basis, ingestion, lte, lte_shards, monitoring, registry, training
from orchestration.ablation import ablation
from orchestration.executors import executor_from_env
from orchestration.jobs import full_pipeline, ingest, refresh_lte, refresh_lte_sharded, retrain
from orchestration.resources import definitions_resources
from orchestration.schedules import daily_lte_refresh, sharded_lte_refresh, weekly_retrain
from orchestration.sensors import landing_files, retrain_on_drift

MODULES = [ingestion, basis, lte, lte_shards, training, registry, monitoring]

# Evaluates the assets' automation conditions (lte_live + its check after a new basis or new
# snapshots, lte_drift_report after a new champion); off by default like every schedule and sensor.
lte_automation = dg.AutomationConditionSensorDefinition(
    "lte_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=60,
    description="Declarative automation: requests `lte_live` (and `lte_live_sane`) after a new "
    "`content_basis` or `lte_snapshots`, and `lte_drift_report` after a new `champion_model`, "
    "unless the run that updated them already included them.",
)

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(MODULES),
    asset_checks=dg.load_asset_checks_from_modules(MODULES),
    jobs=[ablation, full_pipeline, ingest, refresh_lte, refresh_lte_sharded, retrain],
    schedules=[daily_lte_refresh, sharded_lte_refresh, weekly_retrain],
    sensors=[landing_files, retrain_on_drift, lte_automation],
    resources=definitions_resources(),
    executor=executor_from_env(),
)
