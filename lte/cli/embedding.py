"""`lte embedding show|backfill|exports|restore`: inspect a user's LTE (live or as of a time), backfill
snapshots, list the Parquet exports on S3 and restore one into this home's feature store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, NoReturn

import typer

from lte.cli.app import app, print_json, settings

embedding_app = typer.Typer(help="Long-term embeddings: show one user's LTE, backfill snapshots, restore exports.",
                            no_args_is_help=True)
app.add_typer(embedding_app, name="embedding")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _parse_time(text: str, option: str) -> datetime:
    """ISO date or datetime; a value without a zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option} {text!r} is not an ISO date/time, e.g. 2025-01-31 or 2025-01-31T12:00:00+00:00")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _artifact_store(s):
    from lte.storage import open_store

    return open_store(s.storage.uri, s.artifacts_dir, s.storage.s3_endpoint_url)


@embedding_app.command("show")
def show(
    user: Annotated[int, typer.Argument(help="User id.")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Point-in-time read (ISO time, UTC if no zone); "
                                              "default: the live LTE.")] = None,
    basis_hash: Annotated[str | None, typer.Option("--basis", help="Model basis hash for the as-of read "
                                                   "(default: the current basis).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show one user's LTE: the live row, or the snapshot the store served at --as-of."""
    import numpy as np

    from lte.basis import BasisError, current_hash
    from lte.db import connect
    from lte.feature_store import FeatureStore

    s = settings()
    artifacts = _artifact_store(s)
    no_tables = "no LTE tables yet: run `lte embedding backfill` or materialise lte_snapshots"
    if not s.duckdb_path.exists():
        _fail(no_tables)
    con = connect(s.duckdb_path, read_only=True)
    try:
        store = FeatureStore(con, artifact_store=artifacts)
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'lte_live'").fetchall()[0][0]:
            _fail(no_tables)
        if as_of is None:
            batch = store.live(users=[user])
            if batch.as_of is None:
                _fail("nothing is live yet: publish a snapshot (the lte_live asset), or use --as-of")
            vector, n_events = batch.vectors[0], int(batch.n_events[0])
            info = {"user_id": user, "source": "live", "snapshot_as_of": batch.as_of,
                    "basis_hash": batch.basis_hash, "variant": batch.variant}
        else:
            moment = _parse_time(as_of, "--as-of")
            model_hash = basis_hash or current_hash(artifacts)
            if model_hash is None:
                _fail("no current basis; pass --basis HASH")
            try:
                result = store.as_of([user], [moment], s.lte.variant, model_hash)
            except BasisError as exc:
                _fail(str(exc))
            vector, n_events = result.vectors[0], int(result.n_events[0])
            info = {"user_id": user, "source": "as_of", "requested_time": moment,
                    "snapshot_as_of": result.snapshot_as_of[0], "basis_hash": result.basis_hashes[0],
                    "variant": s.lte.variant}
    finally:
        con.close()
    info.update({"n_events": n_events, "empty": n_events == 0, "dim": int(vector.shape[0]),
                 "norm": float(np.linalg.norm(vector)), "vector": vector.tolist()})
    if as_json:
        print_json(info)
        return
    for key in ("user_id", "source", "requested_time", "snapshot_as_of", "basis_hash", "variant",
                "n_events", "dim", "norm"):
        if key in info:
            typer.echo(f"{key:>15}: {info[key]}")
    head = ", ".join(f"{v:+.4f}" for v in vector[:8])
    typer.echo(f"{'vector[:8]':>15}: [{head}{', ...' if vector.shape[0] > 8 else ''}]")
    if info["snapshot_as_of"] is None:
        typer.echo("(no snapshot for this user at that time: the model sees the empty LTE)")


@embedding_app.command("backfill")
def backfill_command(
    start: Annotated[str, typer.Option("--from", help="First time (ISO, UTC if no zone).")],
    end: Annotated[str, typer.Option("--to", help="Last time (ISO, UTC if no zone).")],
    every_days: Annotated[float | None, typer.Option("--every-days", help="Cadence (default: "
                                                     "lte.snapshot_every_days).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Compute and store LTE snapshots on the cadence grid in [--from, --to] with the current basis.
    Resumable: times already stored for this basis and variant are skipped."""
    import time

    from lte.basis import current_basis
    from lte.db import connect
    from lte.embeddings import compute_lte
    from lte.feature_store import FeatureStore, snapshot_times

    s = settings()
    lo, hi = _parse_time(start, "--from"), _parse_time(end, "--to")
    if hi < lo:
        _fail(f"--to {hi} is before --from {lo}")
    basis = current_basis(_artifact_store(s))
    if basis is None:
        _fail("no current basis: materialise content_basis first (or run the demo)")
    times = snapshot_times(lo, hi, every_days or s.lte.snapshot_every_days)
    con = connect(s.duckdb_path)
    rows = []
    try:
        store = FeatureStore(con)
        store.ensure_schema()
        done = set(store.snapshot_times_available(s.lte.variant, basis.hash))
        for moment in times:
            began = time.perf_counter()
            if moment in done:
                rows.append({"as_of": moment, "status": "exists", "users": None, "rows_added": 0,
                             "empty_share": None, "seconds": 0.0})
                continue
            batch = compute_lte(con, basis, moment, s.lte)
            added = store.write_snapshot(batch)
            rows.append({"as_of": moment, "status": "written", "users": len(batch), "rows_added": added,
                         "empty_share": round(batch.empty_share, 4),
                         "seconds": round(time.perf_counter() - began, 3)})
    finally:
        con.close()
    summary = {"basis_hash": basis.hash, "variant": s.lte.variant, "lag_days": s.lte.lag_days,
               "window_days": s.lte.window_days, "window_unit": s.lte.window_unit, "times": len(times),
               "rows_added": sum(r["rows_added"] for r in rows), "snapshots": rows}
    if as_json:
        print_json(summary)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"LTE backfill ({s.lte.variant}, basis {basis.hash[:12]})")
    for column in ("as_of", "status", "users", "rows_added", "empty_share", "seconds"):
        table.add_column(column)
    for r in rows:
        table.add_row(*(str(r[c]) for c in ("as_of", "status", "users", "rows_added", "empty_share", "seconds")))
    Console().print(table)
    typer.echo(f"{summary['rows_added']} rows added over {len(times)} snapshot times")


@embedding_app.command("exports")
def exports(
    table: Annotated[str | None, typer.Option(help="lte_snapshots | lte_live (default both)")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the Parquet exports of LTE tables in the artifact store (written when it is on S3), oldest first."""
    from lte.lte_export import TABLES, list_exports

    if table is not None and table not in TABLES:
        _fail(f"--table {table!r}: use one of {', '.join(TABLES)}")
    keys = list_exports(_artifact_store(settings()), table)
    if as_json:
        print_json(keys)
    else:
        typer.echo("\n".join(keys) if keys else "no LTE exports in the artifact store (they are written when "
                   "storage.uri is s3://)")


@embedding_app.command("restore")
def restore(
    key: Annotated[str, typer.Argument(help="An export key as `lte embedding exports` prints it.")],
    no_live: Annotated[bool, typer.Option("--no-live", help="Append the snapshot only; leave lte_live as it is.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Load one export into this home's feature store (idempotent); an lte_live export is made live again."""
    from lte.db import connect
    from lte.lte_export import restore_lte

    s = settings()
    con = connect(s.duckdb_path)
    try:
        report = restore_lte(con, _artifact_store(s), key, live=False if no_live else None)
    except (FileNotFoundError, KeyError, LookupError) as exc:
        _fail(f"cannot restore {key}: {exc}. List the keys with `lte embedding exports`")
    finally:
        con.close()
    if as_json:
        print_json(report.to_dict())
    else:
        live = f", {report.live_rows} live rows" if report.live_rows is not None else ""
        typer.echo(f"restored {key}: {report.snapshots} snapshot(s), {report.rows_added} rows added{live}")
