"""Event store: the `events` table in DuckDB, with validation, quarantine and idempotent ingestion."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import duckdb
import pandas as pd

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        event_id VARCHAR PRIMARY KEY,
        user_id BIGINT NOT NULL,
        item_id BIGINT NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        event_type VARCHAR NOT NULL,
        source VARCHAR,
        ingested_at TIMESTAMPTZ
    )""",
    """CREATE TABLE IF NOT EXISTS quarantine (
        source VARCHAR, line_no BIGINT, raw VARCHAR, reason VARCHAR, ingested_at TIMESTAMPTZ
    )""",
    """CREATE TABLE IF NOT EXISTS ingestions (
        file VARCHAR, content_hash VARCHAR, rows_in BIGINT, accepted BIGINT, duplicates BIGINT,
        quarantined BIGINT, status VARCHAR, reason VARCHAR,
        started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ
    )""",
]


@dataclass
class IngestReport:
    file: str
    content_hash: str | None
    rows_in: int
    accepted: int
    duplicates: int
    quarantined: int
    status: str
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in SCHEMA:
        con.execute(ddl)


def ingest_frame(con: duckdb.DuckDBPyConnection, df: pd.DataFrame, source: str) -> IngestReport:
    """Insert a clean frame of events (user_id, item_id, ts, [event_type]) in one transaction."""
    ensure_schema(con)
    frame = df.copy()
    if "event_type" not in frame:
        frame["event_type"] = "interaction"
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    con.register("incoming", frame[["user_id", "item_id", "ts", "event_type"]])
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(
            """
            INSERT INTO events
            SELECT DISTINCT ON (event_id) * FROM (
                SELECT sha256(concat_ws('|', user_id, item_id, epoch_us(ts), event_type)) AS event_id,
                       user_id::BIGINT, item_id::BIGINT, ts, event_type, ? AS source, now() AS ingested_at
                FROM incoming
            ) WHERE event_id NOT IN (SELECT event_id FROM events)
            """,
            [source],
        )
        accepted = con.execute("SELECT count(*) FROM events WHERE source = ?", [source]).fetchall()[0][0]
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("incoming")
    return IngestReport(source, None, len(frame), accepted, len(frame) - accepted, 0, "ok")


def event_count(con: duckdb.DuckDBPyConnection) -> int:
    ensure_schema(con)
    return con.execute("SELECT count(*) FROM events").fetchall()[0][0]


def time_range(con: duckdb.DuckDBPyConnection) -> tuple[datetime, datetime]:
    lo, hi = con.execute("SELECT min(ts), max(ts) FROM events").fetchall()[0]
    return lo, hi
