"""File ingestion: nasty files, formats, mapping, catalogs, landing (local + S3), concurrency, crashes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from lte import events, ingest_files

PY = sys.executable
HEADER = "user_id,item_id,timestamp,event_type\n"
CLI = "import lte.cli.ingest; from lte.cli import main; main()"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def canonical_csv(path: Path, n: int, offset: int = 0) -> Path:
    with open(path, "w") as fh:
        fh.write(HEADER)
        for i in range(offset, offset + n):
            fh.write(f"{i % 97},{i % 89},{1_700_000_000 + i},view\n")
    return path


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.csv", b"", "empty file"),
        ("header_only.csv", HEADER, "only a header"),
        ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        ("gzip.csv", b"\x1f\x8b\x08\x00rest", "gzip"),
        ("utf16.csv", HEADER.encode("utf-16"), "UTF-16"),
        ("wrong_header.csv", "uid,iid,when\n1,2,3\n", "header lacks required column(s) user_id, item_id, timestamp"),
        ("no_header.csv", "1,2,1700000000\n3,4,1700000001\n", "looks like data"),
        ("truncated.csv", HEADER + "1,2,1700000000,view\n3,4,17000", "truncated last line 3"),
        ("latin1.csv", HEADER.encode() + "1,2,1700000000,caf\xe9\n".encode("latin-1"), "no line is valid UTF-8"),
        ("unterminated.csv", HEADER + '1,2,"1700000000,view\n3,4,1700000001,view\n', "unterminated quote on line 2"),
        ("notes.txt", "hello", "unsupported file type"),
        ("bad.parquet", b"PAR1 not really", "not a readable Parquet file"),
    ],
)
def test_unreadable_files_get_a_verdict_and_store_nothing(con, tmp_path, name, content, reason):
    report = ingest_files.ingest_file(con, write(tmp_path, name, content))
    assert report.status == events.REJECTED, report
    assert reason in report.reason
    assert events.event_count(con) == 0
    assert con.execute("SELECT count(*) FROM quarantine").fetchall()[0][0] == 0
    assert con.execute("SELECT status, reason FROM ingestions").fetchall() == [(events.REJECTED, report.reason)]


def test_bad_rows_are_quarantined_verbatim_with_line_numbers(con, tmp_path):
    lines = [
        "1,10,1700000000,view",  # 2 ok
        "",  # 3 blank: not a row
        "2,11,1700000001,view,extra",  # 4 too many columns
        "3,12",  # 5 missing fields
        "x,13,1700000002,view",  # 6 bad id
        '4,14,"2024-01-01T00:00:00Z","say ""hi"""',  # 7 ok, quoted
        "5,15,soon,view",  # 8 bad timestamp
        '6,16,1700000003,"two\nlines"',  # 9-10 ok, a quoted newline
        "7,17,1700000004,caf\udce9",  # 11 invalid UTF-8 (latin-1 byte)
        "1,10,1700000000,view",  # 12 duplicate of line 2
        "8,18,1700000005,view",  # 13 ok, no final newline
    ]
    body = (HEADER + "\n".join(lines)).encode("utf-8", errors="surrogateescape")
    report = ingest_files.ingest_file(con, write(tmp_path, "mixed.csv", body), label="mixed.csv")
    assert (report.rows_in, report.accepted, report.duplicates, report.quarantined) == (10, 4, 1, 5)
    assert report.status == events.QUARANTINED_ROWS
    rows = con.execute("SELECT line_no, raw, reason FROM quarantine ORDER BY line_no").fetchall()
    assert [r[0] for r in rows] == [4, 5, 6, 8, 11]
    assert rows[0][1:] == ("2,11,1700000001,view,extra", "too many columns: more fields than the header")
    assert rows[1][2].startswith("missing field")
    assert rows[2][2] == 'user_id is not a non-negative integer: "x"'
    assert rows[3][2].startswith('unparseable timestamp "soon"')
    assert rows[4][1] == "7,17,1700000004,caf\\xe9" and "not UTF-8" in rows[4][2]
    stored = dict(con.execute("SELECT user_id, event_type FROM events").fetchall())
    assert stored[4] == 'say "hi"' and stored[6] == "two\nlines"
    logged = con.execute("SELECT file, rows_in, accepted, duplicates, quarantined, status FROM ingestions").fetchall()
    assert logged == [("mixed.csv", 10, 4, 1, 5, events.QUARANTINED_ROWS)]


def test_same_file_twice_is_skipped_and_known_events_are_duplicates(con, tmp_path):
    path = canonical_csv(tmp_path / "a.csv", 500)
    first = ingest_files.ingest_file(con, path)
    assert (first.accepted, first.status) == (500, events.OK)
    again = ingest_files.ingest_file(con, path)
    assert again.status == events.SKIPPED and "already ingested" in again.reason
    assert again.content_hash == first.content_hash
    overlap = canonical_csv(tmp_path / "b.csv", 300, offset=400)  # 100 known + 200 new
    third = ingest_files.ingest_file(con, overlap)
    assert (third.accepted, third.duplicates) == (200, 100)
    assert events.event_count(con) == 700


def test_same_content_under_a_new_name_is_refused_before_commit(con, tmp_path, monkeypatch):
    """A new name is loaded while its sha256 is computed; known content is found before commit,
    rolled back, and reported as skipped, as when the name was known and the hash came first."""
    first = ingest_files.ingest_file(con, canonical_csv(tmp_path / "a.csv", 500))
    copy = tmp_path / "copy.csv"
    copy.write_bytes((tmp_path / "a.csv").read_bytes())
    hashed_in_background = []
    facts = ingest_files.file_facts
    monkeypatch.setattr(ingest_files, "file_facts",
                        lambda path, hash_in_background=False: hashed_in_background.append(hash_in_background)
                        or facts(path, hash_in_background))
    again = ingest_files.ingest_file(con, copy)
    assert hashed_in_background == [True]
    assert again.status == events.SKIPPED and str(tmp_path / "a.csv") in again.reason
    assert again.content_hash == first.content_hash
    assert events.event_count(con) == 500
    assert con.execute(f"SELECT count(*) FROM {events.EVENT_BATCHES}").fetchall() == [(1,)]
    assert con.execute("SELECT status FROM ingestions ORDER BY finished_at").fetchall() == [("ok",), ("skipped",)]


def _count_careful_passes(monkeypatch) -> list[str]:
    """Record each input that needed the staged (careful) path instead of the one-pass insert."""
    calls: list[str] = []
    careful = events._ingest_carefully

    def spy(con, source_select, params, source, *rest):
        calls.append(source)
        return careful(con, source_select, params, source, *rest)

    monkeypatch.setattr(events, "_ingest_carefully", spy)
    return calls


def test_one_pass_for_clean_files_and_exact_fallback_otherwise(con, tmp_path, monkeypatch):
    careful = _count_careful_passes(monkeypatch)
    first = ingest_files.ingest_file(con, canonical_csv(tmp_path / "day1.csv", 300), label="day1")
    # Unordered times, no duplicates, all after the stored span: still one pass (DISTINCT check).
    unordered = write(tmp_path, "day2.csv", HEADER + "".join(f"{i},1,{1_800_000_000 - i},view\n" for i in range(50)))
    second = ingest_files.ingest_file(con, unordered, label="day2")
    assert careful == [] and (first.accepted, second.accepted) == (300, 50)
    # A within-file duplicate (equal timestamps) is found by the exact path and counted once.
    repeated = write(tmp_path, "day3.csv", HEADER + "5,5,1900000000,view\n6,6,1900000001,view\n5,5,1900000000,view\n")
    third = ingest_files.ingest_file(con, repeated, label="day3")
    assert careful == ["day3"] and (third.accepted, third.duplicates, third.quarantined) == (2, 1, 0)
    # Events on the stored span's edge: one stored already (duplicate), one new despite the equal time.
    edge = write(tmp_path, "day4.csv", HEADER + "6,6,1900000001,view\n7,7,1900000001,view\n")
    fourth = ingest_files.ingest_file(con, edge, label="day4")
    assert careful == ["day3", "day4"] and (fourth.accepted, fourth.duplicates) == (1, 1)
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchall() == [(353, 353)]
    logged = con.execute("SELECT sum(rows_in), sum(accepted + duplicates + quarantined) FROM ingestions").fetchall()
    assert logged == [(355, 355)]


def test_clean_rows_after_rejected_lines_take_one_pass(con, tmp_path, monkeypatch):
    """Lines the CSV reader cannot split are quarantined without giving up the one-pass insert."""
    careful = _count_careful_passes(monkeypatch)
    body = HEADER + "1,1,1700000000,view\n2,2,1700000001,view,extra\n3,3,1700000002,view\n"
    report = ingest_files.ingest_file(con, write(tmp_path, "r.csv", body))
    assert careful == [] and (report.rows_in, report.accepted, report.quarantined) == (3, 2, 1)
    assert con.execute("SELECT line_no, raw FROM quarantine").fetchall() == [(3, "2,2,1700000001,view,extra")]


def _reference_scan(path: Path, reject_lines: set[int], ordinals: set[int]):
    """scan_csv_records' rules, line by line (the unoptimised definition)."""
    found, rejected, ordinal, record_no, record, quotes, start = {}, {}, 0, 0, [], 0, 0
    with open(path, "rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not record:
                start, quotes = line_no, 0
            record.append(line)
            quotes += line.count(b'"')
            if quotes % 2:
                continue
            raw, record = b"".join(record), []
            record_no += 1
            if record_no == 1 or not raw.strip(b"\r\n"):
                continue
            if record_no in reject_lines:
                rejected[record_no] = (start, raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace"))
                continue
            if ordinal in ordinals:
                found[ordinal] = (start, raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace"))
            ordinal += 1
    if record:
        record_no += 1
        if record_no in reject_lines:
            rejected[record_no] = (start, b"".join(record).rstrip(b"\r\n").decode("utf-8", "backslashreplace"))
    return found, rejected, ordinal


PIECES = [b"1,2,3,view\n", b"\n", b"\r\n", b'4,5,"a\nb",x\n', b"x,y\r\n", b"7,8,9,\xe9\n", b"\r\r\n",
          b'5,"open\n', b"1,2\n"]


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=30), cut_last_newline=st.booleans(),
       chunk=st.sampled_from([1, 3, 16, 64, 1 << 20]), wanted=st.sets(st.integers(0, 33), max_size=5))
def test_chunked_record_scan_matches_the_line_by_line_rules(tmp_path_factory, monkeypatch, pieces, cut_last_newline,
                                                            chunk, wanted):
    body = HEADER.encode() + b"".join(pieces)
    path = tmp_path_factory.mktemp("scan") / "f.csv"
    path.write_bytes(body[:-1] if cut_last_newline and body.endswith(b"\n") else body)
    monkeypatch.setattr(ingest_files, "SCAN_CHUNK_BYTES", chunk)
    rejects = {w + 1 for w in wanted if w % 2}
    assert ingest_files.scan_csv_records(path, rejects, wanted) == _reference_scan(path, rejects, wanted)


def test_formats_and_column_mapping_give_the_same_events(con, tmp_path):
    frame = pd.DataFrame({"uid": [1, 2, 3], "iid": [5, 6, 7], "ts": [1_700_000_000, 1_700_000_100, 1_700_000_200],
                          "event_type": ["view", "cart", "view"], "rating": [4.0, 3.5, 5.0]})
    frame.to_csv(tmp_path / "e.csv", index=False)
    frame.to_csv(tmp_path / "e.tsv", sep="\t", index=False)
    with open(tmp_path / "e.jsonl", "w") as fh:
        for rec in frame.to_dict("records"):
            fh.write(json.dumps(rec) + "\n")
        fh.write("{not json\n")
    frame.assign(ts=pd.to_datetime(frame["ts"], unit="s", utc=True)).to_parquet(tmp_path / "e.parquet")
    mapping = "uid=user_id,iid=item_id"  # ts is a built-in alias of timestamp
    reports = {}
    for name in ("e.csv", "e.tsv", "e.jsonl", "e.parquet"):
        con.execute(f"DELETE FROM {events.EVENT_LOG}") if name != "e.csv" else None
        reports[name] = ingest_files.ingest_file(con, tmp_path / name, columns=mapping)
        got = con.execute("SELECT user_id, item_id, epoch(ts)::BIGINT, event_type FROM events ORDER BY user_id").fetchall()
        assert got == [(1, 5, 1_700_000_000, "view"), (2, 6, 1_700_000_100, "cart"), (3, 7, 1_700_000_200, "view")], name
    assert reports["e.jsonl"].quarantined == 1 and reports["e.jsonl"].rows_in == 4
    bad = con.execute("SELECT line_no, raw, reason FROM quarantine").fetchall()
    assert bad == [(4, "{not json", "invalid JSON: Expecting property name enclosed in double quotes at column 2")]


def test_item_catalog_files_use_upsert_items(con, tmp_path):
    from lte import catalog

    body = ('item_id,text,attributes\n1,red boots,"{""color"": ""red""}"\n2,,{}\nabc,thing,{}\n'
            '3,blue hat,not json\n4,green scarf,\n1,renamed boots,{}\n')
    report = ingest_files.ingest_file(con, write(tmp_path, "items.csv", body))
    assert (report.rows_in, report.accepted, report.duplicates, report.quarantined) == (6, 2, 1, 3)
    items = catalog.load_items(con)
    assert list(items["item_id"]) == [1, 4] and items["text"].iloc[0] == "red boots"
    reasons = [r[0] for r in con.execute("SELECT reason FROM quarantine ORDER BY line_no").fetchall()]
    assert reasons == ["missing text", 'item_id is not a non-negative integer: "abc"', "attributes is not a JSON object"]
    copy = ingest_files.ingest_file(con, write(tmp_path, "items_copy.csv", body))  # known content, new name
    assert copy.status == events.SKIPPED and con.execute("SELECT count(*) FROM quarantine").fetchall() == [(3,)]


def test_pending_files_in_a_local_landing_dir(con, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    canonical_csv(landing / "day1.csv", 50)
    canonical_csv(landing / "copy_of_day1.csv", 50)  # same bytes, different name: one identity
    (landing / "README.md").write_text("ignored")
    pending = ingest_files.pending_files(str(landing), con)
    assert [Path(f.uri).name for f in pending] == ["copy_of_day1.csv"]
    assert ingest_files.ingest_landing_file(con, pending[0]).accepted == 50
    assert ingest_files.pending_files(str(landing), con) == []
    canonical_csv(landing / "day2.csv", 20, offset=50)
    assert [Path(f.uri).name for f in ingest_files.pending_files(str(landing), con)] == ["day2.csv"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_endpoint(monkeypatch):
    port = _free_port()
    server = subprocess.Popen([str(Path(PY).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


def test_s3_landing_prefix_against_moto(con, tmp_path, moto_endpoint):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="landing-bucket")
    s3.upload_file(str(canonical_csv(tmp_path / "a.csv", 40)), "landing-bucket", "incoming/a.csv")
    s3.put_object(Bucket="landing-bucket", Key="incoming/b.jsonl",
                  Body=b'{"user_id": 1, "item_id": 2, "timestamp": "2024-01-01T00:00:00Z"}\n')
    uri = "s3://landing-bucket/incoming"
    cache = tmp_path / "cache"
    pending = ingest_files.pending_files(uri, con, endpoint_url=moto_endpoint, cache_dir=cache)
    assert [f.uri for f in pending] == [f"{uri}/a.csv", f"{uri}/b.jsonl"]
    reports = [ingest_files.ingest_landing_file(con, f) for f in pending]
    assert [r.accepted for r in reports] == [40, 1]
    assert con.execute("SELECT count(*) FROM events WHERE source = ?", [f"{uri}/b.jsonl"]).fetchall() == [(1,)]
    assert ingest_files.pending_files(uri, con, endpoint_url=moto_endpoint, cache_dir=cache) == []
    again = ingest_files.ingest_path(con, uri, endpoint_url=moto_endpoint, cache_dir=cache)
    assert [r.status for r in again] == [events.SKIPPED, events.SKIPPED]


def _run_cli(args, home: Path, **kw):
    env = {**os.environ, "LTE_HOME": str(home)}
    return subprocess.Popen([PY, "-c", CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=Path(__file__).parents[1], **kw)


def test_two_processes_on_one_store(settings, tmp_path):
    """Two `lte ingest` processes at once: the second waits for DuckDB's write lock; nothing is lost."""
    a = canonical_csv(tmp_path / "a.csv", 150_000)
    b = canonical_csv(tmp_path / "b.csv", 150_000, offset=150_000)
    procs = [_run_cli(["ingest", "--json", str(a), str(b)], settings.home),
             _run_cli(["ingest", "--json", str(b), str(a)], settings.home)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    reports = [r for out, _ in outputs for r in json.loads(out)]
    assert sorted(r["status"] for r in reports) == ["ok", "ok", "skipped", "skipped"]
    assert sum(r["accepted"] for r in reports) == 300_000
    from lte.db import connect

    con = connect(settings.duckdb_path, read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchall() == [(300_000, 300_000)]
    con.close()


CRASH_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from lte.db import connect
    from lte import ingest_files
    con = connect(sys.argv[1])
    def on_stage(stage):
        print(stage, flush=True)
        if stage == "committing":  # rows are written inside the open transaction; now wait to be killed
            time.sleep(60)
    ingest_files.ingest_file(con, Path(sys.argv[2]), on_stage=on_stage)
    """
)


@pytest.mark.parametrize("bad_last_row", [True, False], ids=["staged-path", "one-pass-path"])
def test_kill_9_mid_file_leaves_the_store_unchanged(settings, tmp_path, bad_last_row):
    from lte.db import connect

    con = connect(settings.duckdb_path)
    ingest_files.ingest_file(con, canonical_csv(tmp_path / "before.csv", 1000))
    before = [con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ("events", "quarantine", "ingestions")]
    con.close()
    big = canonical_csv(tmp_path / "big.csv", 200_000, offset=1000)
    if bad_last_row:
        with open(big, "a") as fh:
            fh.write("bad,row,here,x\n")  # so quarantine would change too
    proc = subprocess.Popen([PY, "-c", CRASH_SCRIPT, str(settings.duckdb_path), str(big)],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    stages = []
    for line in proc.stdout:
        stages.append(line.strip())
        if stages[-1] == "committing":
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert stages == ["staging", "storing", "committing"]
    con = connect(settings.duckdb_path)
    after = [con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ("events", "quarantine", "ingestions")]
    assert after == before
    report = ingest_files.ingest_file(con, big)  # and the file ingests cleanly afterwards
    assert (report.accepted, report.quarantined) == (200_000, int(bad_last_row))
    con.close()


def test_cli_json_and_quarantine(settings, tmp_path):
    from typer.testing import CliRunner

    import lte.cli.ingest  # noqa: F401  registers the commands
    from lte.cli.app import app

    good = canonical_csv(tmp_path / "good.csv", 10)
    bad = write(tmp_path, "bad.csv", HEADER + "1,2,never,view\n")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "--json", str(good), str(bad), str(tmp_path / "missing.csv")])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert [(r["status"], r["accepted"], r["quarantined"]) for r in reports] == [
        ("ok", 10, 0), ("quarantined_rows", 0, 1), ("rejected", 0, 0)]
    assert {"file", "rows_in", "accepted", "duplicates", "quarantined", "status", "reason"} <= set(reports[0])
    shown = json.loads(runner.invoke(app, ["quarantine", "--json", "--file", str(bad)]).stdout)
    assert [(q["line_no"], q["raw"]) for q in shown] == [(2, "1,2,never,view")]
    table = runner.invoke(app, ["ingest", str(good)])
    assert table.exit_code == 0 and "skipped" in table.stdout
