"""The ablation as a Dagster job: the same run as `lte ablate`, launched from the UI with run config."""

import dagster as dg

from orchestration.resources import MlflowResource


class AblationConfig(dg.Config):
    dataset: str = "synthetic"  # synthetic | ml-100k | ml-latest-small
    synthetic_size: str | None = None
    split: str | None = None  # temporal | leave_one_out
    epochs: int | None = None
    window_unit: str | None = None  # days | history_fraction (better coverage on MovieLens)
    variants: list[str] | None = None  # subset of uniform, recency, autoencoder
    integrations: list[str] | None = None  # subset of prefix, late_fusion, injection


# No step retry: a retry would train the whole grid again; MLflow's HTTP retries (MlflowResource) apply.
@dg.op(description="Train none + LTE variants x integrations, write the table, log it to MLflow.")
def ablation_table(context: dg.OpExecutionContext, config: AblationConfig, mlflow: MlflowResource) -> dg.Output[str]:
    from training.ablate import log_to_mlflow, markdown_table, run_ablation, write_outputs

    base = mlflow.settings()
    data = {"dataset": config.dataset, **({"synthetic_size": config.synthetic_size} if config.synthetic_size else {})}
    train = {**({"split": config.split} if config.split else {}), **({"epochs": config.epochs} if config.epochs else {})}
    lte_overrides = {"window_unit": config.window_unit} if config.window_unit else {}
    settings = base.with_overrides(data=data, train=train, lte=lte_overrides)
    out_dir = settings.artifacts_dir / "ablation"
    result = run_ablation(settings, progress=False, log=context.log.info, variants=config.variants,
                          integrations=config.integrations, out_dir=out_dir)
    md, js = write_outputs(result, out_dir)
    run_id = log_to_mlflow(result, md, js, settings)
    return dg.Output(str(md), metadata={"table": dg.MetadataValue.md(markdown_table(result)),
                                        "markdown": dg.MetadataValue.path(str(md)), "mlflow_run_id": run_id})


@dg.job(description="The paper's ablation on one dataset (`lte ablate` as a job); configure it in the Launchpad.")
def ablation():
    ablation_table()
