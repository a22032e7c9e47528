"""Training and offline evaluation: SASRec with the LTE prefix, the same model without LTE, and
full-ranking NDCG against popularity on a later held-out period."""


from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from lte import basis as content
from lte.feature_store import FeatureStore
from lte.storage import atomic_write_bytes, staged_dir
from orchestration.resources import DuckDBStoreResource, LteSettingsResource, MlflowResource
from orchestration.retries import SERVICE_RETRY, retry_transient_only

from . import plots
from .lte import lte_live, lte_snapshots

GROUP = "training"


@dataclass
class TrainedModel:
    """What a training asset hands downstream: a checkpoint on disk plus its test evaluation."""

    checkpoint: Path
    curve: plots.Chart  # training loss and validation NDCG per epoch
    config: dict
    history: list[dict]
    best_epoch: int
    seconds: float
    evaluation: object  # training.evaluate.EvalResult (per-user arrays, summary, .baseline)
    basis_hash: str
    variant: str | None
    cutoffs: dict
    mlflow_run_id: str


CHECKPOINT = "model.pt"


def _fit(context: dg.AssetExecutionContext, duckdb: DuckDBStoreResource, mlflow: MlflowResource,
         integration: str) -> TrainedModel:
    """Train, evaluate and log to MLflow. The checkpoint and the training curve are written to a
    staged directory that appears as `checkpoints/<run>-<integration>/` only once all of it,
    MLflow logging included, succeeded: a failed step leaves no checkpoint behind."""
    from training.registry import log_training_run
    from training.train import fit_and_evaluate

    settings = mlflow.settings().with_overrides(model={"integration": integration})
    basis = content.current_basis(mlflow.artifact_store.store())
    run_dir = settings.artifacts_dir / "checkpoints" / f"{context.run_id}-{integration}"
    with staged_dir(run_dir) as staging:
        with duckdb.connect() as con:
            result, evaluation = fit_and_evaluate(con, FeatureStore(con), basis, settings,
                                                  checkpoint_path=staging / CHECKPOINT)
        context.log.info(
            f"{integration}: best epoch {result.best_epoch}, {result.s_per_epoch:.1f} s/epoch, "
            f"test NDCG@10 {evaluation.mean('ndcg@10'):.4f}"
        )
        chart = plots.training_curve(result.history, result.best_epoch, f"SASRec, integration {integration}")
        (staging / chart.file_name).write_bytes(chart.png)
        variant = None if integration == "none" else settings.lte.variant
        run_id = log_training_run(settings, result, evaluation, {"basis_hash": basis.hash, "lte_variant": variant or "none",
                                                                 "dagster_run_id": context.run_id})
    return TrainedModel(
        checkpoint=run_dir / CHECKPOINT,
        curve=chart,
        config=result.config.to_dict(),
        history=result.history,
        best_epoch=result.best_epoch,
        seconds=result.seconds,
        evaluation=evaluation,
        basis_hash=basis.hash,
        variant=variant,
        cutoffs=_cutoffs(duckdb, settings),
        mlflow_run_id=run_id,
    )


def _cutoffs(duckdb: DuckDBStoreResource, settings) -> dict:
    """The temporal split's cut-offs (as training/data.py computes them), for the drift reference."""
    if settings.train.split != "temporal":
        return {}
    from training.data import temporal_cutoffs

    with duckdb.connect() as con:
        t_val, t_test = temporal_cutoffs(con, settings)
    return {"t_val": t_val.isoformat(), "t_test": t_test.isoformat()}


def _training_metadata(model: TrainedModel) -> dict:
    ev = model.evaluation
    return {
        "integration": model.config["integration"],
        "best_epoch": model.best_epoch,
        "epochs_run": len(model.history),
        "seconds": round(model.seconds, 1),
        "test_ndcg@10": round(ev.mean("ndcg@10"), 4),
        "test_ndcg@100": round(ev.mean("ndcg@100"), 4),
        "checkpoint": dg.MetadataValue.path(str(model.checkpoint)),
        "basis_hash": model.basis_hash,
        "mlflow_run_id": model.mlflow_run_id,
        **model.curve.metadata(model.checkpoint.with_name(model.curve.file_name)),
    }


@dg.asset(
    group_name=GROUP,
    deps=[lte_snapshots, lte_live],
    kinds={"pytorch", "mlflow"},
    owners=["team:lte"],
    retry_policy=SERVICE_RETRY,
    description="SASRec with the LTE as a prefix token, trained on the temporal training period; "
    "each sequence reads the LTE snapshot live at its first item (point-in-time).",
)
@retry_transient_only
def trained_model(
    context: dg.AssetExecutionContext, duckdb: DuckDBStoreResource, mlflow: MlflowResource
) -> dg.Output[TrainedModel]:
    model = _fit(context, duckdb, mlflow, mlflow.settings().model.integration)
    return dg.Output(model, metadata=_training_metadata(model))


@dg.asset(
    group_name=GROUP,
    deps=[lte_snapshots],
    kinds={"pytorch", "mlflow"},
    owners=["team:lte"],
    retry_policy=SERVICE_RETRY,
    description="The same SASRec without LTE: the comparison that says whether long-term memory helps.",
)
@retry_transient_only
def baseline_model(
    context: dg.AssetExecutionContext, duckdb: DuckDBStoreResource, mlflow: MlflowResource
) -> dg.Output[TrainedModel]:
    model = _fit(context, duckdb, mlflow, "none")
    return dg.Output(model, metadata=_training_metadata(model))


@dataclass
class OfflineEvaluation:
    table: list[dict]  # one row per scorer: name, ndcg@10/100 (+ CIs), recall, mrr
    uplift: dict  # paired difference trained vs baseline on NDCG@10 and NDCG@100
    markdown: str


METRICS = ("ndcg@10", "ndcg@100", "ndcg@500", "recall@10", "recall@100", "mrr")


def _row(name: str, evaluation) -> dict:
    row = {"scorer": name}
    for metric in METRICS:
        if metric in evaluation.summary:
            s = evaluation.summary[metric]
            row[metric] = s["mean"]
            row[f"{metric}_ci"] = (s["lo"], s["hi"])
    return row


def evaluation_markdown(table: list[dict], uplift: dict) -> str:
    lines = ["| scorer | NDCG@10 [95% CI] | NDCG@100 [95% CI] | Recall@100 | MRR |", "|---|---|---|---|---|"]
    for row in table:
        cells = [row["scorer"]]
        for metric in ("ndcg@10", "ndcg@100"):
            lo, hi = row[f"{metric}_ci"]
            cells.append(f"{row[metric]:.4f} [{lo:.4f}, {hi:.4f}]")
        cells += [f"{row.get('recall@100', float('nan')):.4f}", f"{row.get('mrr', float('nan')):.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for metric, d in uplift.items():
        lines.append(
            f"\nLTE prefix vs no LTE, {metric}: {d['relative']:+.1%} "
            f"[{d['relative_lo']:+.1%}, {d['relative_hi']:+.1%}] (paired bootstrap over {d['n_users']} users)"
        )
    return "\n".join(lines)


@dg.asset(
    group_name=GROUP,
    kinds={"pytorch"},
    owners=["team:lte"],
    description="Full-ranking NDCG/Recall/MRR with bootstrap CIs on the held-out later period: "
    "LTE model vs no-LTE model vs popularity, with paired uplift.",
)
def offline_evaluation(
    context: dg.AssetExecutionContext,
    lte_settings: LteSettingsResource,
    trained_model: TrainedModel,
    baseline_model: TrainedModel,
) -> dg.Output[OfflineEvaluation]:
    from training.evaluate import paired_difference

    settings = lte_settings.settings()
    ours, no_lte = trained_model.evaluation, baseline_model.evaluation
    table = [
        _row(f"SASRec + LTE ({trained_model.config['integration']})", ours),
        _row("SASRec, no LTE", no_lte),
        _row("popularity", ours.baseline),
    ]
    uplift = {
        metric: paired_difference(ours, no_lte, metric, settings.gate.n_bootstrap, settings.train.seed).to_dict()
        for metric in ("ndcg@10", "ndcg@100")
    }
    markdown = evaluation_markdown(table, uplift)
    chart = plots.ndcg_comparison(table)
    # This run's report and chart appear together or not at all; latest.md then moves to them.
    run_dir = settings.artifacts_dir / "evaluation" / context.run_id
    with staged_dir(run_dir) as staging:
        (staging / "evaluation.md").write_text(markdown + "\n")
        (staging / chart.file_name).write_bytes(chart.png)
    atomic_write_bytes(run_dir.parent / "latest.md", (markdown + "\n").encode())
    return dg.Output(
        OfflineEvaluation(table=table, uplift=uplift, markdown=markdown),
        metadata={
            "ndcg_table": dg.MetadataValue.md(markdown),
            "uplift_ndcg@100": round(uplift["ndcg@100"]["relative"], 4),
            "report": dg.MetadataValue.path(str(run_dir / "evaluation.md")),
            **chart.metadata(run_dir / chart.file_name),
        },
    )
