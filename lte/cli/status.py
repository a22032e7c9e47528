"""`lte status`, `lte demo`, `lte dagster-validate`: the state of one LTE home, and the demo run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import typer

from lte.cli.app import app, print_json, settings


def collect_status(s) -> dict:
    """Current state of the home as a plain dict (what `lte status --json` prints)."""
    from lte import events as event_store
    from lte.basis import current_basis
    from lte.db import connect
    from lte.storage import open_store

    state: dict = {"home": str(s.home.resolve())}
    store = open_store(s.storage.uri, s.artifacts_dir, s.storage.s3_endpoint_url)
    if s.duckdb_path.exists():
        con = connect(s.duckdb_path)
        try:
            state["events"] = event_store.event_count(con)
            state["lte"] = _lte_state(con)
        finally:
            con.close()
    else:
        state["events"] = 0
        state["lte"] = None
    basis = current_basis(store)
    state["basis"] = (
        {"hash": basis.hash, "n_items": basis.n_items, "dim": basis.dim,
         "encoder": basis.manifest.encoder.get("name"), "parent_hash": basis.manifest.parent_hash}
        if basis else None
    )
    state["model"] = _model_state(s)
    state["drift"] = _drift_state(s)
    return state


def _lte_state(con) -> dict | None:
    from lte.feature_store import FeatureStore

    store = FeatureStore(con)
    store.ensure_schema()
    live = store.live()
    if len(live.user_ids) == 0:
        return None
    return {
        "as_of": live.as_of,
        "variant": live.variant,
        "basis_hash": live.basis_hash,
        "users": int(len(live.user_ids)),
        "users_without_lte": int((live.n_events == 0).sum()),
    }


def _model_state(s) -> dict:
    if s.registry.tracking_uri is None and not (s.home / "mlflow.db").exists():
        return {"name": s.registry.model_name, "champion": None, "challenger": None}
    from training.registry import Registry

    registry = Registry.from_settings(s)
    return {
        "name": s.registry.model_name,
        "champion": registry.describe_alias("champion"),
        "challenger": registry.describe_alias("challenger"),
    }


def _drift_state(s) -> dict | None:
    latest = s.drift_dir / "latest.json"
    if not latest.exists():
        return None
    return json.loads(latest.read_text())


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """Show the current state: events, basis, live LTEs, champion/challenger, last drift verdict."""
    state = collect_status(settings())
    if as_json:
        print_json(state)
        return
    _print_status(state)


def _print_status(state: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"LTE home {state['home']}", show_header=False)
    table.add_row("events", f"{state['events']:,}")
    b = state["basis"]
    table.add_row("basis", f"{b['hash'][:16]}  {b['n_items']} items x {b['dim']}  ({b['encoder']})" if b else "-")
    lte_state = state["lte"]
    table.add_row(
        "live LTE",
        f"as_of {lte_state['as_of']}  {lte_state['variant']}  {lte_state['users']} users, "
        f"{lte_state['users_without_lte']} without LTE" if lte_state else "-",
    )
    for alias in ("champion", "challenger"):
        version = state["model"][alias]
        table.add_row(alias, _version_line(version))
    d = state["drift"]
    table.add_row("drift", f"drifted={d['drifted']}  score={d['score']:.4g} ({d['method']})  {d['report']}" if d else "-")
    Console().print(table)


def _version_line(version: dict | None) -> str:
    if not version:
        return "-"
    metrics = version.get("metrics", {})
    ndcg = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k.startswith("ndcg"))
    return f"v{version['version']}  basis {str(version.get('basis_hash'))[:12]}  {ndcg}"


@app.command()
def demo(
    size: str = typer.Option(None, help="synthetic size: tiny | small | demo | large"),
    encoder: str = typer.Option(None, help="minilm (default) | hashing"),
) -> None:
    """Run the whole pipeline (Dagster job `full_pipeline`, in-process) on built-in data."""
    from orchestration.run import run_full_pipeline

    s = settings()
    started = time.perf_counter()
    ok, figures = run_full_pipeline(s, synthetic_size=size, encoder=encoder)
    elapsed = time.perf_counter() - started
    state = collect_status(s)
    from orchestration.run import print_summary

    print_summary(state, figures, elapsed)
    if not ok:
        raise typer.Exit(1)


@app.command("dagster-validate")
def dagster_validate() -> None:
    """`dagster definitions validate` against the project's Definitions, with the generated instance."""
    from orchestration.instance import ensure_dagster_home

    ensure_dagster_home(settings())
    cmd = [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-m", "orchestration.definitions"]
    raise typer.Exit(subprocess.call(cmd, env=os.environ.copy()))


@app.command()
def paths(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """Where this home keeps its state (creates the Dagster instance config if missing)."""
    from orchestration.instance import ensure_dagster_home

    s = settings()
    info = {
        "home": str(s.home.resolve()),
        "duckdb": str(s.duckdb_path.resolve()),
        "artifacts": s.storage.uri or str(s.artifacts_dir.resolve()),
        "dagster_home": str(ensure_dagster_home(s)),
        "mlflow_tracking_uri": s.mlflow_tracking_uri,
        "mlflow_artifacts": s.mlflow_artifact_location,
        "evidently_workspace": str(s.evidently_workspace.resolve()),
        "drift_reports": str(s.drift_dir.resolve()),
    }
    if as_json:
        print_json(info)
    else:
        for key, value in info.items():
            typer.echo(f"{key:20s} {value}")
