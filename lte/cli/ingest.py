"""`lte ingest` and `lte quarantine`: bring your own events and see what was rejected."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lte.cli.app import app, print_json, settings


def _connect_waiting(path, wait_s: float):
    """Open the store; if another process holds the write lock, say so and wait for it."""
    from lte.db import StoreBusyError, connect

    try:
        return connect(path, wait_s=0)
    except StoreBusyError:
        typer.echo(f"{path} is busy (another lte/Dagster process is writing); waiting up to {wait_s:.0f}s ...",
                   err=True)
        return connect(path, wait_s=wait_s)


@app.command()
def ingest(
    targets: Annotated[list[str], typer.Argument(help="Files, directories or s3://bucket/prefix URLs.")],
    columns: Annotated[str | None, typer.Option(help="Rename file columns: uid=user_id,iid=item_id,ts=timestamp")] = None,
    kind: Annotated[str, typer.Option(help="events | items | auto (items when the header has `text`)")] = "auto",
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint (default: settings.storage.s3_endpoint_url)")] = None,
    wait_s: Annotated[float, typer.Option(help="How long to wait for another writer's lock.")] = 600.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON list of per-file reports.")] = False,
) -> None:
    """Ingest event or item-catalog files; bad rows go to quarantine, bad files get a verdict.

    Exit code 0 when every file was processed (even with quarantined rows or rejected files).
    """
    from lte import ingest_files

    if kind not in {"events", "items", "auto"}:
        raise typer.BadParameter("--kind must be events, items or auto")
    try:
        ingest_files.parse_column_mapping(columns)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    cfg = settings()
    con = _connect_waiting(cfg.duckdb_path, wait_s)
    reports = []
    try:
        for target in targets:
            reports += ingest_files.ingest_path(
                con, target, columns=columns, kind=kind,
                endpoint_url=endpoint_url or cfg.storage.s3_endpoint_url,
                cache_dir=cfg.home / "landing-cache",
            )
    finally:
        con.close()
    if json_output:
        print_json([r.to_dict() for r in reports])
        return
    _print_reports(reports)


def _print_reports(reports) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ingestion")
    for name in ("file", "rows_in", "accepted", "duplicates", "quarantined", "status", "reason"):
        table.add_column(name, justify="right" if name in {"rows_in", "accepted", "duplicates", "quarantined"} else "left")
    style = {"ok": "green", "skipped": "dim", "quarantined_rows": "yellow", "rejected": "red"}
    for r in reports:
        table.add_row(r.file, f"{r.rows_in:,}", f"{r.accepted:,}", f"{r.duplicates:,}", f"{r.quarantined:,}",
                      f"[{style.get(r.status, '')}]{r.status}[/]", r.reason)
    Console(file=sys.stdout).print(table)


@app.command()
def quarantine(
    file: Annotated[str | None, typer.Option(help="Only rows from this file (as shown by `lte ingest`).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show quarantined rows: file, line number, the raw row and why it was rejected."""
    from lte import events
    from lte.db import connect

    cfg = settings()
    con = connect(cfg.duckdb_path, read_only=cfg.duckdb_path.exists())
    try:
        if not cfg.duckdb_path.exists() or not _has_table(con, "quarantine"):
            rows = None
        else:
            rows = events.list_quarantine(con, file=file, limit=limit)
    finally:
        con.close()
    if json_output:
        print_json([] if rows is None else events.quarantine_json(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="quarantine" + (f" ({file})" if file else ""))
    for name in ("source", "line_no", "raw", "reason"):
        table.add_column(name, overflow="fold")
    for rec in ([] if rows is None else rows.itertuples()):
        line = "" if rec.line_no is None or rec.line_no != rec.line_no else str(int(rec.line_no))
        table.add_row(rec.source, line, rec.raw, rec.reason)
    Console(file=sys.stdout).print(table)


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchall()[0][0])
