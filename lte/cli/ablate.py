"""`lte ablate`: the paper's ablation table (none + {uniform, recency, autoencoder} x integrations) on one
dataset, with the related methods as opt-in rows: ENCODE (variant multi_interest), SLSRec (integration
slsrec), DARE (--dare attention widths)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lte.cli.app import app, print_json, settings


def _split_list(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


@app.command()
def ablate(
    dataset: Annotated[str, typer.Option(help="synthetic | ml-100k | ml-latest-small")] = "synthetic",
    size: Annotated[str | None, typer.Option(help="synthetic size (tiny/small/demo/large); default from settings")] = None,
    split: Annotated[str | None, typer.Option(help="temporal | leave_one_out; default from settings")] = None,
    epochs: Annotated[int | None, typer.Option(help="max epochs per model (early stopping on validation); default from settings")] = None,
    variants: Annotated[str | None, typer.Option(
        help="comma-separated LTE variants to train: uniform,recency,autoencoder,multi_interest "
             "(default uniform,recency,autoencoder); `none` is always trained")] = None,
    integrations: Annotated[str | None, typer.Option(
        help="comma-separated integrations: prefix,late_fusion,injection,slsrec (default prefix,late_fusion,injection)")] = None,
    dare: Annotated[str | None, typer.Option(
        help="comma-separated DARE attention widths (0 = d_model): for each, none and the first "
             "variant/integration are trained again with a decoupled attention table")] = None,
    window_unit: Annotated[str | None, typer.Option(
        help="LTE window: days | history_fraction (per-user lag/window as a share of the history; "
             "better coverage on bursty MovieLens histories); default from settings")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="folder holding ml-100k/ and ml-latest-small/; default from settings")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="where the .md/.json table and the autoencoder checkpoint go; "
                                                      "default <home>/artifacts/ablation")] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="also log one MLflow run with the table")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Train none + LTE variants x integrations (+ DARE rows); print NDCG@10/100/500 with CIs and s/epoch."""
    from training.ablate import INTEGRATIONS, VARIANTS, markdown_table, run_ablation, write_outputs

    if dataset not in ("synthetic", "ml-100k", "ml-latest-small"):
        raise typer.BadParameter(f"unknown dataset {dataset!r}: use synthetic, ml-100k or ml-latest-small")
    chosen_variants, chosen_integrations = _split_list(variants), _split_list(integrations)
    try:
        dare_dims = [int(width) for width in _split_list(dare) or []]
    except ValueError:
        raise typer.BadParameter(f"--dare {dare!r}: use comma-separated integers, e.g. 0,16") from None
    for chosen, allowed, name in ((chosen_variants, VARIANTS, "--variants"), (chosen_integrations, INTEGRATIONS, "--integrations")):
        if chosen is not None and (not chosen or set(chosen) - set(allowed)):
            raise typer.BadParameter(f"{name} {','.join(chosen)!r}: use a comma-separated subset of {','.join(allowed)}")
    if window_unit not in (None, "days", "history_fraction"):
        raise typer.BadParameter(f"--window-unit {window_unit!r}: use days or history_fraction")
    base = settings()
    data = {"dataset": dataset, **({"synthetic_size": size} if size else {}), **({"data_dir": data_dir} if data_dir else {})}
    train = {**({"split": split} if split else {}), **({"epochs": epochs} if epochs else {})}
    lte = {"window_unit": window_unit} if window_unit else {}
    config = base.with_overrides(data=data, train=train, lte=lte)
    target_dir = out_dir or config.artifacts_dir / "ablation"
    log = (lambda message: None) if as_json else typer.echo
    result = run_ablation(config, progress=not as_json, log=log, variants=chosen_variants,
                          integrations=chosen_integrations, out_dir=target_dir, dare_dims=dare_dims)
    md, js = write_outputs(result, target_dir)
    run_id = None
    if mlflow:
        from training.ablate import log_to_mlflow

        run_id = log_to_mlflow(result, md, js, config)
    headline = {f"{row.lte}/{row.integration}" + ("" if row.model == "sasrec" else f"/{row.model}")
                + "_vs_none_ndcg@100": row.vs_none["ndcg@100"] for row in result.rows if row.vs_none}
    if as_json:
        print_json({**result.to_dict(), "markdown": str(md), "json": str(js), "mlflow_run_id": run_id,
                    "vs_none_ndcg@100": headline})
        return
    typer.echo(markdown_table(result))
    typer.echo(f"-> {md}")
