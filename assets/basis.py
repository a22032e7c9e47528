"""The frozen content basis: item text -> vectors, content-addressed and never rewritten."""


import time

import dagster as dg

from lte import basis as content
from lte import catalog
from lte.encoders import get_encoder
from orchestration.resources import ArtifactStoreResource, DuckDBStoreResource, LteSettingsResource
from orchestration.retries import SERVICE_RETRY, retry_transient_only

from .ingestion import items

GROUP = "basis"


@dg.asset(
    group_name=GROUP,
    deps=[items],
    kinds={"numpy"},
    owners=["team:lte"],
    retry_policy=SERVICE_RETRY,
    description="Frozen content basis over the catalog. New items extend the current basis "
    "(parent rows stay bit-identical); nothing is ever rebuilt in place.",
)
@retry_transient_only
def content_basis(
    context: dg.AssetExecutionContext,
    lte_settings: LteSettingsResource,
    duckdb: DuckDBStoreResource,
    artifact_store: ArtifactStoreResource,
) -> dg.MaterializeResult:
    with duckdb.connect() as con:
        frame = catalog.load_items(con)
    encoder = get_encoder(lte_settings.settings().basis)
    started = time.perf_counter()
    # Atomic by a commit marker: vectors and ids first, the manifest last, then CURRENT (lte/basis.py).
    basis, action = content.sync_basis(frame, encoder, artifact_store.store())
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


@dg.asset_check(
    asset=content_basis,
    blocking=True,
    description="Reload every basis from the root to the current one: hashes verify and parent "
    "rows are bit-identical in each child.",
)
def basis_hash_verified(artifact_store: ArtifactStoreResource) -> dg.AssetCheckResult:
    checks = content.verify_lineage(artifact_store.store())
    problems = [p for check in checks for p in check.problems]
    return dg.AssetCheckResult(
        passed=bool(checks) and not problems,
        description="; ".join(problems) if problems else None,
        metadata={"bases_verified": len(checks), "current": checks[-1].basis_hash if checks else ""},
    )
