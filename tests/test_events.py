"""The event store: validation with reasons, quarantine, dedup by content, conservation."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from lte import events


def test_ingest_frame_counts_and_is_idempotent(con, tiny_data):
    first = events.ingest_frame(con, tiny_data.events, source="synthetic:tiny")
    distinct = len(tiny_data.events.drop_duplicates(["user_id", "item_id", "ts", "event_type"]))
    assert (first.rows_in, first.accepted, first.quarantined) == (len(tiny_data.events), distinct, 0)
    assert first.rows_in == first.accepted + first.duplicates + first.quarantined
    assert events.event_count(con) == distinct
    again = events.ingest_frame(con, tiny_data.events, source="synthetic:tiny")
    assert (again.accepted, again.duplicates) == (0, len(tiny_data.events))
    assert events.event_count(con) == distinct
    lo, hi = events.time_range(con)
    assert lo.utcoffset().total_seconds() == 0 and lo == tiny_data.events["ts"].min()
    assert hi == tiny_data.events["ts"].max()
    ids = con.execute("SELECT count(DISTINCT event_id), min(length(event_id)) FROM events").fetchall()[0]
    assert ids == (distinct, 64)
    logged = con.execute("SELECT rows_in, accepted, duplicates, quarantined, status FROM ingestions").fetchall()
    assert logged[0] == (first.rows_in, first.accepted, first.duplicates, 0, "ok")


def test_event_id_is_the_documented_content_hash(con):
    frame = pd.DataFrame({"user_id": [7], "item_id": [9], "ts": [pd.Timestamp("2024-01-02 03:04:05", tz="UTC")],
                          "event_type": ["view"]})
    events.ingest_frame(con, frame, "one")
    import hashlib

    micros = int(pd.Timestamp("2024-01-02 03:04:05", tz="UTC").timestamp()) * 1_000_000
    expected = hashlib.sha256(f"7|9|{micros}|view".encode()).hexdigest()
    assert con.execute("SELECT event_id FROM events").fetchall() == [(expected,)]


def test_bad_rows_are_quarantined_with_reasons(con):
    frame = pd.DataFrame(
        {
            "user_id": ["1", None, "x", "3", "4", "5", "6"],
            "item_id": ["1", "2", "3", "-4", "5", "6", "7"],
            "ts": ["2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01", "yesterday", "1700000000000", "1700000000"],
            "event_type": ["view", "view", "view", "view", "view", "view", "x" * 65],
        }
    )
    report = events.ingest_frame(con, frame, "bad-frame")
    assert (report.rows_in, report.accepted, report.quarantined) == (7, 1, 6)
    assert report.status == events.QUARANTINED_ROWS
    assert events.quarantine_rate(report) == pytest.approx(6 / 7)
    rows = events.list_quarantine(con, file="bad-frame").sort_values("line_no")
    assert list(rows["line_no"]) == [2, 3, 4, 5, 6, 7]
    reasons = list(rows["reason"])
    assert reasons[0] == "missing user_id"
    assert reasons[1].startswith("user_id is not a non-negative integer")
    assert reasons[2].startswith("item_id is not a non-negative integer")
    assert reasons[3].startswith("unparseable timestamp")
    assert "milliseconds" in reasons[4]
    assert reasons[5].startswith("event_type longer than 64")
    assert '"yesterday"' in rows["raw"].iloc[3]


def test_strings_are_stored_verbatim(con):
    nasty = ["it's", 'say "hi"', "'); DROP TABLE events; --", "naïve ☃ 日本", "tab\there"]
    frame = pd.DataFrame({"user_id": range(len(nasty)), "item_id": 1, "ts": 1_700_000_000, "event_type": nasty})
    report = events.ingest_frame(con, frame, "'; DROP TABLE ingestions; --")
    assert report.accepted == len(nasty)
    stored = [r[0] for r in con.execute("SELECT event_type FROM events ORDER BY user_id").fetchall()]
    assert stored == nasty
    assert con.execute("SELECT file FROM ingestions").fetchall() == [("'; DROP TABLE ingestions; --",)]


def test_missing_event_type_defaults_and_naive_times_are_utc(con):
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": [1, 1], "ts": ["2024-05-01 12:00:00", "2024-05-01T12:00:00+02:00"]})
    events.ingest_frame(con, frame, "f")
    rows = con.execute("SELECT epoch(ts)::BIGINT, event_type FROM events ORDER BY user_id").fetchall()
    assert rows == [(1714564800, "interaction"), (1714564800 - 7200, "interaction")]


def test_stored_events_satisfy_the_pandera_contract(loaded_con):
    frame = loaded_con.execute("SELECT user_id, item_id, ts, event_type FROM events").df()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    events.EventSchema.validate(frame, lazy=True)


VALID = st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(1_600_000_000, 1_600_000_010),
                  st.sampled_from(["view", "buy", ""]))
CORRUPT = st.sampled_from(["x,1,1600000000,view", "1,,1600000000,view", "1,2,notatime,view", "1,2",
                           "1,2,3,4,5,6", "-1,2,1600000000,view", '1,2,"1600000000', "1.5,2,1600000000,view"])


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.one_of(VALID.map(lambda t: ",".join(map(str, t))), CORRUPT), min_size=1, max_size=40))
def test_conservation_and_no_duplicates_property(tmp_path_factory, rows):
    """Random mixes of valid and corrupted CSV rows: rows_in = accepted + duplicates + quarantined,
    re-ingesting under another name adds nothing, and no event is stored twice."""
    import duckdb

    from lte import ingest_files

    body = "user_id,item_id,timestamp,event_type\n" + "\n".join(rows) + "\n"
    path = tmp_path_factory.mktemp("prop") / "events.csv"
    path.write_text(body)
    con = duckdb.connect()
    report = ingest_files.ingest_file(con, path)
    if report.status == events.REJECTED:  # only whole-file verdicts (every line unreadable) end here
        assert events.event_count(con) == 0
        return
    assert report.rows_in == len(rows) == report.accepted + report.duplicates + report.quarantined
    stored = con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchall()[0]
    assert stored == (report.accepted, report.accepted)
    copy = path.with_name("copy.csv")
    copy.write_text(body + "\n")  # different bytes, same events
    again = ingest_files.ingest_file(con, copy)
    assert again.accepted == 0 and again.duplicates == report.accepted + report.duplicates
    assert con.execute("SELECT count(*) FROM quarantine").fetchall()[0][0] == 2 * report.quarantined


TOKENS = ["", " ", "0", "007", "5", " 5 ", "+5", "-0", "-3", "1.5", "1.0", "1e3", "0x10", "1_000", "x", "nan", "inf",
          "1700000000", "1700000000.25", "1700000000000", "99999999999999999999", "2024-01-01", "2024-01-01T00:00:00Z",
          "1969-12-31", "2100-01-01", "view", "v" * 65]


ANY_FIELD = st.one_of(st.none(), st.sampled_from(TOKENS), st.text(max_size=6))
ID = st.sampled_from(["0", "5", "007", " 5 ", "123456789012"])
GOOD_ROW = st.tuples(ID, ID, st.sampled_from(["1700000000", " 1700000000.25", "2024-01-01", "2024-01-01T00:00:00Z"]),
                     st.sampled_from(["view", "", None]))
TOKEN = st.sampled_from(TOKENS)
FIELD_OR_ROW = st.one_of(GOOD_ROW, st.tuples(ANY_FIELD, ANY_FIELD, ANY_FIELD, ANY_FIELD),
                         # one field replaced in an otherwise good row
                         st.tuples(TOKEN, ID, st.just("1700000000"), st.just("view")),
                         st.tuples(ID, TOKEN, st.just("1700000000"), st.just("view")),
                         st.tuples(ID, ID, TOKEN, st.just("view")), st.tuples(ID, ID, st.just("1700000000"), TOKEN))


@hsettings(max_examples=60, deadline=None)
@given(rows=st.lists(FIELD_OR_ROW, min_size=1, max_size=40))
def test_fast_rules_agree_with_the_worded_rules(rows):
    """The one-pass classifier (ok flag, typed values) and the reason wording are two SQL rule sets:
    a row is ok exactly when no reason applies, and both read the same values."""
    import duckdb

    con = duckdb.connect()
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event_type"], dtype=object)
    con.register("src", frame)
    source = "SELECT NULL::BIGINT AS line_no, user_id, item_id, timestamp, event_type FROM src"
    with events.utc_session(con):
        con.execute(f"CREATE TEMP TABLE judged AS {events._CLASSIFIED_SQL.format(source_select=source)}")
        # Word a reason for every row: stage all of them as "not ok", with their fields.
        con.execute(f"CREATE TEMP TABLE {events.STAGE_TABLE} AS SELECT NULL::BIGINT AS line_no, false AS ok, "
                    "to_json(struct_pack(user_id, item_id, timestamp, event_type))::VARCHAR AS fields_json FROM src")
        reasons = [r[2] for r in con.execute(events._REASON_SQL).fetchall()]
        judged = con.execute("SELECT ok, u, it, ts FROM judged").fetchall()
    assert [ok for ok, *_ in judged] == [reason is None for reason in reasons]
    for (ok, u, it, ts), (user_id, item_id, _, _) in zip(judged, rows, strict=True):
        if ok:
            assert u == int(user_id.strip(" ")) and it == int(item_id.strip(" ")) and ts is not None


def test_source_and_ingested_at_come_from_the_ingestion(con):
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4], "ts": [1_700_000_000, 1_700_000_001]})
    events.ingest_frame(con, frame, "first")
    events.ingest_frame(con, frame.assign(ts=frame["ts"] + 10), "second")
    rows = con.execute("SELECT e.source, e.ingested_at = i.finished_at, count(*) FROM events e "
                       "JOIN ingestions i ON i.file = e.source GROUP BY ALL ORDER BY 1").fetchall()
    assert rows == [("first", True, 2), ("second", True, 2)]
    assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'events'").fetchall() \
        == [("VIEW",)]


OLD_EVENTS_TABLE = """CREATE TABLE events (
    user_id BIGINT NOT NULL, item_id BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL, event_type VARCHAR NOT NULL,
    source VARCHAR, ingested_at TIMESTAMPTZ,
    event_id VARCHAR AS (sha256(concat_ws('|', user_id, item_id, epoch_us(ts), event_type))) VIRTUAL)"""


def test_a_store_of_the_old_layout_is_migrated_on_first_write(tmp_path):
    """Before decision 16 `events` was a table with a VIRTUAL event_id: readers keep working on it,
    the first writer copies it into event_log/event_batches, and every column reads the same."""
    from lte.db import connect

    path = tmp_path / "old.duckdb"
    con = connect(path)
    con.execute(OLD_EVENTS_TABLE)
    con.execute("""INSERT INTO events (user_id, item_id, ts, event_type, source, ingested_at) VALUES
        (1, 10, '2024-01-01 00:00:00+00', 'view', 'a.csv', '2024-02-01 00:00:00+00'),
        (2, 11, '2024-01-02 00:00:00+00', 'buy', 'a.csv', '2024-02-01 00:00:00+00'),
        (1, 12, '2024-01-03 00:00:00+00', 'view', 'b.csv', '2024-03-01 00:00:00+00')""")
    every_column = "SELECT user_id, item_id, ts, event_type, source, ingested_at, event_id FROM events ORDER BY ts"
    before = con.execute(every_column).fetchall()
    con.close()
    reader = connect(path, read_only=True)
    assert events.event_count(reader) == 3  # read-only: the old table is read as it is
    reader.close()
    con = connect(path)
    events.ensure_schema(con)
    assert con.execute(every_column).fetchall() == before
    assert con.execute(f"SELECT count(*) FROM {events.EVENT_BATCHES}").fetchall() == [(2,)]
    # Known events stay duplicates; new ones get the next batch.
    frame = pd.DataFrame({"user_id": [1, 3], "item_id": [10, 13], "ts": ["2024-01-01", "2024-04-01"],
                          "event_type": ["view", "view"]})
    report = events.ingest_frame(con, frame, "c")
    assert (report.accepted, report.duplicates) == (1, 1)
    assert con.execute("SELECT source, count(*) FROM events GROUP BY 1 ORDER BY 1").fetchall() == [
        ("a.csv", 2), ("b.csv", 1), ("c", 1)]
    con.close()


def test_a_foreign_events_table_is_refused_with_a_clear_error(con):
    con.execute("CREATE TABLE events (event_id VARCHAR, user_id BIGINT)")
    with pytest.raises(RuntimeError, match="rename or drop that table"):
        events.ensure_schema(con)


@hsettings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(0, 50), max_size=40), batch_rows=st.sampled_from([1, 2, 3, 7, 1 << 20]),
       n=st.integers(1, 3000), cut_at=st.lists(st.floats(0, 1), max_size=8),
       block_order=st.randoms(use_true_random=False), step=st.integers(1, 1000))
def test_timestamps_distinct_is_a_proof(values, batch_rows, n, cut_at, block_order, step):
    """_timestamps_distinct never calls repeating values distinct, and proves a time-ordered input
    also when an unordered insert stored it as blocks (some of a few rows) in another order
    (batches of >= 3 rows: it reads a million at a time)."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    con = duckdb.connect()
    previous = events.TIME_BATCH_ROWS
    try:
        events.TIME_BATCH_ROWS = batch_rows
        con.register("arbitrary", pa.table({"m": pa.array(values, type=pa.int64())}))
        if events._timestamps_distinct(con, "SELECT m FROM arbitrary"):
            assert len(set(values)) == len(values)
        events.TIME_BATCH_ROWS = max(batch_rows, 3)
        blocks = np.split(np.arange(n, dtype=np.int64) * step, sorted({int(c * n) for c in cut_at}))
        block_order.shuffle(blocks)
        con.register("blocks", pa.table({"m": np.concatenate(blocks)}))
        assert events._timestamps_distinct(con, "SELECT m FROM blocks")
        repeated = np.concatenate([*blocks, blocks[0][-1:] if len(blocks[0]) else [0]])
        con.register("repeated", pa.table({"m": repeated.astype(np.int64)}))
        assert not events._timestamps_distinct(con, "SELECT m FROM repeated")
    finally:
        events.TIME_BATCH_ROWS = previous
