"""`lte basis show|verify|lineage`: inspect and re-verify the frozen content basis."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer

from lte.cli.app import app, print_json, settings

basis_app = typer.Typer(
    help="The frozen content basis: show, verify, lineage.", no_args_is_help=True
)
app.add_typer(basis_app, name="basis")

HashOption = Annotated[
    str | None, typer.Option("--hash", help="A basis hash (default: the current basis).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def _store():
    from lte.storage import open_store

    s = settings()
    return open_store(s.storage.uri, s.artifacts_dir, s.storage.s3_endpoint_url)


def _resolve_hash(store, basis_hash: str | None) -> str:
    from lte.basis import current_hash

    resolved = basis_hash or current_hash(store)
    if resolved is None:
        typer.echo(
            f"no basis in {store.uri('basis/')} yet: materialise the content_basis asset (or run the demo)",
            err=True,
        )
        raise typer.Exit(1)
    return resolved


def _fail(exc: Exception) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


def _describe(store, manifest, current: str | None) -> dict[str, Any]:
    info = manifest.to_dict()
    info["current"] = manifest.basis_hash == current
    info["manifest_uri"] = store.uri(manifest.manifest_key)
    info["vectors_uri"] = store.uri(manifest.vectors_key)
    info["item_ids_uri"] = store.uri(manifest.item_ids_key)
    if hasattr(store, "local_path"):  # LocalStore: a plain path is handier for numpy.load
        info["vectors_path"] = str(store.local_path(manifest.vectors_key))
    return info


@basis_app.command("show")
def show(basis_hash: HashOption = None, as_json: JsonOption = False) -> None:
    """Show a basis manifest (encoder, dim, items, parent) and where its files are."""
    from lte.basis import BasisError, current_hash, load_manifest

    store = _store()
    try:
        target = _resolve_hash(store, basis_hash)
        info = _describe(store, load_manifest(store, target), current_hash(store))
    except BasisError as exc:
        _fail(exc)
    if as_json:
        print_json(info)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"basis {target[:12]}" + (" (current)" if info["current"] else ""), show_header=False
    )
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    enc = info["encoder"]
    rows = [
        ("basis_hash", info["basis_hash"]),
        ("parent_hash", info["parent_hash"] or "-"),
        ("encoder", f"{enc['name']} @ {enc['version']}"),
        ("dim", str(info["dim"])),
        (
            "items",
            f"{info['n_items']} ({info['n_items'] - info['n_parent_items']} new over the parent)",
        ),
        ("created_at", info["created_at"]),
        ("vectors", info.get("vectors_path") or info["vectors_uri"]),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


@basis_app.command("verify")
def verify(
    basis_hash: HashOption = None,
    all_bases: Annotated[bool, typer.Option("--all", help="Verify every stored basis.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Recompute hashes of a basis and its ancestors (parent rows bit-identical); exit 1 on any mismatch."""
    from lte.basis import BasisError, list_bases, verify_basis, verify_lineage

    store = _store()
    try:
        if all_bases:
            checks = [verify_basis(store, m.basis_hash) for m in list_bases(store)]
        else:
            checks = verify_lineage(store, _resolve_hash(store, basis_hash))
    except BasisError as exc:
        _fail(exc)
    ok = bool(checks) and all(c.ok for c in checks)
    if as_json:
        print_json({"ok": ok, "checked": len(checks), "checks": [c.to_dict() for c in checks]})
    else:
        for check in checks:
            typer.echo(f"{'OK  ' if check.ok else 'FAIL'} {check.basis_hash}")
            for problem in check.problems:
                typer.echo(f"     {problem}")
        typer.echo(f"{sum(c.ok for c in checks)}/{len(checks)} bases verified")
    if not ok:
        raise typer.Exit(1)


@basis_app.command("lineage")
def lineage_cmd(basis_hash: HashOption = None, as_json: JsonOption = False) -> None:
    """The chain of bases from the family root to the current basis (each extends the one above)."""
    from lte.basis import BasisError, current_hash, lineage

    store = _store()
    try:
        target = _resolve_hash(store, basis_hash)
        chain = lineage(store, target)
        current = current_hash(store)
    except BasisError as exc:
        _fail(exc)
    entries = [
        {
            "basis_hash": m.basis_hash,
            "parent_hash": m.parent_hash,
            "n_items": m.n_items,
            "n_new_items": m.n_items - m.n_parent_items,
            "encoder": m.encoder,
            "created_at": m.created_at,
            "current": m.basis_hash == current,
        }
        for m in chain
    ]
    if as_json:
        print_json({"basis_hash": target, "lineage": entries})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"lineage of basis {target[:12]} (root first)")
    for column in ("basis", "parent", "items", "new", "encoder", "created_at", ""):
        table.add_column(column)
    for e in entries:
        table.add_row(
            e["basis_hash"][:12],
            (e["parent_hash"] or "-")[:12],
            str(e["n_items"]),
            str(e["n_new_items"]),
            e["encoder"]["name"],
            e["created_at"][:19],
            "current" if e["current"] else "",
        )
    Console().print(table)
