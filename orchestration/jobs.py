"""Jobs: what `make demo` runs, and the slices schedules and sensors launch."""

from __future__ import annotations

import dagster as dg

ingest = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.assets("landed_files"),
    description="Ingest new files from the landing location (run by the `landing_files` sensor).",
)
full_pipeline = dg.define_asset_job(
    "full_pipeline",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("landed_files"),
    description="Everything, in order: events -> basis -> LTE -> training -> gate -> registry -> drift.",
)
refresh_lte = dg.define_asset_job(
    "refresh_lte",
    selection=dg.AssetSelection.groups("lte"),
    description="Recompute LTE snapshots and swap the live table.",
)
retrain = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.groups("training", "registry", "monitoring"),
    description="Train a challenger on the current snapshots, gate it, register, monitor drift.",
)
