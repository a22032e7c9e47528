"""`lte drift`: Evidently drift of the live (or as-of) LTEs against what the champion was trained on.

Reference: the LTE snapshot named by the champion's registry tags (`basis_hash`, `lte_variant`,
`lte_reference_as_of`), or `--reference-as-of T` (a stored snapshot of the live variant and basis).
Current: the live table, or with `--as-of T` the LTEs as they were at T (the stored snapshot at T,
else computed from the events before T with the champion's lag/window: nothing after T is read).
Each run writes HTML + JSON under `drift_dir` and adds a snapshot to the Evidently workspace.
MLflow is touched only here (to read the champion's tags), never in `lte/` proper.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import typer

from lte.cli.app import app, print_json, settings


@dataclass(frozen=True)
class ReferenceSpec:
    """Which LTE snapshot is the reference, and where that choice came from."""

    basis_hash: str | None
    variant: str
    as_of: datetime | None  # None = the latest stored snapshot of (variant, basis)
    lag_days: float | None
    window_days: float | None
    source: str  # "champion v3" or "--reference-as-of"


def _parse_time(value: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise typer.BadParameter(f"{value!r} is not an ISO date/time (e.g. 2025-06-01 or 2025-06-01T12:00:00+00:00)",
                                 param_hint=option) from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def champion_reference_spec(s) -> ReferenceSpec:
    """The champion's training-time LTE snapshot, from its MLflow version tags."""
    from training.registry import Registry

    champion = Registry.from_settings(s).get("champion")
    if champion is None:
        raise LookupError(
            "no champion model in the registry: train and promote one (`lte demo`), "
            "or pass --reference-as-of T to compare against a stored LTE snapshot"
        )
    tags = champion.tags
    as_of = tags.get("lte_reference_as_of")
    return ReferenceSpec(
        basis_hash=tags.get("basis_hash") or champion.basis_hash,
        variant=tags.get("lte_variant", s.lte.variant),
        as_of=_parse_time(as_of, "lte_reference_as_of tag") if as_of else None,
        lag_days=float(tags["lag_days"]) if tags.get("lag_days") else None,
        window_days=float(tags["window_days"]) if tags.get("window_days") else None,
        source=f"champion v{champion.version}",
    )


def _current_batch(con, store, s, spec: ReferenceSpec, as_of: datetime | None):
    """Live LTEs, or the LTEs at `as_of` (stored snapshot at exactly that time, else computed)."""
    if as_of is None:
        return store.live()
    stored = store.snapshot_times_available(spec.variant, spec.basis_hash)
    if as_of in stored:
        return store.snapshot(as_of=as_of, variant=spec.variant, basis_hash=spec.basis_hash)
    from lte.basis import current_basis, load_basis
    from lte.embeddings import compute_lte
    from lte.storage import open_store

    artifacts = open_store(s.storage.uri, s.artifacts_dir, s.storage.s3_endpoint_url)
    basis = load_basis(artifacts, spec.basis_hash) if spec.basis_hash else current_basis(artifacts)
    if basis is None:
        raise LookupError("no content basis in the artifact store: run `lte demo` (or the basis asset) first")
    lte_settings = s.lte.model_copy(update={
        "variant": spec.variant,
        **({"lag_days": spec.lag_days} if spec.lag_days is not None else {}),
        **({"window_days": spec.window_days} if spec.window_days is not None else {}),
    })
    return compute_lte(con, basis, as_of, lte_settings)


@app.command()
def drift(
    as_of: str = typer.Option(None, "--as-of", help="Compare the LTEs as of this time instead of the live table."),
    reference_as_of: str = typer.Option(
        None, "--reference-as-of", help="Use the stored LTE snapshot at this time as reference (no registry needed)."
    ),
    workspace: bool = typer.Option(True, "--workspace/--no-workspace", help="Add the run to the Evidently workspace."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Evidently drift report of live LTEs vs the champion's training LTEs (HTML + JSON + dashboard)."""
    from lte.db import connect
    from lte.feature_store import FeatureStore
    from monitoring.dashboard import add_to_workspace
    from monitoring.drift import drift_report, should_retrain

    s = settings()
    current_as_of = _parse_time(as_of, "--as-of") if as_of else None
    con = connect(s.duckdb_path)
    try:
        store = FeatureStore(con)
        store.ensure_schema()
        if reference_as_of:
            live = store.live()
            spec = ReferenceSpec(live.basis_hash, live.variant or s.lte.variant,
                                 _parse_time(reference_as_of, "--reference-as-of"), None, None, "--reference-as-of")
        else:
            spec = champion_reference_spec(s)
        reference = store.snapshot(as_of=spec.as_of, variant=spec.variant, basis_hash=spec.basis_hash)
        current = _current_batch(con, store, s, spec, current_as_of)
    finally:
        con.close()
    if len(current.n_events) == 0:
        raise typer.BadParameter("no current LTEs: publish live LTEs (`lte demo`) or pass --as-of T", param_hint="--as-of")

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    result = drift_report(reference, current, s.drift_dir, s.drift, run_name=f"cli-{stamp}")
    run = add_to_workspace(s.evidently_workspace, result) if workspace else None
    output = {
        **result.to_dict(),
        "reference_source": spec.source,
        "retrain": should_retrain(result, s.drift),
        "workspace": run.to_dict() if run else None,
    }
    if as_json:
        print_json(output)
        return
    verdict = "[bold red]DRIFT[/]" if result.drifted else "[bold green]no drift[/]"
    from rich import print as rprint

    rprint(f"{verdict}  {result.method} score={result.score:.4g} "
           f"({'bootstrap q=' + str(result.quantile_probability) if result.threshold is None else 'threshold ' + str(result.threshold)})")
    rprint(f"reference: {spec.source}, as_of {result.reference_as_of}, {result.n_reference} users "
           f"({result.empty_share_reference:.1%} empty)")
    rprint(f"current:   as_of {result.current_as_of}, {result.n_current} users ({result.empty_share_current:.1%} empty)")
    rprint(f"share of drifted dimensions: {result.share_drifted_dims:.3f}")
    for column, stats in result.summary.items():
        rprint(f"  {column:<26} {stats['reference_mean']:.4g} -> {stats['current_mean']:.4g}"
               f"  (normed Wasserstein {stats['drift_score']:.3f}{', drifted' if stats['drifted'] else ''})")
    rprint(f"report: {result.html_path}")
    if run:
        rprint(f"dashboard: project {run.project_id} ({run.n_snapshots} runs) — "
               f"`evidently ui --workspace {s.evidently_workspace} --host 127.0.0.1`")
    rprint(f"retrain requested: {output['retrain']} (drift.retrain_on_drift={s.drift.retrain_on_drift})")
