"""The one Dagster `Definitions` of LTE: assets grouped like the pipeline diagram, checks, jobs,
schedules, sensors and resources."""

from __future__ import annotations

import dagster as dg

from assets import basis, ingestion, lte
from orchestration.jobs import full_pipeline, refresh_lte, retrain
from orchestration.resources import LteResource

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion, basis, lte]),
    asset_checks=dg.load_asset_checks_from_modules([ingestion, basis, lte]),
    jobs=[full_pipeline, refresh_lte, retrain],
    resources={"lte": LteResource()},
)
