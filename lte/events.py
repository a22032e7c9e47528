"""Event store: the `events` view in DuckDB, with validation, quarantine and idempotent ingestion.

Every input (CSV/TSV/JSONL/Parquet file or a pandas frame) is exposed as text columns `user_id,
item_id, timestamp, event_type` (plus `line_no` when the reader knows it) and classified by one SQL
rule set (`_CLASSIFIED_SQL`): typed values and an `ok` flag per row. Rows stay inside DuckDB.

- Fast path, one pass (`_insert_directly`): rows go straight from the reader into `event_log`. It
  applies when every row is ok and lies outside the time span of the stored events (so none can
  equal a stored event), and no two rows of the input are equal; the first row that breaks this
  aborts the pass, and the transaction is rolled back.
- Careful path (`_ingest_carefully`): rows are staged in a temp table; bad rows get a reason a
  person understands (`_REASON_SQL`) and go to `quarantine` verbatim (the caller locates their raw
  text and line number); good rows are inserted unless an identical event already exists (in the
  store or earlier in the input): `accepted` rows are new, `duplicates` were already there.

Either way one row in `ingestions` records the counts, so that per input rows_in = accepted +
duplicates + quarantined always holds, and everything of one input is ONE transaction, so a crash
leaves nothing behind.

Readers use the view `events(user_id, item_id, ts, event_type, source, ingested_at, event_id)`.
`event_id` is the content hash sha256(user_id|item_id|epoch_us(ts)|event_type), computed on read;
storing it (or a PRIMARY KEY index on it) made bulk ingestion 6-40x slower, and even a VIRTUAL
generated column cost two fifths of the insert (DuckDB evaluates it for every inserted row). Uniqueness
comes from the dedup above, which every write goes through. Stored rows live in `event_log`, with
a batch number that `event_batches` maps to the row's source and ingestion time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing.pandas import Series

from lte.db import transaction

MAX_EVENT_TYPE_CHARS = 64
DEFAULT_EVENT_TYPE = "interaction"
# Unix seconds above this are far beyond 2100: almost always milliseconds by mistake.
MAX_UNIX_SECONDS = 1e11
EARLIEST_TS = "1970-01-01 00:00:00+00"
LATEST_TS = "2100-01-01 00:00:00+00"
STAGE_TABLE = "_lte_stage"
# _timestamps_distinct: rows per batch of its streaming pass, the number of segments beyond which it
# gives up, and the forward step (in median forward steps of the batch) that starts a new segment.
TIME_BATCH_ROWS = 1 << 20
MAX_TIME_SEGMENTS = 1 << 21
JUMP_FACTOR = 64
MAX_CHECKED_TIMES = 1 << 21  # values in overlapping segment ranges that it checks one by one

# Ingestion verdicts (IngestReport.status)
OK = "ok"  # every row accepted or already present
QUARANTINED_ROWS = "quarantined_rows"  # processed; some rows went to quarantine
REJECTED = "rejected"  # file-level verdict: nothing ingested, see reason
SKIPPED = "skipped"  # identical content was ingested before; nothing to do
DONE_STATUSES = (OK, QUARANTINED_ROWS)

# Stored rows live in `event_log`; `events` is the view every reader uses. Two per-row costs of
# the insert were moved to read time (docs/ingestion.md, decisions.md 16):
# - `event_id` is computed on read. As a VIRTUAL generated column DuckDB evaluated the sha256 for
#   every inserted row (it checks that generated columns compute): two fifths of the one-pass insert CPU.
# - `source` and `ingested_at` are the same for every row of one input: stored once per insert in
#   `event_batches`, each row keeps its batch number. The view looks them up by position in one
#   list per query (an uncorrelated subquery, so not a join per row; it is dropped when unused).
EVENT_LOG = "event_log"
EVENT_BATCHES = "event_batches"
EVENT_ID_SQL = "sha256(concat_ws('|', user_id, item_id, epoch_us(ts), event_type))"


def _batch_lookup(column: str) -> str:
    """`column` of each row's batch: a list with one entry per batch number (gaps hold NULL)."""
    return (f"(SELECT list(b.{column} ORDER BY n.batch) FROM range(1, (SELECT coalesce(max(batch), 0) + 1 "
            f"FROM {EVENT_BATCHES})) n(batch) LEFT JOIN {EVENT_BATCHES} b ON b.batch = n.batch)[e.batch]")


SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS {EVENT_LOG} (
        user_id BIGINT NOT NULL,
        item_id BIGINT NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        event_type VARCHAR NOT NULL,
        batch INTEGER NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {EVENT_BATCHES} (
        batch INTEGER PRIMARY KEY, source VARCHAR, ingested_at TIMESTAMPTZ
    )""",
    f"""CREATE VIEW IF NOT EXISTS events AS
        SELECT e.user_id, e.item_id, e.ts, e.event_type, {_batch_lookup("source")} AS source,
               {_batch_lookup("ingested_at")} AS ingested_at, {EVENT_ID_SQL} AS event_id
        FROM {EVENT_LOG} e""",
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
    """Create the tables and the `events` view; migrate a store of the older layout first.

    Nothing to do on a read-only connection: it reads what is there (an older layout included:
    its `events` table has the same columns); the next writer creates or migrates."""
    if con.execute("SELECT readonly FROM duckdb_databases() WHERE database_name = current_database()").fetchall()[0][0]:
        return
    if _has_old_events_table(con):
        _migrate_events_table(con)
    for ddl in SCHEMA:
        con.execute(ddl)


def _has_old_events_table(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether `events` is still the table of stores made before decision 16."""
    kind = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = 'events' "
        "AND table_catalog = current_database() AND table_schema = current_schema()"
    ).fetchall()
    if not kind or kind[0][0] != "BASE TABLE":
        return False
    generated = con.execute(
        "SELECT is_generated FROM information_schema.columns WHERE table_name = 'events' "
        "AND table_catalog = current_database() AND table_schema = current_schema() AND column_name = 'event_id'"
    ).fetchall()
    if generated != [("ALWAYS",)]:
        raise RuntimeError(
            "this store has a table `events` that lte did not create (no generated event_id column); "
            f"lte keeps events in `{EVENT_LOG}` behind a view named `events`: rename or drop that table"
        )
    return True


def _migrate_events_table(con: duckdb.DuckDBPyConnection) -> None:
    """Old layout: table `events(user_id, item_id, ts, event_type, source, ingested_at, event_id
    VIRTUAL)`. Copy its rows into `event_log` with one batch per (source, ingested_at), i.e. per
    ingestion, then drop it (SCHEMA creates the view). One transaction; one pass over the rows."""
    with transaction(con):
        for ddl in SCHEMA[:2]:
            con.execute(ddl)
        con.execute(f"""INSERT INTO {EVENT_BATCHES}
            SELECT row_number() OVER (ORDER BY ingested_at NULLS FIRST, source NULLS FIRST), source, ingested_at
            FROM (SELECT DISTINCT source, ingested_at FROM events)""")
        copied = con.execute(f"""INSERT INTO {EVENT_LOG}
            SELECT e.user_id, e.item_id, e.ts, e.event_type, b.batch FROM events e JOIN {EVENT_BATCHES} b
            ON b.source IS NOT DISTINCT FROM e.source AND b.ingested_at IS NOT DISTINCT FROM e.ingested_at""").fetchall()
        if copied[0][0] != con.execute("SELECT count(*) FROM events").fetchall()[0][0]:
            raise RuntimeError("migrating `events` to `event_log` lost rows; nothing was changed")
        con.execute("DROP TABLE events")


def _new_batch(con: duckdb.DuckDBPyConnection, source: str) -> int:
    """Number the next insert into event_log and record its source and time (inside its transaction;
    the primary key refuses a number another transaction took first, at commit)."""
    batch = con.execute(f"SELECT coalesce(max(batch), 0) + 1 FROM {EVENT_BATCHES}").fetchall()[0][0]
    con.execute(f"INSERT INTO {EVENT_BATCHES} VALUES (?, ?, now())", [batch, source])
    return int(batch)


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


def _id_expr(text: str, fast: str) -> str:
    """A non-negative integer id from text, or NULL. Rule: digits only after trimming spaces.

    The first branch is the cheap common case (text is exactly the canonical decimal of its value);
    the second is the rule itself, evaluated only for the other rows (e.g. " 7", "007", "x").
    """
    return (f"CASE WHEN {fast} >= 0 AND {fast}::VARCHAR = {text} THEN {fast} "
            f"WHEN ltrim(trim({text}), '0123456789') = '' THEN try_cast(trim({text}) AS BIGINT) END")


# Stage every row of `src` (VARCHAR columns user_id, item_id, timestamp, event_type and a BIGINT
# line_no, NULL when the reader cannot know it) with its typed values and an `ok` flag. The fields
# are kept (as one JSON text) only for rows that are not ok: _REASON_SQL words their reason later
# with the same rules, on those few rows (wording a reason per row here cost as much as the load).
_CLASSIFIED_SQL = f"""
WITH src AS ({{source_select}}),
parsed AS (
    SELECT *,
        try_cast(user_id AS BIGINT) AS u_fast,
        try_cast(item_id AS BIGINT) AS it_fast,
        -- the same value as casting the trimmed text; trimming only when needed is cheaper
        coalesce(try_cast(timestamp AS DOUBLE), try_cast(trim(timestamp) AS DOUBLE)) AS unix_s,
        coalesce(nullif(event_type, ''), '{DEFAULT_EVENT_TYPE}') AS et
    FROM src
),
typed AS (
    SELECT line_no, user_id, item_id, timestamp, event_type, et,
        {_id_expr("user_id", "u_fast")} AS u,
        {_id_expr("item_id", "it_fast")} AS it,
        CASE WHEN unix_s IS NULL THEN try_cast(trim(timestamp) AS TIMESTAMPTZ)
             WHEN isfinite(unix_s) AND abs(unix_s) < {MAX_UNIX_SECONDS} THEN to_timestamp(unix_s)
        END AS ts
    FROM parsed
),
judged AS (
    SELECT *, coalesce(u IS NOT NULL AND it IS NOT NULL AND ts >= TIMESTAMPTZ '{EARLIEST_TS}'
                       AND ts < TIMESTAMPTZ '{LATEST_TS}' AND length(et) <= {MAX_EVENT_TYPE_CHARS}, false) AS ok
    FROM typed
)
SELECT line_no, u, it, ts, et, ok,
    CASE WHEN NOT ok THEN to_json(struct_pack(user_id, item_id, timestamp, event_type))::VARCHAR END AS fields_json
FROM judged
"""
_STAGE_SQL = f"CREATE TEMP TABLE {STAGE_TABLE} AS {_CLASSIFIED_SQL}"

# The reason of each row that is not ok: the first failing rule, in words, with the offending value
# quoted (cut to 40 chars) so a person can see what was wrong. Same rules as _CLASSIFIED_SQL.
_REASON_SQL = f"""
WITH bad AS (
    SELECT rowid - (SELECT min(rowid) FROM {STAGE_TABLE}) AS ordinal, line_no, fields_json,
        fields_json ->> 'user_id' AS user_id, fields_json ->> 'item_id' AS item_id,
        fields_json ->> 'timestamp' AS timestamp, fields_json ->> 'event_type' AS event_type
    FROM {STAGE_TABLE} WHERE NOT ok
),
parsed AS (
    SELECT *,
        CASE WHEN ltrim(trim(user_id), '0123456789') = '' THEN try_cast(trim(user_id) AS BIGINT) END AS u,
        CASE WHEN ltrim(trim(item_id), '0123456789') = '' THEN try_cast(trim(item_id) AS BIGINT) END AS it,
        try_cast(trim(timestamp) AS DOUBLE) AS unix_s,
        coalesce(nullif(event_type, ''), '{DEFAULT_EVENT_TYPE}') AS et
    FROM bad
),
timed AS (
    SELECT *,
        CASE WHEN unix_s IS NULL THEN try_cast(trim(timestamp) AS TIMESTAMPTZ)
             WHEN isfinite(unix_s) AND abs(unix_s) < {MAX_UNIX_SECONDS} THEN to_timestamp(unix_s)
        END AS ts
    FROM parsed
)
SELECT ordinal, line_no,
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
    fields_json
FROM timed
ORDER BY ordinal
"""


def stage_events(con: duckdb.DuckDBPyConnection, source_select: str, params: Sequence = ()) -> int:
    """Classify the rows of `source_select` into the stage table; returns the number of rows staged.

    The stage keeps input order, so `rowid` (minus the first row's) is each row's 0-based ordinal.
    Call inside `utc_session` so zone-less timestamps mean UTC.
    """
    con.execute(f"DROP TABLE IF EXISTS {STAGE_TABLE}")
    return con.execute(_STAGE_SQL.format(source_select=source_select), list(params)).fetchall()[0][0]


def staged_bad_rows(con: duckdb.DuckDBPyConnection) -> list[BadRow]:
    rows = con.execute(_REASON_SQL).fetchall()
    unexplained = [o for o, _, reason, _ in rows if reason is None]
    if unexplained:
        raise RuntimeError(f"row {unexplained[0]} failed validation without a reason: the classifier's two "
                           "rule sets disagree (a bug in lte/events.py); nothing was stored")
    return [BadRow(int(o), None if ln is None else int(ln), r, f) for o, ln, r, f in rows]


class _TimeSegments:
    """Values in scan order cut into strictly increasing segments: the first and last value of each.
    A segment ends where the next value is not larger, or larger by over JUMP_FACTOR median steps
    of the batch (where an insert that did not keep input order joined two distant input blocks)."""

    def __init__(self) -> None:
        self.firsts: list[np.ndarray] = []
        self.lasts: list[np.ndarray] = []
        self.count = 0
        self.previous = None  # the last value seen
        self.open_first = None  # first value of the segment still growing

    def add(self, micros: np.ndarray) -> None:
        steps = np.diff(micros) if self.previous is None else np.diff(micros, prepend=self.previous)
        sample = steps[::16]  # the median step of a sample is enough to spot jumps
        forward = sample[sample > 0]
        jump = JUMP_FACTOR * np.median(forward) if len(forward) else np.inf
        starts = np.flatnonzero((steps <= 0) | (steps > jump)) + (self.previous is None)
        if self.previous is None:
            self.open_first = micros[0]
        if len(starts):
            # The open segment and every segment but the last new one end before a start.
            ended_before = np.array([self.previous] if starts[0] == 0 else [], dtype=micros.dtype)
            self.firsts.append(np.concatenate(([self.open_first], micros[starts[:-1]])))
            self.lasts.append(np.concatenate((ended_before, micros[starts[starts > 0] - 1])))
            self.open_first = micros[starts[-1]]
            self.count += len(starts)
        self.previous = micros[-1]

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        empty = np.empty(0, dtype=np.int64)
        if self.previous is None:
            return empty, empty
        return (np.concatenate([empty, *self.firsts, [self.open_first]]),
                np.concatenate([empty, *self.lasts, [self.previous]]))


def _shared_ranges(firsts: np.ndarray, lasts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-open ranges [start, end) of values covered by two or more segments [first, last]."""
    points = np.concatenate([firsts, lasts + 1])
    deltas = np.concatenate([np.ones_like(firsts), -np.ones_like(lasts)])
    order = np.lexsort((deltas, points))  # by point; at equal points the ends first
    points, coverage = points[order], np.cumsum(deltas[order])
    shared = (coverage[:-1] >= 2) & (points[:-1] < points[1:])  # coverage on [points[i], points[i+1])
    return points[:-1][shared], points[1:][shared]


def _timestamps_distinct(con: duckdb.DuckDBPyConnection, micros_select: str, params: Sequence = ()) -> bool:
    """True when the values (epoch microseconds) of `micros_select` are provably pairwise distinct:
    then no two events are equal. False means unproven (ties, unordered input), not "duplicates".

    Streaming passes in batches (bounded memory). The first cuts the values, in scan order, into
    strictly increasing segments (_TimeSegments; any cut keeps the proof exact). Two equal values
    can then only lie where two or more segments' ranges overlap; if any do (e.g. a few rows DuckDB
    split off at a read-buffer boundary and stored elsewhere), a second pass collects the values in
    those ranges and checks them (at most MAX_CHECKED_TIMES values)."""
    segments = _TimeSegments()
    for batch in con.sql(micros_select, params=list(params)).to_arrow_reader(TIME_BATCH_ROWS):
        if len(batch):
            segments.add(batch.column(0).to_numpy())
        if segments.count > MAX_TIME_SEGMENTS:
            return False
    starts, ends = _shared_ranges(*segments.finish())
    if not len(starts):
        return True
    checked: list[np.ndarray] = []
    n_checked = 0
    in_hull = f"SELECT micros FROM ({micros_select}) t(micros) WHERE micros >= ? AND micros < ?"
    for batch in con.sql(in_hull, params=[*params, int(starts[0]), int(ends[-1])]).to_arrow_reader(TIME_BATCH_ROWS):
        micros = batch.column(0).to_numpy()
        at = np.searchsorted(starts, micros, side="right") - 1  # the shared range starting at or before
        within = micros[(at >= 0) & (micros < ends[np.maximum(at, 0)])]
        checked.append(within)
        n_checked += len(within)
        if n_checked > MAX_CHECKED_TIMES:
            return False
    values = np.sort(np.concatenate(checked))
    return not (values[1:] == values[:-1]).any()


def commit_stage(
    con: duckdb.DuckDBPyConnection, source: str, quarantined: Sequence[QuarantineRow]
) -> tuple[int, int]:
    """Insert the stage's good rows that are not yet stored, and the quarantine rows.

    Returns (accepted, duplicates): duplicates are good rows equal to a stored event or to an
    earlier row of the same input. Must run inside the caller's transaction.
    """
    good, lo, hi = con.execute(
        f"SELECT count(*), min(ts), max(ts) FROM {STAGE_TABLE} WHERE ok"
    ).fetchall()[0]
    accepted = 0
    if good:
        # Dedup costs a hash table over the input (DISTINCT) and over the stored events in its time
        # range (anti-join); each is skipped when provably unnecessary, which is the common case of
        # a time-ordered log of new events. The ts bounds let DuckDB skip old row groups (zone maps).
        stored_in_range = con.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {EVENT_LOG} WHERE ts BETWEEN ? AND ? LIMIT 1)", [lo, hi]
        ).fetchall()[0][0]
        distinct_times = _timestamps_distinct(con, f"SELECT epoch_us(ts) FROM {STAGE_TABLE} WHERE ok")
        rows = (f"SELECT u, it, ts, et FROM {STAGE_TABLE} WHERE ok" if distinct_times
                else f"SELECT DISTINCT u, it, ts, et FROM {STAGE_TABLE} WHERE ok")
        new = f"""WHERE NOT EXISTS (
                SELECT 1 FROM {EVENT_LOG} e
                WHERE e.ts BETWEEN ? AND ? AND e.user_id = s.u AND e.item_id = s.it
                  AND e.ts = s.ts AND e.event_type = s.et
            )""" if stored_in_range else ""
        accepted = con.execute(
            f"INSERT INTO {EVENT_LOG} SELECT u, it, ts, et, ? FROM ({rows}) s {new}",
            [_new_batch(con, source), *([lo, hi] if stored_in_range else [])],
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


def validate_stage_sample(con: duckdb.DuckDBPyConnection) -> None:
    _validate_sample(con, f"SELECT u AS user_id, it AS item_id, ts, et AS event_type FROM {STAGE_TABLE} WHERE ok")


def _validate_sample(con: duckdb.DuckDBPyConnection, events_select: str, params: Sequence = (), n: int = 10_000) -> None:
    """Check accepted rows against `EventSchema` (a sample): guards the SQL classifier's contract."""
    sample = con.execute(f"{events_select} LIMIT {int(n)}", list(params)).df()
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


class AlreadyIngested(Exception):
    """The content was ingested before: found inside the ingestion's transaction, which then rolls back."""

    def __init__(self, file: str, finished_at: datetime):
        self.reason = f"identical content already ingested from {file} at {finished_at:%Y-%m-%d %H:%M:%S}"
        super().__init__(self.reason)


def refuse_known_content(con: duckdb.DuckDBPyConnection, content_hash: str | None) -> None:
    """Raise AlreadyIngested when this content hash was ingested before."""
    previous = previous_ingestion(con, content_hash) if content_hash else None
    if previous:
        raise AlreadyIngested(*previous)


def name_ingested_before(con: duckdb.DuckDBPyConnection, file: str) -> bool:
    """Whether an input under this name was ingested or skipped before (a likely repeat)."""
    return bool(con.execute(
        "SELECT count(*) FROM (SELECT 1 FROM ingestions WHERE file = ? AND status IN (?, ?, ?) LIMIT 1)",
        [file, *DONE_STATUSES, SKIPPED],
    ).fetchall()[0][0])


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


class _NeedsCarefulPath(Exception):
    """The one-pass insert cannot prove this input clean; its transaction is rolled back."""


_FAST_PATH_ABORT = "lte-ingest: row needs the careful path"


@contextmanager
def _any_insertion_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Let DuckDB store this connection's inserted rows in any order: it then appends in parallel
    without re-ordering, 23% less CPU for 10M rows (docs/ingestion.md). Only for the
    one-pass insert (wrap its whole transaction: SET fails inside an aborted one); the careful
    path's stage needs input order, which gives each row its ordinal (line numbers)."""
    con.execute("SET SESSION preserve_insertion_order = false")
    try:
        yield
    finally:
        con.execute("RESET SESSION preserve_insertion_order")  # back to the database's setting


def _insert_directly(
    con: duckdb.DuckDBPyConnection,
    source_select: str,
    params: Sequence,
    source: str,
    locate: Callable[[list[BadRow], int], list[QuarantineRow]],
) -> tuple[int, list[QuarantineRow]]:
    """One pass from the input into `event_log`, for inputs with no bad row and no duplicate.

    Rows must be ok and lie outside the stored events' time span (so none can equal a stored
    event); the first row that is not aborts the statement (error()), so a bad file wastes only
    the pass up to that row. Rows are stored in any order (see _any_insertion_order). Then
    within-input duplicates are ruled out: distinct timestamps (_timestamps_distinct, one
    streaming pass), else an exact DISTINCT count. Any doubt raises _NeedsCarefulPath.
    Returns (rows inserted, rows the reader rejected, via `locate`).
    """
    span_lo, span_hi = con.execute(f"SELECT min(ts), max(ts) FROM {EVENT_LOG}").fetchall()[0]
    # The inserted rows are exactly the events outside the old span (every old event is inside it).
    outside, span = ("(ts < ? OR ts > ?)", [span_lo, span_hi]) if span_lo is not None else ("true", [])
    try:
        inserted = con.execute(
            f"INSERT INTO {EVENT_LOG} SELECT u, it, ts, et, ? "
            f"FROM ({_CLASSIFIED_SQL.format(source_select=source_select)}) "
            f"WHERE CASE WHEN ok AND {outside} THEN true ELSE error('{_FAST_PATH_ABORT}') END",
            [_new_batch(con, source), *params, *span],
        ).fetchall()[0][0]
    except duckdb.InvalidInputException as exc:
        if _FAST_PATH_ABORT in str(exc):
            raise _NeedsCarefulPath from exc
        raise
    new_rows = f"FROM {EVENT_LOG} WHERE {outside}"
    if con.execute(f"SELECT count(*) {new_rows}", span).fetchall()[0][0] != inserted:
        raise _NeedsCarefulPath
    if not _timestamps_distinct(con, f"SELECT epoch_us(ts) {new_rows}", span):
        distinct = con.execute(
            f"SELECT count(*) FROM (SELECT DISTINCT user_id, item_id, ts, event_type {new_rows})", span
        ).fetchall()[0][0]
        if distinct != inserted:
            raise _NeedsCarefulPath
    _validate_sample(con, f"SELECT user_id, item_id, ts, event_type {new_rows}", span)
    return int(inserted), locate([], int(inserted))


def _ingest_carefully(
    con: duckdb.DuckDBPyConnection,
    source_select: str,
    params: Sequence,
    source: str,
    locate: Callable[[list[BadRow], int], list[QuarantineRow]],
    pre_rejected: Sequence[QuarantineRow],
    notify: Callable[[str], None],
) -> tuple[int, int, int, list[QuarantineRow]]:
    """Stage every row, word the bad rows' reasons, dedup exactly. Returns (rows_in, accepted,
    duplicates, quarantined rows)."""
    staged = stage_events(con, source_select, params)
    bad = staged_bad_rows(con)
    # `locate` may add rows the reader never staged (e.g. CSV lines it could not split).
    quarantined = [*pre_rejected, *locate(bad, staged)]
    rows_in = staged + len(quarantined) - len(bad)
    validate_stage_sample(con)
    notify("storing")
    accepted, duplicates = commit_stage(con, source, quarantined)
    drop_stage(con)
    return rows_in, accepted, duplicates, quarantined


def ingest_staged(
    con: duckdb.DuckDBPyConnection,
    source_select: str,
    params: Sequence,
    source: str,
    content_hash: str | None | Callable[[], str | None],
    locate: Callable[[list[BadRow], int], list[QuarantineRow]],
    pre_rejected: Sequence[QuarantineRow] = (),
    on_stage: Callable[[str], None] | None = None,
) -> IngestReport:
    """Validate, quarantine, dedup and store one input in ONE transaction; record it in `ingestions`.

    `locate(bad_rows, staged_count)` turns the classifier's bad rows into verbatim quarantine rows
    (raw text, line number), plus any rows the reader dropped before staging; `pre_rejected` are
    rows the caller already rejected (e.g. invalid JSON lines). rows_in counts staged rows plus all
    of those. A clean input (the common case) is inserted in one pass; any other input, or one the
    fast pass cannot prove clean, is rolled back and staged (bad rows, duplicates: exact results).
    `content_hash` may be a function (e.g. a hash still being computed): it is asked just before
    commit, and content ingested before raises AlreadyIngested (nothing is stored).
    """
    content_hash_of = content_hash if callable(content_hash) else lambda: content_hash
    ensure_schema(con)
    started_at = datetime.now(UTC)
    notify = on_stage or (lambda stage: None)
    with utc_session(con):
        notify("staging")
        try:
            with _any_insertion_order(con), transaction(con):
                accepted, quarantined = _insert_directly(con, source_select, params, source, locate)
                quarantined = [*pre_rejected, *quarantined]
                notify("storing")
                if quarantined:
                    write_quarantine(con, source, quarantined)
                refuse_known_content(con, content_hash_of())
                report = finish_report(source, content_hash_of(), accepted + len(quarantined), accepted, 0,
                                       len(quarantined))
                record_ingestion(con, report, started_at)
                notify("committing")
            return report
        except _NeedsCarefulPath:
            pass
        with transaction(con):
            rows_in, accepted, duplicates, quarantined = _ingest_carefully(
                con, source_select, params, source, locate, pre_rejected, notify)
            refuse_known_content(con, content_hash_of())
            report = finish_report(source, content_hash_of(), rows_in, accepted, duplicates, len(quarantined))
            record_ingestion(con, report, started_at)
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
            locate=lambda bad, staged: [QuarantineRow(b.line_no, b.fields_json, b.reason) for b in bad],
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
