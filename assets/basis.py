"""The frozen content basis: item text -> vectors, content-addressed and never rewritten."""

from __future__ import annotations

import time

import dagster as dg

from lte import basis as content
from lte import catalog
from lte.encoders import get_encoder
from orchestration.resources import LteResource

from .ingestion import items

GROUP = "basis"


@dg.asset(
    group_name=GROUP,
    deps=[items],
    kinds={"numpy"},
    owners=["team:lte"],
    description="Frozen content basis over the catalog. New items extend the current basis "
    "(parent rows stay bit-identical); nothing is ever rebuilt in place.",
)
def content_basis(context: dg.AssetExecutionContext, lte: LteResource) -> dg.MaterializeResult:
    settings = lte.settings()
    with lte.connect(read_only=True) as con:
        frame = catalog.load_items(con)
    encoder = get_encoder(settings.basis)
    started = time.perf_counter()
    basis, action = content.sync_basis(frame, encoder, lte.store())
    seconds = time.perf_counter() - started
    manifest = basis.manifest
    context.log.info(f"basis {basis.hash[:12]} {action}: {basis.n_items} items x {basis.dim}")
    return dg.MaterializeResult(
        metadata={
            "basis_hash": basis.hash,
            "parent_hash": manifest.parent_hash or "",
            "action": action,
            "n_items": basis.n_items,
            "dim": basis.dim,
            "encoder": f"{manifest.encoder['name']}@{manifest.encoder['version']}",
            "seconds": round(seconds, 2),
        }
    )


@dg.asset_check(asset=content_basis, blocking=True, description="Reload the basis and re-verify its hash.")
def basis_hash_verified(lte: LteResource) -> dg.AssetCheckResult:
    store = lte.store()
    current = content.current_basis(store)
    if current is None:
        return dg.AssetCheckResult(passed=False, description="no basis has been frozen yet")
    try:
        reloaded = content.load_basis(store, current.hash)
    except Exception as exc:  # the check reports any verification failure as a failed check
        return dg.AssetCheckResult(passed=False, description=str(exc))
    return dg.AssetCheckResult(passed=reloaded.hash == current.hash, metadata={"basis_hash": reloaded.hash})
