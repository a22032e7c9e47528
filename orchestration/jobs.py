"""Jobs: what `make demo` runs, and the slices schedules and sensors launch."""

from __future__ import annotations

import dagster as dg

from assets.lte_shards import refresh_lte_sharded

# The scale-out LTE path has shard-partitioned assets: a run of unpartitioned assets cannot include them.
SHARDED_LTE = dg.AssetSelection.groups("lte_sharded")

ingest = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.assets("landed_files"),
    description="Ingest new files from the landing location (run by the `landing_files` sensor).",
)
full_pipeline = dg.define_asset_job(
    "full_pipeline",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("landed_files") - SHARDED_LTE,
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

__all__ = ["full_pipeline", "ingest", "refresh_lte", "refresh_lte_sharded", "retrain"]
