"""The paper's ablation on our data: {none, uniform, recency} x {prefix, late_fusion, injection}.

One self-contained run per dataset, in its own in-memory DuckDB (the user's store is never touched):
load events + items, freeze a content basis with settings.basis, back-fill point-in-time LTE
snapshots for both variants, build the sequences once per variant, train every model with the
same seed and settings, evaluate on the test part with full ranking, and compare each model with
`none` by a paired bootstrap over users.

Outputs `<out_dir>/ablation-<dataset>.md` and `.json`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from training.data import SequenceDataset, build_dataset
from training.evaluate import EvalResult, evaluate_model, paired_difference
from training.train import train

INTEGRATIONS = ("prefix", "late_fusion", "injection")
VARIANTS = ("uniform", "recency")
TABLE_METRICS = ("ndcg@10", "ndcg@100", "ndcg@500")


@dataclass
class AblationRow:
    lte: str  # "none" | variant
    integration: str
    metrics: dict  # metric -> {"mean", "lo", "hi"}
    vs_none: dict  # metric -> PairedDifference dict (empty for the baseline row)
    attention_ratio: float | None
    s_per_epoch: float
    best_epoch: int
    epochs_run: int


@dataclass
class AblationResult:
    dataset: str
    rows: list[AblationRow]
    popularity: dict
    data_stats: dict
    settings: dict
    seconds: float
    history: dict = field(default_factory=dict)  # "<lte>/<integration>" -> per-epoch rows

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "rows": [r.__dict__ for r in self.rows], "popularity": self.popularity,
                "data_stats": self.data_stats, "settings": self.settings, "seconds": self.seconds,
                "history": self.history}


def load_events_and_items(settings):
    """The dataset named by settings.data, as an object with `.events` and `.items` frames."""
    if settings.data.dataset == "synthetic":
        from lte.datasets.synthetic import generate

        return generate(settings.data.synthetic_size, seed=settings.data.seed)
    from lte.datasets import movielens

    return movielens.load(settings.data.dataset, settings.data.data_dir)


def _prepare_store(settings):
    """In-memory store with events, items, a basis and LTE snapshots for every variant."""
    from lte import catalog, events
    from lte.basis import build_basis
    from lte.encoders import get_encoder
    from lte.feature_store import FeatureStore, backfill, snapshot_cadence_times

    data = load_events_and_items(settings)
    con = duckdb.connect()
    events.ingest_frame(con, data.events, source=settings.data.dataset)
    catalog.upsert_items(con, data.items)
    items = catalog.load_items(con)
    basis = build_basis(items["item_id"].to_numpy(), items["text"].tolist(), get_encoder(settings.basis))
    store = FeatureStore(con)
    for variant in VARIANTS:
        lte_settings = settings.lte.model_copy(update={"variant": variant})
        backfill(con, basis, snapshot_cadence_times(con, lte_settings), lte_settings, store=store)
    return con, basis, store


def run_ablation(settings, progress: bool = True, log=print) -> AblationResult:
    """Train and evaluate the 7 models of the ablation on settings.data.dataset."""
    started = time.perf_counter()
    con, basis, store = _prepare_store(settings)
    datasets: dict[str, SequenceDataset] = {v: build_dataset(con, store, basis, settings, variant=v) for v in VARIANTS}
    n_boot, seed = settings.gate.n_bootstrap, settings.train.seed

    def fit(lte: str, integration: str, dataset: SequenceDataset) -> tuple[EvalResult, object]:
        result = train(settings, dataset, integration=integration, progress=progress)
        evaluation = evaluate_model(result.model, dataset.test, dataset.item_counts, name=f"{lte}/{integration}",
                                    n_bootstrap=n_boot, seed=seed)
        log(f"{lte:>8} {integration:<12} NDCG@100 {evaluation.mean('ndcg@100'):.4f}  "
            f"best epoch {result.best_epoch}/{len(result.history)}  {result.s_per_epoch:.1f} s/epoch")
        return evaluation, result

    # `none` reads no LTE; its examples equal those of every variant (LTE never changes the examples).
    base_eval, base_fit = fit("none", "none", datasets["uniform"])
    rows = [AblationRow("none", "none", {m: base_eval.summary[m] for m in TABLE_METRICS}, {},
                        base_eval.attention_ratio, base_fit.s_per_epoch, base_fit.best_epoch, len(base_fit.history))]
    history = {"none/none": base_fit.history}
    for variant in VARIANTS:
        for integration in INTEGRATIONS:
            evaluation, fitted = fit(variant, integration, datasets[variant])
            vs_none = {m: paired_difference(evaluation, base_eval, m, n_boot, seed).to_dict() for m in TABLE_METRICS}
            rows.append(AblationRow(variant, integration, {m: evaluation.summary[m] for m in TABLE_METRICS}, vs_none,
                                    evaluation.attention_ratio, fitted.s_per_epoch, fitted.best_epoch,
                                    len(fitted.history)))
            history[f"{variant}/{integration}"] = fitted.history
    con.close()
    return AblationResult(
        dataset=settings.data.dataset if settings.data.dataset != "synthetic"
        else f"synthetic:{settings.data.synthetic_size}",
        rows=rows, popularity={m: base_eval.baseline.summary[m] for m in TABLE_METRICS},
        data_stats=datasets["uniform"].stats(),
        settings={"model": settings.model.model_dump(), "train": settings.train.model_dump(),
                  "lte": settings.lte.model_dump(mode="json"), "basis": settings.basis.model_dump()},
        seconds=time.perf_counter() - started, history=history)


def _fmt(stat: dict) -> str:
    return f"{stat['mean']:.4f} [{stat['lo']:.4f}, {stat['hi']:.4f}]"


def _rel(diff: dict) -> str:
    return f"{100 * diff['relative']:+.1f}% [{100 * diff['relative_lo']:+.1f}, {100 * diff['relative_hi']:+.1f}]"


def markdown_table(result: AblationResult) -> str:
    header = ["LTE", "integration"] + [f"NDCG@{m.split('@')[1]} [95% CI]" for m in TABLE_METRICS] + \
             [f"vs none @{m.split('@')[1]}" for m in TABLE_METRICS] + ["attn ratio", "s/epoch", "best/run epochs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result.rows:
        rel = [_rel(row.vs_none[m]) if row.vs_none else "—" for m in TABLE_METRICS]
        ratio = f"{row.attention_ratio:.2f}" if row.attention_ratio is not None else "—"
        cells = [row.lte, row.integration] + [_fmt(row.metrics[m]) for m in TABLE_METRICS] + rel + \
                [ratio, f"{row.s_per_epoch:.1f}", f"{row.best_epoch}/{row.epochs_run}"]
        lines.append("| " + " | ".join(cells) + " |")
    pop = ["popularity", "—"] + [_fmt(result.popularity[m]) for m in TABLE_METRICS] + ["—"] * 3 + ["—", "—", "—"]
    lines.append("| " + " | ".join(pop) + " |")
    stats = result.data_stats
    lines.append("")
    lines.append(f"Dataset {result.dataset}; split {stats['split']}, max_len {stats['max_len']}, "
                 f"{stats['n_items']} items; test: {stats['test']['examples']} examples of {stats['test']['users']} "
                 f"users (no-LTE share {stats['test']['no_lte_fraction']:.2f}); relative changes are paired "
                 f"bootstraps over users vs `none`; total {result.seconds:.0f} s.")
    return "\n".join(lines) + "\n"


def write_outputs(result: AblationResult, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = result.dataset.replace(":", "-")
    md, js = out_dir / f"ablation-{name}.md", out_dir / f"ablation-{name}.json"
    md.write_text(markdown_table(result))
    js.write_text(json.dumps(result.to_dict(), indent=2, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    return md, js


def log_to_mlflow(result: AblationResult, md_path: Path, json_path: Path, settings) -> str:
    """One MLflow run for the whole ablation: per-model final metrics, the table as artifacts."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(f"{settings.registry.experiment}-ablation")
    with mlflow.start_run(run_name=f"ablation-{result.dataset}") as run:
        mlflow.log_params({"dataset": result.dataset, **{f"model.{k}": v for k, v in settings.model.model_dump().items()}})
        for row in result.rows:
            key = f"{row.lte}.{row.integration}"
            for metric, stat in row.metrics.items():
                mlflow.log_metric(f"{key}.{metric.replace('@', '_at_')}", stat["mean"])
            for metric, diff in row.vs_none.items():
                mlflow.log_metric(f"{key}.rel_{metric.replace('@', '_at_')}", diff["relative"])
            for epoch_row in result.history.get(f"{row.lte}/{row.integration}", []):
                mlflow.log_metric(f"{key}.val_ndcg_at_10", epoch_row["val_ndcg@10"], step=epoch_row["epoch"])
        mlflow.log_artifact(str(md_path))
        mlflow.log_artifact(str(json_path))
        return run.info.run_id


def uplift(result: AblationResult, lte: str = "uniform", integration: str = "prefix",
           metric: str = "ndcg@100") -> dict:
    row = next(r for r in result.rows if r.lte == lte and r.integration == integration)
    return row.vs_none[metric]


