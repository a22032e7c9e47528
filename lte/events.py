"""Event store: the `events` table in DuckDB, with validation, quarantine and idempotent ingestion.

Every ingestion goes through one staged path, whatever the input (CSV/TSV/JSONL/Parquet file or a
pandas frame):

1. The input is exposed as text columns `user_id, item_id, timestamp, event_type` (plus `line_no`
   when the reader knows it) and classified in one SQL pass into a temp table: typed values for
   good rows, a human-readable `reason` for bad ones. Rows stay inside DuckDB (fast, bounded memory).
2. Bad rows go to `quarantine` verbatim (the caller locates their raw text and line number).
3. Good rows are inserted unless an identical event already exists (in the store or earlier in the
   same input): `accepted` rows are new, `duplicates` were already there.
4. One row in `ingestions` records the counts, so that per input rows_in = accepted + duplicates +
   quarantined always holds.

The caller wraps steps 1-4 in one transaction (`transaction()`), so a crash leaves nothing behind.

`event_id` is the content hash sha256(user_id|item_id|epoch_us(ts)|event_type). It is a VIRTUAL
generated column: storing a 64-char hash per event (or a PRIMARY KEY index on it) made bulk
ingestion 6-40x slower (docs/ingestion.md), and uniqueness is guaranteed by the anti-join in step 3,
which every write goes through.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import duckdb
import pandas as pd
import pandera.pandas as pa
from pandera.typing.pandas import Series

MAX_EVENT_TYPE_CHARS = 64
DEFAULT_EVENT_TYPE = "interaction"
# Unix seconds above this are far beyond 2100: almost always milliseconds by mistake.
MAX_UNIX_SECONDS = 1e11
EARLIEST_TS = "1970-01-01 00:00:00+00"
LATEST_TS = "2100-01-01 00:00:00+00"
STAGE_TABLE = "_lte_stage"

# Ingestion verdicts (IngestReport.status)
OK = "ok"  # every row accepted or already present
QUARANTINED_ROWS = "quarantined_rows"  # processed; some rows went to quarantine
REJECTED = "rejected"  # file-level verdict: nothing ingested, see reason
SKIPPED = "skipped"  # identical content was ingested before; nothing to do
DONE_STATUSES = (OK, QUARANTINED_ROWS)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        user_id BIGINT NOT NULL,
        item_id BIGINT NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        event_type VARCHAR NOT NULL,
        source VARCHAR,
        ingested_at TIMESTAMPTZ,
        event_id VARCHAR AS (sha256(concat_ws('|', user_id, item_id, epoch_us(ts), event_type))) VIRTUAL
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
    """Outcome of one input. Invariant: rows_in == accepted + duplicates + quarantined."""

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


@dataclass(frozen=True)
class QuarantineRow:
    """A rejected input row: `raw` is the row as it appeared in the input (line text, or JSON)."""

    line_no: int | None
    raw: str
    reason: str


@dataclass(frozen=True)
class BadRow:
    """A staged row the classifier rejected; `ordinal` is its 0-based position among staged rows."""

    ordinal: int
    line_no: int | None
    reason: str
    fields_json: str


class EventSchema(pa.DataFrameModel):
    """The contract of a stored/accepted event frame (what `events` holds for every row)."""

    user_id: Series[int] = pa.Field(ge=0)
    item_id: Series[int] = pa.Field(ge=0)
    ts: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "us", "tz": "UTC"})
    event_type: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": MAX_EVENT_TYPE_CHARS})

    class Config:
        coerce = True


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in SCHEMA:
        con.execute(ddl)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN ... COMMIT, ROLLBACK on any exception (including KeyboardInterrupt)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@contextmanager
def utc_session(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Parse zone-less timestamps as UTC (the documented input contract), then restore the setting."""
    previous = con.execute("SELECT current_setting('TimeZone')").fetchall()[0][0]
    con.execute("SET TimeZone = 'UTC'")
    try:
        yield
    finally:
        # SET takes no bound parameters; the value comes from DuckDB itself, quoted anyway.
        con.execute(f"SET TimeZone = '{_quote_literal(previous)}'")


def _quote_literal(text: str) -> str:
    return text.replace("'", "''")


# One classifier for every input. `src` has VARCHAR columns user_id, item_id, timestamp, event_type
# and a BIGINT line_no (NULL when the reader cannot know it). The first failing rule names the row's
# reason; values are quoted (cut to 40 chars) so a person can see what was wrong.
_CLASSIFY_SQL = f"""
CREATE TEMP TABLE {STAGE_TABLE} AS
WITH src AS ({{source_select}}),
parsed AS (
    SELECT *,
        CASE WHEN ltrim(trim(user_id), '0123456789') = '' THEN try_cast(trim(user_id) AS BIGINT) END AS u,
        CASE WHEN ltrim(trim(item_id), '0123456789') = '' THEN try_cast(trim(item_id) AS BIGINT) END AS it,
        try_cast(trim(timestamp) AS DOUBLE) AS unix_s,
        coalesce(nullif(event_type, ''), '{DEFAULT_EVENT_TYPE}') AS et
    FROM src
),
timed AS (
    SELECT *,
        CASE WHEN unix_s IS NULL THEN try_cast(trim(timestamp) AS TIMESTAMPTZ)
             WHEN isfinite(unix_s) AND abs(unix_s) < {MAX_UNIX_SECONDS} THEN to_timestamp(unix_s)
        END AS ts
    FROM parsed
)
SELECT line_no, u, it, ts, et,
    CASE
        WHEN user_id IS NULL OR trim(user_id) = '' THEN 'missing user_id'
        WHEN u IS NULL THEN 'user_id is not a non-negative integer: "' || left(user_id, 40) || '"'
        WHEN item_id IS NULL OR trim(item_id) = '' THEN 'missing item_id'
        WHEN it IS NULL THEN 'item_id is not a non-negative integer: "' || left(item_id, 40) || '"'
        WHEN timestamp IS NULL OR trim(timestamp) = '' THEN 'missing timestamp'
        WHEN unix_s IS NOT NULL AND ts IS NULL
            THEN 'timestamp "' || left(timestamp, 40) || '" is not plausible Unix seconds (milliseconds?)'
        WHEN ts IS NULL
            THEN 'unparseable timestamp "' || left(timestamp, 40) || '": expected Unix seconds or ISO-8601'
        WHEN ts < TIMESTAMPTZ '{EARLIEST_TS}' OR ts >= TIMESTAMPTZ '{LATEST_TS}'
            THEN 'timestamp "' || left(timestamp, 40) || '" is outside 1970-01-01 .. 2099-12-31'
        WHEN length(et) > {MAX_EVENT_TYPE_CHARS}
            THEN 'event_type longer than {MAX_EVENT_TYPE_CHARS} characters (' || length(et) || ')'
    END AS reason,
    CASE WHEN reason IS NOT NULL
        THEN to_json(struct_pack(user_id, item_id, timestamp, event_type))
    END AS fields_json
FROM timed
"""


def stage_events(con: duckdb.DuckDBPyConnection, source_select: str, params: Sequence = ()) -> int:
    """Classify the rows of `source_select` into the stage table; returns the number of rows staged.

    The stage keeps input order, so `rowid` is each row's 0-based ordinal in the input.
    Call inside `utc_session` so zone-less timestamps mean UTC.
    """
    con.execute(f"DROP TABLE IF EXISTS {STAGE_TABLE}")
    con.execute(_CLASSIFY_SQL.format(source_select=source_select), list(params))
    return con.execute(f"SELECT count(*) FROM {STAGE_TABLE}").fetchall()[0][0]


def staged_bad_rows(con: duckdb.DuckDBPyConnection) -> list[BadRow]:
    rows = con.execute(
        # Rows written inside an open transaction get row ids from a high base: subtract it.
        f"SELECT rowid - (SELECT min(rowid) FROM {STAGE_TABLE}), line_no, reason, fields_json "
        f"FROM {STAGE_TABLE} WHERE reason IS NOT NULL ORDER BY rowid"
    ).fetchall()
    return [BadRow(int(o), None if ln is None else int(ln), r, f) for o, ln, r, f in rows]


def commit_stage(
    con: duckdb.DuckDBPyConnection, source: str, quarantined: Sequence[QuarantineRow]
) -> tuple[int, int]:
    """Insert the stage's good rows that are not yet stored, and the quarantine rows.

    Returns (accepted, duplicates): duplicates are good rows equal to a stored event or to an
    earlier row of the same input. Must run inside the caller's transaction.
    """
    good, lo, hi = con.execute(
        f"SELECT count(*), min(ts), max(ts) FROM {STAGE_TABLE} WHERE reason IS NULL"
    ).fetchall()[0]
    accepted = 0
    if good:
        # The ts bounds let DuckDB skip row groups of older events (zone maps) in the anti-join.
        accepted = con.execute(
            f"""
            INSERT INTO events (user_id, item_id, ts, event_type, source, ingested_at)
            SELECT u, it, ts, et, ?, now() FROM (
                SELECT DISTINCT u, it, ts, et FROM {STAGE_TABLE} s WHERE reason IS NULL
            ) s
            WHERE NOT EXISTS (
                SELECT 1 FROM events e
                WHERE e.ts BETWEEN ? AND ? AND e.user_id = s.u AND e.item_id = s.it
                  AND e.ts = s.ts AND e.event_type = s.et
            )
            """,
            [source, lo, hi],
        ).fetchall()[0][0]
    if quarantined:
        write_quarantine(con, source, quarantined)
    return int(accepted), int(good - accepted)


def write_quarantine(con: duckdb.DuckDBPyConnection, source: str, rows: Sequence[QuarantineRow]) -> None:
    frame = pd.DataFrame(
        {
            "line_no": pd.array([r.line_no for r in rows], dtype="Int64"),
            "raw": [r.raw for r in rows],
            "reason": [r.reason for r in rows],
        }
    )
    con.register("_lte_quarantine_rows", frame)
    try:
        con.execute(
            "INSERT INTO quarantine SELECT ?, line_no, raw, reason, now() FROM _lte_quarantine_rows", [source]
        )
    finally:
        con.unregister("_lte_quarantine_rows")


def drop_stage(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"DROP TABLE IF EXISTS {STAGE_TABLE}")


def validate_stage_sample(con: duckdb.DuckDBPyConnection, n: int = 10_000) -> None:
    """Check accepted rows against `EventSchema` (a sample): guards the SQL classifier's contract."""
    sample = con.execute(
        f"SELECT u AS user_id, it AS item_id, ts, et AS event_type FROM {STAGE_TABLE} "
        f"WHERE reason IS NULL LIMIT {int(n)}"
    ).df()
    if len(sample):
        sample["ts"] = pd.to_datetime(sample["ts"], utc=True)
        EventSchema.validate(sample, lazy=True)


def record_ingestion(con: duckdb.DuckDBPyConnection, report: IngestReport, started_at: datetime) -> None:
    ensure_schema(con)
    con.execute(
        "INSERT INTO ingestions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
        [
            report.file, report.content_hash, report.rows_in, report.accepted, report.duplicates,
            report.quarantined, report.status, report.reason, started_at,
        ],
    )


def previous_ingestion(con: duckdb.DuckDBPyConnection, content_hash: str) -> tuple[str, datetime] | None:
    """(file, finished_at) of the first successful ingestion of this content, if any."""
    rows = con.execute(
        "SELECT file, finished_at FROM ingestions WHERE content_hash = ? AND status IN (?, ?) "
        "ORDER BY finished_at LIMIT 1",
        [content_hash, *DONE_STATUSES],
    ).fetchall()
    return rows[0] if rows else None


def known_content_hashes(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Every content hash with a recorded verdict (done, skipped or rejected)."""
    ensure_schema(con)
    rows = con.execute("SELECT DISTINCT content_hash FROM ingestions WHERE content_hash IS NOT NULL").fetchall()
    return {r[0] for r in rows}


def finish_report(
    source: str, content_hash: str | None, rows_in: int, accepted: int, duplicates: int, quarantined: int
) -> IngestReport:
    if rows_in != accepted + duplicates + quarantined:
        raise AssertionError(
            f"conservation broken for {source}: {rows_in} in != {accepted} + {duplicates} + {quarantined}"
        )
    status = QUARANTINED_ROWS if quarantined else OK
    reason = f"{quarantined} row(s) quarantined: see `lte quarantine --file {source}`" if quarantined else ""
    return IngestReport(source, content_hash, rows_in, accepted, duplicates, quarantined, status, reason)


def ingest_staged(
    con: duckdb.DuckDBPyConnection,
    source_select: str,
    params: Sequence,
    source: str,
    content_hash: str | None,
    locate: Callable[[list[BadRow]], list[QuarantineRow]],
    pre_rejected: Sequence[QuarantineRow] = (),
    on_stage: Callable[[str], None] | None = None,
) -> IngestReport:
    """Stage, quarantine, dedup and store one input in ONE transaction; record it in `ingestions`.

    `locate` turns the classifier's bad rows into verbatim quarantine rows (raw text, line number),
    plus any rows the reader dropped before staging; `pre_rejected` are rows the caller already
    rejected (e.g. invalid JSON lines). rows_in counts staged rows plus all of those.
    """
    ensure_schema(con)
    started_at = datetime.now(UTC)
    notify = on_stage or (lambda stage: None)
    with utc_session(con), transaction(con):
        notify("staging")
        staged = stage_events(con, source_select, params)
        bad = staged_bad_rows(con)
        # `locate` may add rows the reader never staged (e.g. CSV lines it could not split).
        quarantined = [*pre_rejected, *locate(bad)]
        rows_in = staged + len(quarantined) - len(bad)
        validate_stage_sample(con)
        notify("storing")
        accepted, duplicates = commit_stage(con, source, quarantined)
        report = finish_report(source, content_hash, rows_in, accepted, duplicates, len(quarantined))
        record_ingestion(con, report, started_at)
        drop_stage(con)
        notify("committing")
    return report


def ingest_frame(con: duckdb.DuckDBPyConnection, df: pd.DataFrame, source: str) -> IngestReport:
    """Validate and store a frame of events (user_id, item_id, ts, [event_type]) in one transaction.

    `ts` may be tz-aware datetimes, naive datetimes (taken as UTC), Unix seconds or ISO-8601 text.
    Bad rows are quarantined with line_no = 1-based row position and raw = the row as JSON.
    """
    missing = {"user_id", "item_id", "ts"} - set(df.columns)
    if missing:
        raise ValueError(f"ingest_frame needs columns user_id, item_id, ts; missing {sorted(missing)}")
    frame = pd.DataFrame(
        {
            "line_no": range(1, len(df) + 1),
            "user_id": _as_text(df["user_id"]),
            "item_id": _as_text(df["item_id"]),
            "timestamp": _as_text(_ts_as_unix_or_text(df["ts"])),
            "event_type": _as_text(df["event_type"]) if "event_type" in df else None,
        }
    )
    con.register("_lte_incoming_frame", frame)
    try:
        return ingest_staged(
            con,
            "SELECT line_no::BIGINT AS line_no, user_id, item_id, timestamp, event_type::VARCHAR AS event_type "
            "FROM _lte_incoming_frame",
            [],
            source,
            None,
            locate=lambda bad: [QuarantineRow(b.line_no, b.fields_json, b.reason) for b in bad],
        )
    finally:
        con.unregister("_lte_incoming_frame")


def _ts_as_unix_or_text(ts: pd.Series) -> pd.Series:
    """Datetimes become exact Unix seconds (naive = UTC); anything else is passed on as text."""
    if pd.api.types.is_datetime64_any_dtype(ts):
        utc = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
        micros = utc.astype("int64") // 1000 if utc.dt.unit == "ns" else utc.dt.as_unit("us").astype("int64")
        seconds = (micros // 1_000_000).astype(str)
        frac = (micros % 1_000_000)
        text = seconds.where(frac == 0, seconds + "." + frac.astype(str).str.zfill(6))
        return text.where(ts.notna(), None)
    return ts


def _as_text(values: pd.Series) -> pd.Series:
    """Text form of a column; nulls stay null; integral floats (from NaN-holding columns) lose '.0'."""
    if pd.api.types.is_float_dtype(values):
        integral = values.notna() & (values == values.round())
        text = values.astype(object).where(values.notna(), None)
        text[integral] = values[integral].astype("int64").astype(str)
        return text.map(lambda v: v if v is None or isinstance(v, str) else repr(v))
    return values.astype(object).where(values.notna(), None).map(lambda v: v if v is None else str(v))


def quarantine_rate(report: IngestReport) -> float:
    """Share of input rows that were quarantined (0.0 for an input with no rows)."""
    return report.quarantined / report.rows_in if report.rows_in else 0.0


def list_quarantine(con: duckdb.DuckDBPyConnection, file: str | None = None, limit: int = 100) -> pd.DataFrame:
    """Quarantined rows, newest ingestion first then by line; `file` filters on the source name.

    Read-only: works on a connection opened with read_only=True (the table must exist)."""
    where, params = ("WHERE source = ?", [file]) if file else ("", [])
    return con.execute(
        f"SELECT source, line_no, raw, reason, ingested_at FROM quarantine {where} "
        f"ORDER BY ingested_at DESC, source, line_no LIMIT {int(limit)}",
        params,
    ).df()


def list_ingestions(con: duckdb.DuckDBPyConnection, limit: int = 100) -> pd.DataFrame:
    ensure_schema(con)
    return con.execute(f"SELECT * FROM ingestions ORDER BY finished_at DESC LIMIT {int(limit)}").df()


def event_count(con: duckdb.DuckDBPyConnection) -> int:
    ensure_schema(con)
    return con.execute("SELECT count(*) FROM events").fetchall()[0][0]


def time_range(con: duckdb.DuckDBPyConnection) -> tuple[datetime, datetime]:
    """(min ts, max ts) over stored events, tz-aware; (None, None) for an empty store."""
    ensure_schema(con)
    lo, hi = con.execute("SELECT min(ts), max(ts) FROM events").fetchall()[0]
    return lo, hi


def quarantine_json(rows: pd.DataFrame) -> list[dict]:
    """Quarantine rows as JSON-ready dicts (for `--json` output)."""
    return json.loads(rows.to_json(orient="records", date_format="iso"))
