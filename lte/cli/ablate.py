"""`lte ablate`: the paper's ablation table ({none, uniform, recency} x integrations) on one dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lte.cli.app import app, print_json, settings


@app.command()
def ablate(
    dataset: Annotated[str, typer.Option(help="synthetic | ml-100k | ml-latest-small")] = "synthetic",
    size: Annotated[str | None, typer.Option(help="synthetic size (tiny/small/demo/large); default from settings")] = None,
    split: Annotated[str | None, typer.Option(help="temporal | leave_one_out; default from settings")] = None,
    epochs: Annotated[int | None, typer.Option(help="max epochs per model; default from settings")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="where the .md/.json table goes; default <home>/artifacts/ablation")] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="also log one MLflow run with the table")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Train none + {uniform, recency} x {prefix, late_fusion, injection}; print NDCG@10/100/500 with CIs."""
    from training.ablate import markdown_table, run_ablation, uplift, write_outputs

    if dataset not in ("synthetic", "ml-100k", "ml-latest-small"):
        raise typer.BadParameter(f"unknown dataset {dataset!r}: use synthetic, ml-100k or ml-latest-small")
    base = settings()
    data = {"dataset": dataset, **({"synthetic_size": size} if size else {})}
    train = {**({"split": split} if split else {}), **({"epochs": epochs} if epochs else {})}
    config = base.with_overrides(data=data, train=train)
    log = (lambda message: None) if as_json else typer.echo
    result = run_ablation(config, progress=not as_json, log=log)
    md, js = write_outputs(result, out_dir or config.artifacts_dir / "ablation")
    run_id = None
    if mlflow:
        from training.ablate import log_to_mlflow

        run_id = log_to_mlflow(result, md, js, config)
    if as_json:
        print_json({**result.to_dict(), "markdown": str(md), "json": str(js), "mlflow_run_id": run_id,
                    "uniform_prefix_vs_none_ndcg@100": uplift(result)})
        return
    typer.echo(markdown_table(result))
    u = uplift(result)
    typer.echo(f"uniform/prefix vs none, NDCG@100: {100 * u['relative']:+.1f}% "
               f"[{100 * u['relative_lo']:+.1f}, {100 * u['relative_hi']:+.1f}]  -> {md}")
