"""Schedules: refresh the live LTEs daily, retrain weekly. They tick only under `dagster-daemon`
(`make ui` starts it); both are off by default so a fresh home does nothing on its own."""

import dagster as dg

from orchestration.jobs import refresh_lte, refresh_lte_sharded, retrain

daily_lte_refresh = dg.ScheduleDefinition(
    name="daily_lte_refresh",
    job=refresh_lte,
    cron_schedule="15 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Append today's LTE snapshot and swap the live table (02:15 UTC).",
)

weekly_retrain = dg.ScheduleDefinition(
    name="weekly_retrain",
    job=retrain,
    cron_schedule="0 4 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Train a challenger every Monday 04:00 UTC; the NDCG gate decides promotion.",
)

# One run per cadence partition (daily, or weekly when lte.snapshot_every_days is a multiple of 7),
# launched after the partition ends; its as_of is the event log's clock capped by that end.
sharded_lte_refresh = dg.build_schedule_from_partitioned_job(
    refresh_lte_sharded,
    name="sharded_lte_refresh",
    hour_of_day=2,
    minute_of_hour=45,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Refresh the live LTEs shard-parallel for the partition that just ended (02:45 UTC).",
)
