"""Ingestion throughput: our path (validate + dedup + store) vs DuckDB's raw read_csv into a table.

Generates N canonical CSV rows (user_id, item_id, timestamp as Unix seconds, event_type), then in
the same run times, on fresh DuckDB files:
  raw   CREATE TABLE raw AS SELECT * FROM read_csv(file)   (DuckDB's own sniffing + typed load)
  raw, any order  the same with preserve_insertion_order = false, which our one-pass insert uses
        (a reference only: the target ratio is against `raw`, DuckDB's defaults)
  ours  lte.ingest_files.ingest_file(con, file)             (hash, classify, quarantine, dedup, store)
  again the same events under another file name (all duplicates: the staged anti-join path)
  bad   the same events with one corrupt row per 10,000 (real-data case: the one-pass insert
        gives up at the first bad row and the file is staged: reasons, line numbers, quarantine)
Peak RSS is measured per step in a child process (ru_maxrss), so the steps do not mask each other.

    .venv/bin/python bench/ingest.py [--rows 10000000] [--repeat 3] [--insert-variants] [--workdir /tmp/lte-bench]
Last line: JSON with events_per_s, ratio_vs_duckdb, peak_rss_mb (of "ours"). The machine may be
shared: compare figures of one run (the 1-minute load average is printed with them).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import time
from pathlib import Path

# Run as a script, sys.path[0] is bench/, where a sibling bench/lte.py would shadow the package.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]


def generate(path: Path, rows: int) -> None:
    import duckdb

    duckdb.connect().execute(
        f"""COPY (SELECT (i % 200000)::BIGINT AS user_id, ((i * 7919) % 50000)::BIGINT AS item_id,
                   1600000000 + i AS timestamp,
                   CASE WHEN i % 20 = 0 THEN 'purchase' WHEN i % 7 = 0 THEN 'cart' ELSE 'view' END AS event_type
            FROM range({rows}) t(i)) TO '{path}' (HEADER)"""
    )


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (DuckDB's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _raw(csv: str, db: str, any_order: bool = False) -> dict:
    import duckdb

    con = duckdb.connect(db)
    if any_order:
        con.execute("SET preserve_insertion_order = false")
    start, cpu = time.perf_counter(), _cpu_seconds()
    n = con.execute(f"CREATE TABLE raw AS SELECT * FROM read_csv('{csv}')").fetchall()[0][0]
    con.close()
    return {"seconds": time.perf_counter() - start, "cpu_seconds": _cpu_seconds() - cpu, "rows": n}


def _warm_up_pandera() -> None:
    """pandera imports its pandas backends on the first validate() (0.13 s): a one-time cost per
    process, like importing duckdb for the raw step, so it is paid before the clock starts."""
    import pandas as pd

    from lte.events import EventSchema

    EventSchema.validate(pd.DataFrame({"user_id": pd.Series([], dtype="int64"), "item_id": pd.Series([], dtype="int64"),
                                       "ts": pd.Series([], dtype="datetime64[us, UTC]"),
                                       "event_type": pd.Series([], dtype="object")}))


def _ours(csv: str, db: str, label: str | None = None) -> dict:
    from lte.db import connect
    from lte.ingest_files import ingest_file

    _warm_up_pandera()
    con = connect(db)
    start, cpu = time.perf_counter(), _cpu_seconds()
    report = ingest_file(con, Path(csv), label=label)
    con.close()
    return {"seconds": time.perf_counter() - start, "cpu_seconds": _cpu_seconds() - cpu, "rows": report.rows_in,
            "accepted": report.accepted, "duplicates": report.duplicates, "quarantined": report.quarantined,
            "status": report.status}


# --insert-variants: the one-pass insert statement (our classification SQL) into the layouts this
# project had, one change at a time; the CPU figures of docs/ingestion.md's breakdown.
_OLD_EVENTS = """CREATE TABLE events (user_id BIGINT NOT NULL, item_id BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL,
    event_type VARCHAR NOT NULL, source VARCHAR, ingested_at TIMESTAMPTZ{generated})"""
_EVENT_ID = ", event_id VARCHAR AS (sha256(concat_ws('|', user_id, item_id, epoch_us(ts), event_type))) VIRTUAL"
INSERT_VARIANTS = {
    "before: VIRTUAL event_id, per-row source+ingested_at": (_OLD_EVENTS.format(generated=_EVENT_ID), False, "per_row"),
    "no generated column": (_OLD_EVENTS.format(generated=""), False, "per_row"),
    "+ preserve_insertion_order=false": (_OLD_EVENTS.format(generated=""), True, "per_row"),
    "+ batch number (now: event_log)": (None, True, "batch"),
}


def _insert_variant(csv: str, db: str, name: str) -> dict:
    from lte import events, ingest_files
    from lte.db import connect

    ddl, any_order, provenance = INSERT_VARIANTS[name]
    con = connect(db)
    if ddl is None:
        events.ensure_schema(con)
    else:
        con.execute(ddl)
    path = Path(csv)
    facts = ingest_files.file_facts(path)
    header = ingest_files._csv_header(facts, ",")
    select, params = ingest_files._csv_source_select(path, header, ingest_files._resolve_columns(header, {}, "events"), ",")
    target, values = (("events (user_id, item_id, ts, event_type, source, ingested_at)", "?, now()")
                      if provenance == "per_row" else (events.EVENT_LOG, "?"))
    sql = (f"INSERT INTO {target} SELECT u, it, ts, et, {values} FROM "
           f"({events._CLASSIFIED_SQL.format(source_select=select)}) WHERE CASE WHEN ok THEN true ELSE error('bad') END")
    con.execute("SET TimeZone = 'UTC'")
    if any_order:
        con.execute("SET SESSION preserve_insertion_order = false")
    start, cpu = time.perf_counter(), _cpu_seconds()
    n = con.execute(sql, [csv if provenance == "per_row" else 1, *params]).fetchall()[0][0]
    con.close()
    return {"seconds": time.perf_counter() - start, "cpu_seconds": _cpu_seconds() - cpu, "rows": n}


def _child(fn, args, queue) -> None:
    result = fn(*args)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


def run_isolated(fn, *args) -> dict:
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_child, args=(fn, args, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"benchmark step {fn.__name__} failed (exit code {proc.exitcode})")
    return queue.get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lte-bench-ingest"))
    parser.add_argument("--insert-variants", action="store_true",
                        help="also time the one-pass insert into each earlier table layout (CPU seconds)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="time raw, raw any-order and ours this many times, interleaved, and report each "
                             "one's median run (steadier on a shared machine)")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    csv = args.workdir / "events.csv"
    start = time.perf_counter()
    generate(csv, args.rows)
    copy = args.workdir / "events_copy.csv"
    with open(csv, "rb") as src, open(copy, "wb") as dst:  # same events, different bytes
        shutil.copyfileobj(src, dst)
        dst.write(b"\n")
    bad = args.workdir / "events_bad.csv"
    with open(csv, "rb") as src, open(bad, "wb") as dst:  # a corrupt user_id on every 10,000th line
        for line_no, line in enumerate(src, start=1):
            dst.write(b"x" + line if line_no % 10_000 == 0 else line)
    corrupt = (args.rows + 1) // 10_000
    print(f"generated {args.rows:,} rows ({csv.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - start:.1f}s")

    runs: dict[str, list[dict]] = {"raw": [], "raw_any_order": [], "ours": []}
    for i in range(args.repeat):  # fresh DuckDB files every time
        runs["raw"].append(run_isolated(_raw, str(csv), str(args.workdir / f"raw{i}.duckdb")))
        runs["raw_any_order"].append(run_isolated(_raw, str(csv), str(args.workdir / f"raw_any_order{i}.duckdb"), True))
        runs["ours"].append(run_isolated(_ours, str(csv), str(args.workdir / f"ours{i}.duckdb")))
    raw, raw_any_order, ours = (sorted(runs[k], key=lambda r: r["seconds"])[args.repeat // 2] for k in runs)
    again = run_isolated(_ours, str(copy), str(args.workdir / f"ours{args.repeat - 1}.duckdb"), "events_copy.csv")
    with_bad = run_isolated(_ours, str(bad), str(args.workdir / "bad.duckdb"))
    assert ours["accepted"] == args.rows and again["duplicates"] == args.rows, (ours, again)
    assert with_bad["quarantined"] == corrupt and with_bad["accepted"] == args.rows - corrupt, with_bad

    if args.insert_variants:
        print(f"{'one-pass insert into (10M: docs/ingestion.md)':<56}{'CPU s':>8}{'seconds':>9}   (medians)")
        for name in ("raw", *INSERT_VARIANTS):
            timed = [run_isolated(_raw, str(csv), str(args.workdir / f"v{i}.duckdb")) if name == "raw" else
                     run_isolated(_insert_variant, str(csv), str(args.workdir / f"v{i}.duckdb"), name)
                     for i in range(args.repeat)]
            cpu, wall = (sorted(r[k] for r in timed)[args.repeat // 2] for k in ("cpu_seconds", "seconds"))
            print(f"{'raw read_csv -> table' if name == 'raw' else name:<56}{cpu:>8.2f}{wall:>9.2f}")
            for i in range(args.repeat):
                Path(args.workdir / f"v{i}.duckdb").unlink(missing_ok=True)

    load = os.getloadavg()[0]
    print(f"{'step':<44}{'seconds':>9}{'CPU s':>8}{'events/s':>14}{'peak RSS MB':>13}   (load average {load:.1f})")
    for name, r in [("duckdb raw read_csv -> table", raw),
                    ("  same, preserve_insertion_order=false", raw_any_order),
                    ("lte ingest (validate+dedup+store)", ours),
                    ("lte ingest again (all duplicates)", again),
                    ("lte ingest, 1 bad row per 10k (quarantine)", with_bad)]:
        print(f"{name:<44}{r['seconds']:>9.2f}{r['cpu_seconds']:>8.2f}{r['rows'] / r['seconds']:>14,.0f}"
              f"{r['peak_rss_mb']:>13.0f}")
    events_per_s = ours["rows"] / ours["seconds"]
    ratio = events_per_s / (raw["rows"] / raw["seconds"])
    print(json.dumps({"rows": args.rows, "events_per_s": round(events_per_s), "ratio_vs_duckdb": round(ratio, 3),
                      "peak_rss_mb": round(ours["peak_rss_mb"]), "raw_events_per_s": round(raw["rows"] / raw["seconds"]),
                      "duplicate_pass_events_per_s": round(again["rows"] / again["seconds"]),
                      "bad_rows_pass_events_per_s": round(with_bad["rows"] / with_bad["seconds"]),
                      "raw_peak_rss_mb": round(raw["peak_rss_mb"]),
                      "ratio_vs_duckdb_any_order": round(events_per_s / (raw_any_order["rows"] / raw_any_order["seconds"]), 3),
                      "cpu_ratio_vs_duckdb": round(raw["cpu_seconds"] / ours["cpu_seconds"], 3),
                      "load_avg_1m": round(load, 1)}))
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
