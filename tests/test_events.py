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
