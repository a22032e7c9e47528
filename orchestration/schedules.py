"""Schedules: refresh the live LTEs daily, retrain weekly. They tick only under `dagster-daemon`
(`make ui` starts it); both are off by default so a fresh home does nothing on its own."""

import dagster as dg

from orchestration.jobs import refresh_lte, retrain

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
