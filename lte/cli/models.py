"""`lte models`, `lte promote`, `lte rollback`, `lte recommend`, `lte users`: the registry and serving.

MLflow and torch are imported inside the commands (through training.registry / training.serve) so
`lte --help` stays fast and lte/ itself never imports them.
"""

from __future__ import annotations

import typer

from lte.cli.app import app, print_json, settings

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@app.command()
def models(as_json: bool = JSON) -> None:
    """Registered model versions: aliases, basis hash, metrics and gate verdict."""
    from training.registry import Registry

    registry = Registry.from_settings(settings())
    versions = registry.list_versions()
    if as_json:
        print_json({"name": registry.model_name, "history": registry.history(),
                    "versions": [v.to_dict() for v in versions]})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{registry.model_name}  ({registry.tracking_uri})")
    for column in ("version", "aliases", "basis", "integration", "ndcg@10", "ndcg@100", "gate", "promotion", "created"):
        table.add_column(column)
    for v in versions:
        gate = {None: "-", True: "passed", False: "FAILED"}[v.gate_passed]
        if v.gate_passed is not None:
            gate += f" ({v.metrics.get('gate.uplift', float('nan')):+.1%} vs {v.tags.get('gate.reference', '?')})"
        promotion = v.tags.get("promotion.by", "")
        if v.tags.get("promotion.forced") == "true":
            promotion = f"FORCED by {promotion}: {v.tags.get('promotion.reason', '')}"
        table.add_row(
            v.version, ", ".join(v.aliases), str(v.basis_hash or "-")[:12], v.tags.get("integration", "-"),
            _metric(v.metrics, "ndcg_10"), _metric(v.metrics, "ndcg_100"), gate, promotion,
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    Console().print(table)
    if not versions:
        typer.echo("No versions yet: run the pipeline (`lte demo`) to train and register one.")


def _metric(metrics: dict, key: str) -> str:
    return f"{metrics[key]:.4f}" if key in metrics else "-"


@app.command()
def promote(
    version: str = typer.Argument(..., help="Model version number to make champion."),
    force: bool = typer.Option(False, "--force", help="Promote without a passed gate (needs --reason)."),
    reason: str = typer.Option(None, "--reason", help="Why (required with --force; recorded on the version)."),
    who: str = typer.Option(None, "--who", help="Who promotes (default: the OS user)."),
    as_json: bool = JSON,
) -> None:
    """Point `champion` at VERSION; only a passed NDCG gate (or --force --reason) allows it."""
    from training.registry import Registry, RegistryError

    registry = Registry.from_settings(settings())
    try:
        promotion = registry.promote(version, force=force, who=who, reason=reason)
    except RegistryError as exc:
        _fail(str(exc))
    if as_json:
        print_json(promotion.to_dict())
        return
    how = f"FORCED by {promotion.who}: {promotion.reason}" if promotion.forced else promotion.reason
    typer.echo(f"champion: {promotion.previous or 'none'} -> {promotion.version} ({how}); "
               "`lte rollback` undoes this")


@app.command()
def rollback(
    who: str = typer.Option(None, "--who", help="Who rolls back (default: the OS user)."),
    as_json: bool = JSON,
) -> None:
    """Move `champion` back to the version the last promotion replaced."""
    from training.registry import Registry, RegistryError

    registry = Registry.from_settings(settings())
    try:
        promotion = registry.rollback(who=who)
    except RegistryError as exc:
        _fail(str(exc))
    if as_json:
        print_json(promotion.to_dict())
        return
    typer.echo(f"champion: {promotion.previous} -> {promotion.version} (rolled back)")


@app.command()
def recommend(
    user: int = typer.Argument(..., help="User id (see `lte users`)."),
    k: int = typer.Option(10, "--k", min=1, help="How many items."),
    model_alias: str = typer.Option("champion", "--model-alias", help="Alias or version number to serve."),
    as_json: bool = JSON,
) -> None:
    """Top-k items for USER from the aliased model, its live LTE and recent events."""
    from lte.basis import BasisMismatchError
    from training.registry import RegistryError
    from training.serve import UnknownUserError
    from training.serve import recommend as recommend_items

    try:
        result = recommend_items(settings(), user, k=k, alias=model_alias)
    except (BasisMismatchError, RegistryError, UnknownUserError) as exc:
        _fail(str(exc))
    if as_json:
        print_json(result.to_dict())
        return
    from rich.console import Console
    from rich.table import Table

    lte = f"LTE of {result.lte_events} events" if result.lte_events else "no LTE (cold long-term history)"
    table = Table(title=f"user {result.user_id}: model v{result.model_version} ({result.alias}), "
                        f"{result.history_length} recent items, {lte}")
    for column in ("rank", "item", "score", "title"):
        table.add_column(column)
    for item in result.items:
        table.add_row(str(item.rank), str(item.item_id), f"{item.score:.3f}", item.title)
    Console().print(table)


@app.command()
def users(
    limit: int = typer.Option(20, "--limit", min=1, help="How many users (most active first)."),
    as_json: bool = JSON,
) -> None:
    """Users with their event counts and LTE state, to pick someone for `lte recommend`."""
    from training.serve import list_users

    rows = list_users(settings(), limit=limit)
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="users (most events first)")
    for column in ("user_id", "events", "lte_events"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["user_id"]), str(row["events"]),
                      "-" if row["lte_events"] is None else str(row["lte_events"]))
    Console().print(table)
    if not rows:
        typer.echo("No events yet: `lte demo` loads the built-in data.")
