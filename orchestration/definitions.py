"""The one Dagster `Definitions` of LTE: assets grouped like the pipeline diagram, checks, jobs,
schedules, sensors and resources."""

from __future__ import annotations

import dagster as dg

from assets import basis, ingestion, lte, lte_shards, monitoring, registry, training
from orchestration.ablation import ablation
from orchestration.jobs import full_pipeline, ingest, refresh_lte, refresh_lte_sharded, retrain
from orchestration.resources import LteResource
from orchestration.schedules import daily_lte_refresh, sharded_lte_refresh, weekly_retrain
from orchestration.sensors import landing_files, retrain_on_drift

MODULES = [ingestion, basis, lte, lte_shards, training, registry, monitoring]

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(MODULES),
    asset_checks=dg.load_asset_checks_from_modules(MODULES),
    jobs=[ablation, full_pipeline, ingest, refresh_lte, refresh_lte_sharded, retrain],
    schedules=[daily_lte_refresh, sharded_lte_refresh, weekly_retrain],
    sensors=[landing_files, retrain_on_drift],
    resources={"lte": LteResource()},
)
