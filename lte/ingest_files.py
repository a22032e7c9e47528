"""Files into the store: CSV/TSV/JSONL/Parquet readers, column mapping, file verdicts, landing scans.

File identity is the sha256 of the bytes: a file whose content was ingested before is skipped,
whatever its name. A file that cannot be read as a whole (empty, binary, wrong header, truncated
last line, not UTF-8) gets a file-level verdict (status "rejected") and nothing of it is stored.
Otherwise every row ends up accepted, duplicate or quarantined (see lte/events.py).

Landing locations are a local directory or an S3 prefix (via lte/storage.py). S3 objects are
downloaded to a local cache first: DuckDB 2.x cannot read s3:// offline (STACK-NOTES section 4).
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import duckdb
import pandas as pd

from lte import catalog, events
from lte.events import BadRow, IngestReport, QuarantineRow

EVENT_COLUMNS = ("user_id", "item_id", "timestamp", "event_type")
REQUIRED_EVENT_COLUMNS = ("user_id", "item_id", "timestamp")
ITEM_COLUMNS = ("item_id", "text", "attributes", "first_seen")
# Accepted spellings of canonical names, so common exports work without --columns.
ALIASES = {"ts": "timestamp", "id": "item_id"}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
DELIMITERS = {"csv": ",", "tsv": "\t"}
MAX_LINE_BYTES = 1 << 20  # a longer line is quarantined ("line longer than ...")
HEAD_BYTES = 1 << 16
SCAN_CHUNK_BYTES = 1 << 20  # scan_csv_records reads this much at a time (then to the line end)
_REJECTS_TABLE, _REJECTS_SCAN = "_lte_csv_rejects", "_lte_csv_scans"


class FileVerdict(Exception):
    """The file as a whole cannot be ingested; `reason` tells the user what to do."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class FileFacts:
    """What the bytes tell: identity (sha256), size, the first HEAD_BYTES and line breaks.

    The sha256 is one pass over the file, optionally in a background thread while the file is
    loaded (`sha256` waits for it); line breaks are counted only when a verdict needs them (a
    header-only file, a truncated last line): counting took two thirds of the hash's time.
    """

    def __init__(self, path: Path, size: int, head: bytes, ends_with_newline: bool, sha256: str | Future[str]):
        self.path, self.size, self.head, self.ends_with_newline = path, size, head, ends_with_newline
        self._sha256 = sha256

    @property
    def sha256(self) -> str:
        return self._sha256 if isinstance(self._sha256, str) else self._sha256.result()

    @cached_property
    def newlines(self) -> int:
        count = 0
        with open(self.path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                count += chunk.count(b"\n")
        return count

    def at_least_newlines(self, n: int) -> bool:
        """Whether the file holds at least n line breaks (decided from the head when it can be)."""
        return self.head.count(b"\n") >= n or self.newlines >= n


@dataclass(frozen=True)
class LandingFile:
    """A file in a landing location; `local_path` is where its bytes are (a cache copy for S3)."""

    uri: str
    local_path: Path
    size: int
    content_hash: str


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_facts(path: Path, hash_in_background: bool = False) -> FileFacts:
    """Facts of a file; with `hash_in_background` the sha256 is computed by a thread (hashlib and
    file reads release the GIL, as DuckDB does while it loads the file)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(HEAD_BYTES)
        fh.seek(max(size - 1, 0))
        last = fh.read(1)
    if hash_in_background:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lte-sha256")
        sha256: str | Future[str] = pool.submit(file_sha256, path)
        pool.shutdown(wait=False)  # its thread ends with the hash
    else:
        sha256 = file_sha256(path)
    return FileFacts(path, size, head, last == b"\n", sha256)


def parse_column_mapping(spec: str | dict[str, str] | None) -> dict[str, str]:
    """'uid=user_id,iid=item_id' -> {'uid': 'user_id', 'iid': 'item_id'} (file name -> canonical)."""
    if spec is None or isinstance(spec, dict):
        return dict(spec or {})
    mapping = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if "=" not in part:
            raise ValueError(f"bad column mapping {part!r}: write FILE_COLUMN=CANONICAL, e.g. uid=user_id")
        source, target = (s.strip() for s in part.split("=", 1))
        mapping[source] = target
    return mapping


def file_format(path: str | Path) -> str | None:
    name = str(path).lower()
    return next((fmt for ext, fmt in FORMATS.items() if name.endswith(ext)), None)


def _check_bytes(facts: FileFacts) -> None:
    head = facts.head
    if facts.size == 0:
        raise FileVerdict("empty file (0 bytes)")
    if head.startswith(b"\x1f\x8b"):
        raise FileVerdict("gzip-compressed file: decompress it first")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileVerdict("UTF-16 encoded file: convert it to UTF-8")
    if b"\x00" in head:
        raise FileVerdict("binary file (contains NUL bytes): expected UTF-8 text")


def _resolve_columns(header: Sequence[str], mapping: dict[str, str], kind: str) -> dict[str, str]:
    """{canonical name: file column} after --columns mapping and aliases; raises FileVerdict."""
    unknown_targets = set(mapping.values()) - set(EVENT_COLUMNS) - set(ITEM_COLUMNS)
    if unknown_targets:
        raise FileVerdict(f"--columns maps to unknown name(s) {sorted(unknown_targets)}; "
                          f"canonical names are {', '.join(EVENT_COLUMNS + ITEM_COLUMNS)}")
    resolved: dict[str, str] = {}
    for column in header:
        canonical = mapping.get(column) or (column if column in EVENT_COLUMNS + ITEM_COLUMNS else ALIASES.get(column))
        if kind == "events" and column == "id" and column not in mapping:
            canonical = None  # 'id' means item_id only in catalog files
        if canonical is None:
            continue
        if canonical in resolved:
            raise FileVerdict(f"columns {resolved[canonical]!r} and {column!r} both map to {canonical!r}")
        resolved[canonical] = column
    required = REQUIRED_EVENT_COLUMNS if kind == "events" else ("item_id", "text")
    missing = [c for c in required if c not in resolved]
    if missing:
        found = ", ".join(header) if header else "nothing"
        hint = " (the first line looks like data: the file needs a header row)" if header and header[0].strip().isdigit() else ""
        raise FileVerdict(
            f"header lacks required column(s) {', '.join(missing)}; found: {found}{hint}. "
            f"Rename them or map them with --columns FILE_COLUMN={missing[0]}"
        )
    return resolved


def _guess_kind(header: Sequence[str], mapping: dict[str, str]) -> str:
    names = {mapping.get(c, ALIASES.get(c, c)) for c in header}
    return "items" if "text" in names and "user_id" not in names else "events"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------------------------
# CSV / TSV
# ---------------------------------------------------------------------------------------------

def _csv_header(facts: FileFacts, delimiter: str) -> list[str]:
    first = facts.head.split(b"\n", 1)[0].rstrip(b"\r")
    if first.startswith(b"\xef\xbb\xbf"):
        first = first[3:]
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileVerdict(f"header line is not UTF-8 ({exc.reason} at byte {exc.start}): convert the file to UTF-8") from exc
    if not text.strip():
        raise FileVerdict("first line is empty: expected a header row")
    return [c.strip() for c in next(csv.reader([text], delimiter=delimiter))]


_REJECT_REASONS = {
    "MISSING COLUMNS": "missing field(s): fewer columns than the header",
    "TOO MANY COLUMNS": "too many columns: more fields than the header",
    "UNQUOTED VALUE": "malformed quoting (a quoted value has text after its closing quote)",
    "LINE SIZE OVER MAXIMUM": f"line longer than {MAX_LINE_BYTES} bytes",
    "INVALID ENCODING": "invalid encoding: the line is not UTF-8",
    "INVALID UNICODE": "invalid encoding: the line is not UTF-8",
}


def _csv_source_select(path: Path, header: list[str], resolved: dict[str, str], delimiter: str) -> tuple[str, list]:
    columns = {name: "VARCHAR" for name in header}
    picks = [
        f"{_quote_ident(resolved[c])} AS {c}" if c in resolved else f"NULL::VARCHAR AS {c}" for c in EVENT_COLUMNS
    ]
    select = (
        f"SELECT NULL::BIGINT AS line_no, {', '.join(picks)} FROM read_csv(?, header = true, delim = ?, "
        f"quote = '\"', escape = '\"', columns = ?, all_varchar = true, auto_detect = false, "
        f"max_line_size = {MAX_LINE_BYTES}, store_rejects = true, "
        f"rejects_table = '{_REJECTS_TABLE}', rejects_scan = '{_REJECTS_SCAN}')"
    )
    return select, [str(path), delimiter, columns]


def _csv_rejects(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """{DuckDB record number: reason} for records DuckDB's reader could not split into fields."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND temporary", [_REJECTS_TABLE]
    ).fetchall()[0][0]
    if not exists:
        return {}
    rows = con.execute(
        f"SELECT line, first(error_type ORDER BY column_idx), first(error_message ORDER BY column_idx) "
        f"FROM {_REJECTS_TABLE} GROUP BY line ORDER BY line"
    ).fetchall()
    for line, _kind, message in rows:
        if "unterminated quote" in (message or "").lower():
            # Everything after the quote was swallowed into one broken record: no row-level repair.
            raise FileVerdict(f"unterminated quote on line {line}: the rest of the file cannot be split "
                              "into rows; fix the quoting and ingest again")
    return {int(line): _REJECT_REASONS.get(kind, f"unreadable line ({kind.lower()})") for line, kind, _ in rows}


def _drop_rejects(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"DROP TABLE IF EXISTS {_REJECTS_TABLE}")
    con.execute(f"DROP TABLE IF EXISTS {_REJECTS_SCAN}")


def _decode(raw: bytes) -> str:
    # Verbatim where possible; bytes that are not UTF-8 are kept visible as \xNN escapes.
    return raw.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")


def _any_in(sorted_values: list[int], lo: int, hi: int) -> bool:
    """Whether some value v of the sorted list has lo <= v < hi."""
    i = bisect.bisect_left(sorted_values, lo)
    return i < len(sorted_values) and sorted_values[i] < hi


def scan_csv_records(path: Path, reject_lines: set[int], ordinals: set[int]) -> tuple[dict[int, tuple[int, str]], dict[int, tuple[int, str]], int]:
    """Walk the file's records the way DuckDB's reader does, to find verbatim text by position.

    A record is one line, or several when a quoted field holds newlines (tracked by quote parity).
    DuckDB numbers records, not physical lines, in its rejects table (a blank line counts, a
    multi-line record counts once); we report the physical line where a record starts.
    Returns ({staged ordinal: (line_no, raw)} for `ordinals`, {DuckDB record number: (line_no, raw)}
    for `reject_lines`, number of records DuckDB staged).

    The file is read in chunks ending at a line break. A chunk without quotes holds one record per
    line, so when no wanted record falls in it, it is counted with bytes operations, not walked.
    """
    found: dict[int, tuple[int, str]] = {}
    rejected: dict[int, tuple[int, str]] = {}
    wanted_records, wanted_ordinals = sorted(reject_lines), sorted(ordinals)
    ordinal = record_no = line_no = 0
    record: list[bytes] = []
    quotes = start = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(SCAN_CHUNK_BYTES):
            chunk += fh.readline()
            if not record and b'"' not in chunk and b"\r\r" not in chunk:
                lines = chunk.split(b"\n")
                if lines[-1] == b"":
                    lines.pop()  # the chunk ended with a line break
                blank = lines.count(b"") + lines.count(b"\r")
                staged = len(lines) - blank - (record_no == 0)  # record 1 is the header
                if not (_any_in(wanted_records, record_no + 1, record_no + len(lines) + 1)
                        or _any_in(wanted_ordinals, ordinal, ordinal + staged)):
                    line_no, record_no, ordinal = line_no + len(lines), record_no + len(lines), ordinal + staged
                    continue
            for line in io.BytesIO(chunk):
                line_no += 1
                if not record:
                    start, quotes = line_no, 0
                record.append(line)
                quotes += line.count(b'"')
                if quotes % 2:
                    continue  # inside a quoted field that continues on the next line
                raw, record = b"".join(record), []
                record_no += 1
                if record_no == 1 or not raw.strip(b"\r\n"):
                    continue  # the header, or a blank line (DuckDB skips both)
                if record_no in reject_lines:
                    rejected[record_no] = (start, _decode(raw))
                    continue
                if ordinal in ordinals:
                    found[ordinal] = (start, _decode(raw))
                ordinal += 1
    if record:  # an open quote ran to the end of the file
        record_no += 1
        if record_no in reject_lines:
            rejected[record_no] = (start, _decode(b"".join(record)))
    return found, rejected, ordinal


def _ingest_csv(con, path: Path, facts: FileFacts, label: str, mapping: dict[str, str], kind: str,
                fmt: str, on_stage) -> IngestReport:
    delimiter = DELIMITERS[fmt]
    header = _csv_header(facts, delimiter)
    if len(set(header)) != len(header):
        raise FileVerdict(f"header repeats a column name: {', '.join(header)}")
    kind = _guess_kind(header, mapping) if kind == "auto" else kind
    resolved = _resolve_columns(header, mapping, kind)
    if kind == "items":
        return _ingest_items_frame(con, _read_items_csv(con, path, header, resolved, delimiter), label, facts.sha256)
    if not facts.at_least_newlines(2) and (facts.ends_with_newline or not facts.at_least_newlines(1)):
        raise FileVerdict("no data rows: the file holds only a header")

    select, params = _csv_source_select(path, header, resolved, delimiter)

    def locate(bad: list[BadRow], staged: int) -> list[QuarantineRow]:
        reject_reasons = _csv_rejects(con)
        if not bad and not reject_reasons:
            return []
        found, rejected_raw, seen = scan_csv_records(path, set(reject_reasons), {b.ordinal for b in bad})
        if seen != staged:
            raise RuntimeError(
                f"{label}: found {seen} records but DuckDB staged {staged}; cannot place quarantined "
                "rows on their lines. Please report this file."
            )
        rows = [QuarantineRow(*rejected_raw.get(record, (None, "")), reason) for record, reason in reject_reasons.items()]
        rows += [QuarantineRow(*found[b.ordinal], b.reason) for b in bad]
        if not facts.ends_with_newline and facts.newlines + 1 in {r.line_no for r in rows}:
            raise FileVerdict(
                f"truncated last line {facts.newlines + 1} (no final newline and the row is incomplete): "
                "the file looks cut off; re-upload the complete file"
            )
        encoding_rows = sum(r.reason.startswith("invalid encoding") for r in rows)
        if encoding_rows and encoding_rows == staged + len(reject_reasons):
            raise FileVerdict("no line is valid UTF-8 (e.g. latin-1 text): convert the file to UTF-8")
        return sorted(rows, key=lambda r: r.line_no or 0)

    try:
        return events.ingest_staged(con, select, params, label, lambda: facts.sha256, locate, on_stage=on_stage)
    finally:
        _drop_rejects(con)


# ---------------------------------------------------------------------------------------------
# JSON Lines and Parquet
# ---------------------------------------------------------------------------------------------

def _ingest_jsonl(con, path: Path, facts: FileFacts, label: str, mapping: dict[str, str], kind: str, on_stage) -> IngestReport:
    """JSON Lines: parsed in Python (one object per line), then staged as text like CSV rows."""
    if facts.size == 0:
        raise FileVerdict("empty file (0 bytes)")
    pre_rejected: list[QuarantineRow] = []
    columns: dict[str, list] = {c: [] for c in ("line_no", *EVENT_COLUMNS)}
    raw_by_line: dict[int, str] = {}
    items_rows: list[dict] = []
    with open(path, "rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            raw = _decode(line)
            try:
                obj = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                pre_rejected.append(QuarantineRow(line_no, raw, "invalid encoding: the line is not UTF-8"))
                continue
            except json.JSONDecodeError as exc:
                pre_rejected.append(QuarantineRow(line_no, raw, f"invalid JSON: {exc.msg} at column {exc.colno}"))
                continue
            if not isinstance(obj, dict):
                pre_rejected.append(QuarantineRow(line_no, raw, "not a JSON object"))
                continue
            obj = {mapping.get(k, ALIASES.get(k, k) if not (k == "id" and kind != "items") else k): v for k, v in obj.items()}
            if kind == "auto":
                kind = "items" if "text" in obj and "user_id" not in obj else "events"
            if kind == "items":
                items_rows.append({"line_no": line_no, "raw": raw, **obj})
                continue
            nested = [k for k in EVENT_COLUMNS if isinstance(obj.get(k), (dict, list))]
            if nested:
                pre_rejected.append(QuarantineRow(line_no, raw, f"field {nested[0]} is not a scalar"))
                continue
            raw_by_line[line_no] = raw
            columns["line_no"].append(line_no)
            for c in EVENT_COLUMNS:
                value = obj.get(c)
                columns[c].append(None if value is None else (value if isinstance(value, str) else json.dumps(value)))
    if kind == "items":
        return _ingest_items_frame(con, pd.DataFrame(items_rows), label, facts.sha256, pre_rejected)
    if not columns["line_no"] and not pre_rejected:
        raise FileVerdict("no data rows: the file holds no JSON objects")
    if columns["line_no"] and all(v is None for v in columns["user_id"]) and all(v is None for v in columns["timestamp"]):
        raise FileVerdict("no object has user_id or timestamp keys; map your keys with --columns KEY=user_id,...")
    if not facts.ends_with_newline and pre_rejected and pre_rejected[-1].line_no == facts.newlines + 1:
        raise FileVerdict(f"truncated last line {facts.newlines + 1} (no final newline and invalid JSON): re-upload the complete file")
    frame = pd.DataFrame({"line_no": pd.array(columns["line_no"], dtype="int64"),
                          **{c: pd.array(columns[c], dtype=object) for c in EVENT_COLUMNS}})
    con.register("_lte_jsonl_rows", frame)
    try:
        return events.ingest_staged(
            con,
            "SELECT line_no::BIGINT AS line_no, user_id::VARCHAR AS user_id, item_id::VARCHAR AS item_id, "
            "timestamp::VARCHAR AS timestamp, event_type::VARCHAR AS event_type FROM _lte_jsonl_rows",
            [], label, facts.sha256,
            locate=lambda bad, staged: [QuarantineRow(b.line_no, raw_by_line[b.line_no], b.reason) for b in bad],
            pre_rejected=pre_rejected, on_stage=on_stage,
        )
    finally:
        con.unregister("_lte_jsonl_rows")


def _ingest_parquet(con, path: Path, facts: FileFacts, label: str, mapping: dict[str, str], kind: str, on_stage) -> IngestReport:
    """Parquet: typed columns are cast to text and classified like CSV; line_no = 1-based row number."""
    try:
        types = dict((r[0], r[1]) for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall())
    except duckdb.Error as exc:
        raise FileVerdict(f"not a readable Parquet file: {str(exc).splitlines()[0]}") from exc
    header = list(types)
    kind = _guess_kind(header, mapping) if kind == "auto" else kind
    resolved = _resolve_columns(header, mapping, kind)
    if kind == "items":
        frame = con.execute(
            "SELECT file_row_number + 1 AS line_no, to_json(t)::VARCHAR AS raw, "
            + ", ".join(f"{_quote_ident(resolved[c])}::VARCHAR AS {c}" for c in ITEM_COLUMNS if c in resolved)
            + " FROM read_parquet(?, file_row_number = true) t", [str(path)]
        ).df()
        return _ingest_items_frame(con, frame, label, facts.sha256)
    ts_column = _quote_ident(resolved["timestamp"])
    # Typed timestamps become exact Unix seconds; zone-less ones are UTC (classified in a UTC session).
    ts_text = (f"epoch_us({ts_column}::TIMESTAMPTZ)::DOUBLE / 1e6" if types[resolved["timestamp"]].startswith("TIMESTAMP")
               else ts_column)
    picks = [
        (f"({ts_text})::VARCHAR AS timestamp" if c == "timestamp" else f"{_quote_ident(resolved[c])}::VARCHAR AS {c}")
        if c in resolved else f"NULL::VARCHAR AS {c}"
        for c in EVENT_COLUMNS
    ]
    select = f"SELECT (file_row_number + 1)::BIGINT AS line_no, {', '.join(picks)} FROM read_parquet(?, file_row_number = true)"

    def locate(bad: list[BadRow], staged: int) -> list[QuarantineRow]:
        if not bad:
            return []
        wanted = [b.line_no - 1 for b in bad]
        raw = dict(con.execute(
            "SELECT file_row_number + 1, to_json(t)::VARCHAR FROM read_parquet(?, file_row_number = true) t "
            "WHERE file_row_number IN (SELECT unnest(?::BIGINT[]))", [str(path), wanted]
        ).fetchall())
        return [QuarantineRow(b.line_no, raw[b.line_no], b.reason) for b in bad]

    return events.ingest_staged(con, select, [str(path)], label, lambda: facts.sha256, locate, on_stage=on_stage)


# ---------------------------------------------------------------------------------------------
# Item catalog files (item_id, text, [attributes], [first_seen])
# ---------------------------------------------------------------------------------------------

def _read_items_csv(con, path: Path, header: list[str], resolved: dict[str, str], delimiter: str) -> pd.DataFrame:
    """Catalog files are small: read whole, with line numbers and verbatim lines."""
    frame = con.execute(
        "SELECT * FROM read_csv(?, header = true, delim = ?, columns = ?, all_varchar = true, auto_detect = false, "
        f"store_rejects = true, rejects_table = '{_REJECTS_TABLE}', rejects_scan = '{_REJECTS_SCAN}')",
        [str(path), delimiter, {name: "VARCHAR" for name in header}],
    ).df()
    reject_reasons = _csv_rejects(con)
    _drop_rejects(con)
    found, rejected_raw, seen = scan_csv_records(path, set(reject_reasons), set(range(len(frame))))
    if seen != len(frame):
        raise RuntimeError(f"{path}: found {seen} records but DuckDB read {len(frame)}; please report this file")
    out = pd.DataFrame({c: frame[resolved[c]] if c in resolved else None for c in ITEM_COLUMNS})
    out["line_no"] = [found[i][0] for i in range(len(frame))]
    out["raw"] = [found[i][1] for i in range(len(frame))]
    out.attrs["pre_rejected"] = [QuarantineRow(*rejected_raw.get(record, (None, "")), reason)
                                 for record, reason in reject_reasons.items()]
    return out


def _item_reason(row) -> str | None:
    item_id, text, attributes = row.get("item_id"), row.get("text"), row.get("attributes")
    if item_id is None or str(item_id).strip() == "":
        return "missing item_id"
    if not str(item_id).strip().isdigit():
        return f'item_id is not a non-negative integer: "{str(item_id)[:40]}"'
    if text is None or not str(text).strip():
        return "missing text"
    if attributes not in (None, "") and not (isinstance(attributes, str) and _is_json_object(attributes)):
        return "attributes is not a JSON object"
    return None


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _ingest_items_frame(con, frame: pd.DataFrame, label: str, content_hash: str,
                        pre_rejected: Sequence[QuarantineRow] = ()) -> IngestReport:
    """Validate catalog rows, quarantine bad ones and add new items via catalog.upsert_items."""
    pre_rejected = [*pre_rejected, *frame.attrs.get("pre_rejected", [])]
    started_at = datetime.now(UTC)
    records = frame.to_dict("records")
    bad, good = [], []
    for rec in records:
        if isinstance(rec.get("attributes"), (dict, list)):
            rec["attributes"] = json.dumps(rec["attributes"])
        reason = _item_reason(rec)
        (bad if reason else good).append((rec, reason))
    quarantined = [*pre_rejected, *(QuarantineRow(r["line_no"], r["raw"], reason) for r, reason in bad)]
    items = pd.DataFrame(
        {
            "item_id": [int(str(r["item_id"]).strip()) for r, _ in good],
            "text": [str(r["text"]) for r, _ in good],
            "attributes": [r.get("attributes") or "{}" for r, _ in good],
            "first_seen": pd.to_datetime([r.get("first_seen") or started_at for r, _ in good], utc=True, format="mixed"),
        }
    ).drop_duplicates("item_id")
    events.ensure_schema(con)
    with events.transaction(con):
        events.refuse_known_content(con, content_hash)
        added = catalog.upsert_items(con, items) if len(items) else 0
        if quarantined:
            events.write_quarantine(con, label, quarantined)
        report = events.finish_report(label, content_hash, len(records) + len(pre_rejected), added,
                                      len(good) - added, len(quarantined))
        events.record_ingestion(con, report, started_at)
    return report


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

def ingest_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    label: str | None = None,
    columns: str | dict[str, str] | None = None,
    kind: str = "auto",
    on_stage: Callable[[str], None] | None = None,
) -> IngestReport:
    """Ingest one local file (events or an item catalog) exactly once by content hash.

    `label` names the file in reports, quarantine and `ingestions` (default: the path).
    `kind` is "events", "items" or "auto" (items when the header has `text` and no `user_id`).
    Never raises for bad content: a bad file gets status "rejected" with a reason.
    """
    path = Path(path)
    label = label or str(path)
    mapping = parse_column_mapping(columns)
    events.ensure_schema(con)
    started_at = datetime.now(UTC)
    fmt = file_format(path)
    # A name ingested before is likely the same content again: hash first and skip at once. Else the
    # hash runs while the file loads, and known content is refused just before commit (rollback).
    hash_first = events.name_ingested_before(con, label)
    try:
        if not path.is_file():
            raise FileVerdict(f"no such file: {path}")
        facts = file_facts(path, hash_in_background=not hash_first)
        if hash_first:
            events.refuse_known_content(con, facts.sha256)
    except (FileVerdict, OSError) as exc:
        report = IngestReport(label, None, 0, 0, 0, 0, events.REJECTED, getattr(exc, "reason", str(exc)))
        events.record_ingestion(con, report, started_at)
        return report
    except events.AlreadyIngested as known:
        report = IngestReport(label, facts.sha256, 0, 0, 0, 0, events.SKIPPED, known.reason)
        events.record_ingestion(con, report, started_at)
        return report
    try:
        if fmt is None:
            raise FileVerdict(f"unsupported file type {path.suffix or '(none)'}: use .csv, .tsv, .jsonl/.ndjson or .parquet")
        if fmt != "parquet":
            _check_bytes(facts)
        if fmt in DELIMITERS:
            return _ingest_csv(con, path, facts, label, mapping, kind, fmt, on_stage)
        if fmt == "jsonl":
            return _ingest_jsonl(con, path, facts, label, mapping, kind, on_stage)
        return _ingest_parquet(con, path, facts, label, mapping, kind, on_stage)
    except FileVerdict as verdict:
        report = IngestReport(label, facts.sha256, 0, 0, 0, 0, events.REJECTED, verdict.reason)
    except events.AlreadyIngested as known:
        report = IngestReport(label, facts.sha256, 0, 0, 0, 0, events.SKIPPED, known.reason)
    events.record_ingestion(con, report, started_at)
    return report


def list_landing(landing_uri: str, endpoint_url: str | None = None, cache_dir: Path | None = None) -> list[LandingFile]:
    """Supported files under a local directory or s3://bucket/prefix, each with its content hash.

    S3 objects are downloaded once into `cache_dir` (keyed by ETag, so a changed object is fetched
    again); local files are hashed in place.
    """
    from lte.storage import LocalStore, S3Store, open_store

    if landing_uri.startswith("s3://"):
        store = open_store(landing_uri, Path("."), endpoint_url=endpoint_url)
        assert isinstance(store, S3Store)
        cache = Path(cache_dir or Path.home() / ".cache" / "lte-landing")
        found = []
        for key in store.list():
            if file_format(key) is None or key.rsplit("/", 1)[-1].startswith("."):
                continue
            head = store.client.head_object(Bucket=store.bucket, Key=store._key(key))
            etag = head["ETag"].strip('"')
            local = cache / store.bucket / store._key(key) / etag / Path(key).name
            if not local.exists():
                store.get_file(key, local)
            found.append(LandingFile(store.uri(key), local, local.stat().st_size, file_sha256(local)))
        return found
    root = Path(landing_uri.removeprefix("file://"))
    if root.is_file():
        return [LandingFile(str(root), root, root.stat().st_size, file_sha256(root))]
    store = LocalStore(root)
    return [
        LandingFile(str(store.local_path(key)), store.local_path(key), store.local_path(key).stat().st_size,
                    file_sha256(store.local_path(key)))
        for key in store.list()
        if file_format(key) is not None and not Path(key).name.startswith(".")
    ]


def pending_files(landing_uri: str, con: duckdb.DuckDBPyConnection, endpoint_url: str | None = None,
                  cache_dir: Path | None = None) -> list[LandingFile]:
    """Landing files whose content hash has no recorded verdict yet (what a sensor should ingest).

    Two files with identical bytes count once (the first by name).
    """
    known = events.known_content_hashes(con)
    pending, seen = [], set()
    for f in sorted(list_landing(landing_uri, endpoint_url, cache_dir), key=lambda f: f.uri):
        if f.content_hash not in known and f.content_hash not in seen:
            seen.add(f.content_hash)
            pending.append(f)
    return pending


def ingest_path(
    con: duckdb.DuckDBPyConnection,
    path_or_uri: str | Path,
    columns: str | dict[str, str] | None = None,
    kind: str = "auto",
    endpoint_url: str | None = None,
    cache_dir: Path | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> list[IngestReport]:
    """Ingest a file, a directory (every supported file in it) or an s3:// object or prefix.

    One report per file, in name order. Files already ingested (same content) report "skipped".
    """
    target = str(path_or_uri)
    if not target.startswith("s3://") and not Path(target).exists():
        return [ingest_file(con, Path(target), columns=columns, kind=kind)]  # -> "no such file" verdict
    files = list_landing(target, endpoint_url, cache_dir)
    return [ingest_file(con, f.local_path, label=f.uri, columns=columns, kind=kind, on_stage=on_stage)
            for f in sorted(files, key=lambda f: f.uri)]


def ingest_landing_file(con: duckdb.DuckDBPyConnection, landing_file: LandingFile,
                        columns: str | dict[str, str] | None = None, kind: str = "auto") -> IngestReport:
    """Ingest one file returned by `pending_files` (the sensor's unit of work)."""
    return ingest_file(con, landing_file.local_path, label=landing_file.uri, columns=columns, kind=kind)


def summarize(reports: Iterable[IngestReport]) -> dict:
    """Totals over reports, with the overall quarantine rate (for asset metadata and checks)."""
    reports = list(reports)
    totals = {k: sum(getattr(r, k) for r in reports) for k in ("rows_in", "accepted", "duplicates", "quarantined")}
    totals["files"] = len(reports)
    totals["rejected_files"] = sum(r.status == events.REJECTED for r in reports)
    totals["quarantine_rate"] = totals["quarantined"] / totals["rows_in"] if totals["rows_in"] else 0.0
    return totals


__all__ = [
    "FileVerdict", "LandingFile", "file_facts", "ingest_file", "ingest_landing_file", "ingest_path",
    "list_landing", "parse_column_mapping", "pending_files", "scan_csv_records", "summarize",
]
