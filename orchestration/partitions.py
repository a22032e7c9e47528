"""Partitions of LTE generation: user-hash shards (static) and the refresh cadence (time).

Both are read once, when the definitions load, because Dagster fixes a partitions definition there:
- shards: `lte.shards` (default 4; LTE_LTE__SHARDS or lte.toml). Keys are "i-of-n" (zero-padded), so a key names its shard
  layout and files written under another count can never be mixed into a snapshot.
- cadence: weekly when `lte.snapshot_every_days` (settings, lte.toml or LTE_LTE__SNAPSHOT_EVERY_DAYS)
  is a multiple of 7, daily otherwise; partitions start at `lte.refresh_start` (default 2025-01-01).
  A cadence partition only picks the as_of (see `refresh_as_of`); the clock stays the event log's.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import pandas as pd

from lte.config import Settings
from lte.lte_export import time_key


def shard_count() -> int:
    return Settings().lte.shards


def shard_key(index: int, count: int) -> str:
    return f"{index:02d}-of-{count:02d}"


def parse_shard_key(key: str) -> tuple[int, int]:
    """(index, count) of a key made by `shard_key`."""
    index, sep, count = key.partition("-of-")
    if not sep or not index.isdigit() or not count.isdigit() or int(index) >= int(count):
        raise ValueError(f"not a shard partition key (expected like '00-of-04'): {key!r}")
    return int(index), int(count)


SHARD_COUNT = shard_count()
shard_partitions = dg.StaticPartitionsDefinition([shard_key(i, SHARD_COUNT) for i in range(SHARD_COUNT)])


def refresh_cadence(snapshot_every_days: float) -> str:
    return "weekly" if snapshot_every_days % 7 == 0 else "daily"


def _refresh_partitions() -> dg.TimeWindowPartitionsDefinition:
    settings = Settings()  # read only: importing the definitions must not create a home
    start = settings.lte.refresh_start
    if refresh_cadence(settings.lte.snapshot_every_days) == "weekly":
        # Weeks start Monday 00:00 UTC; the tick for a week runs after it has ended.
        return dg.WeeklyPartitionsDefinition(start_date=start, day_offset=1, timezone="UTC")
    return dg.DailyPartitionsDefinition(start_date=start, timezone="UTC")


refresh_partitions = _refresh_partitions()


def refresh_as_of(window_end: datetime | None, live_as_of: datetime) -> datetime:
    """The as_of of a refresh: the event log's live as_of (midnight after its last event,
    docs/decisions.md 2), or the end of the cadence partition when that is earlier. So today's
    partition of a live log publishes today's LTEs, a partition in the log's past rebuilds the
    snapshot of that day, and a replayed old log is never asked for LTEs after its last event."""
    if window_end is None:
        return live_as_of
    end = pd.Timestamp(window_end).tz_convert("UTC").to_pydatetime()
    return min(end, live_as_of)


def as_of_key(as_of: datetime) -> str:
    """A path- and tag-safe name of an as_of (UTC, second precision), as LTE exports name them."""
    return time_key(as_of)


__all__ = [
    "SHARD_COUNT", "as_of_key", "parse_shard_key", "refresh_as_of", "refresh_cadence",
    "refresh_partitions", "shard_count", "shard_key", "shard_partitions",
]
