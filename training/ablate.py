"""The paper's ablation on our data: none + {uniform, recency, autoencoder} x {prefix, late_fusion, injection}.

One self-contained run per dataset, in its own in-memory DuckDB (the user's store is never touched):
load events + items, freeze a content basis with settings.basis, back-fill point-in-time LTE
snapshots for every selected variant, build the sequences once per variant, train every model with
the same seed and settings, evaluate on the test part with full ranking, and compare each model with
`none` (and each autoencoder model with the uniform model of the same integration) by a paired
bootstrap over users.

The `autoencoder` variant is trained once per run exactly as the pipeline's `lte_autoencoder` asset
does: `lte.autoencoder.load_examples` at the cut-off t_val = last event - test_days - val_days (only
events before it are read, so neither validation nor test behaviour trains the encoder), default
AutoencoderConfig with settings.train.threads, seed settings.train.seed; its checkpoint goes to
`<out_dir>/autoencoder-<dataset>-<basis hash>.pt` and settings.lte.autoencoder_checkpoint points at it
for the snapshot back-fill. The same cut-off is used with split=leave_one_out (it is then stricter
than the split: per-user LOO targets before t_val are validation/test events for SASRec only).

Outputs `<out_dir>/ablation-<dataset>.md` and `.json`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from training.data import SequenceDataset, build_dataset, temporal_cutoffs
from training.evaluate import EvalResult, evaluate_model, paired_difference
from training.train import train

INTEGRATIONS = ("prefix", "late_fusion", "injection", "slsrec")
VARIANTS = ("uniform", "recency", "autoencoder", "multi_interest")
# What runs when the caller names none: the paper's table. slsrec and multi_interest (ENCODE) are opt-in.
DEFAULT_INTEGRATIONS = ("prefix", "late_fusion", "injection")
DEFAULT_VARIANTS = ("uniform", "recency", "autoencoder")
# Variants also compared with the uniform LTE of the same integration (same test users).
VS_UNIFORM = ("autoencoder", "multi_interest")
TABLE_METRICS = ("ndcg@10", "ndcg@100", "ndcg@500")
# Stored in the JSON/MLflow too; Recall@10 is HR@10 under leave-one-out (one target per user).
STORED_METRICS = TABLE_METRICS + ("recall@10", "recall@100", "recall@500", "mrr")


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
    # VS_UNIFORM rows only: metric -> PairedDifference dict vs the uniform row of the same
    # integration and model (empty when that row was not trained in this run)
    vs_uniform: dict = field(default_factory=dict)
    model: str = "sasrec"  # "sasrec" or "dare-<attn_dim>" (decoupled attention table)
    extra: dict = field(default_factory=dict)  # slsrec: final contrastive term and long-term gate weight
    # DARE rows only: metric -> PairedDifference dict vs the shared-attention row of the same LTE/integration
    vs_shared: dict = field(default_factory=dict)


@dataclass
class AblationResult:
    dataset: str
    rows: list[AblationRow]
    popularity: dict
    data_stats: dict
    settings: dict
    seconds: float
    history: dict = field(default_factory=dict)  # "<lte>/<integration>" -> per-epoch rows
    autoencoder: dict = field(default_factory=dict)  # training facts of the encoder (empty if not selected)
    lte_coverage: dict = field(default_factory=dict)  # variant -> test no-LTE share

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "rows": [r.__dict__ for r in self.rows], "popularity": self.popularity,
                "data_stats": self.data_stats, "settings": self.settings, "seconds": self.seconds,
                "history": self.history, "autoencoder": self.autoencoder, "lte_coverage": self.lte_coverage}


def load_events_and_items(settings):
    """The dataset named by settings.data, as an object with `.events` and `.items` frames."""
    if settings.data.dataset == "synthetic":
        from lte.datasets.synthetic import generate

        return generate(settings.data.synthetic_size, seed=settings.data.seed)
    from lte.datasets import movielens

    return movielens.load(settings.data.dataset, settings.data.data_dir)


def training_cutoff(con: duckdb.DuckDBPyConnection, settings) -> datetime:
    """t_val: the autoencoder reads only events before it (as the pipeline's `lte_autoencoder` asset
    and training/data.py's temporal split do)."""
    return temporal_cutoffs(con, settings)[0].to_pydatetime()


def train_point_in_time_autoencoder(con, basis, settings, checkpoint: Path, log=print) -> dict:
    """Train the LTE autoencoder on training-period events only and save it to `checkpoint`.

    Returns the facts for the report: cut-off, examples, epochs, validation NLL (the fixed decoder
    on the encoder's LTE vs on the uniform LTE, held-out users) and wall-clock seconds."""
    from lte.autoencoder import AutoencoderConfig, load_examples, save, train_autoencoder

    started = time.perf_counter()
    cutoff = training_cutoff(con, settings)
    config = AutoencoderConfig(threads=settings.train.threads)
    examples = load_examples(con, basis, cutoff, settings.lte, config)
    if len(examples) == 0:
        raise ValueError(f"no autoencoder training examples before {cutoff}: the lagged day window "
                         f"(lag {settings.lte.lag_days} d, window {settings.lte.window_days} d) holds no events "
                         "of any user at the anchors; shorten lte.lag_days or drop the autoencoder variant")
    model, history = train_autoencoder(examples, basis, config, seed=settings.train.seed)
    save(model, checkpoint)
    # best_epoch 0 = no epoch beat the untrained encoder, which returns exactly the uniform LTE
    best = next((row for row in history.epochs if row["epoch"] == history.best_epoch),
                {"val_nll": history.val_nll_uniform})
    facts = {"checkpoint": str(checkpoint), "trained_before": cutoff.isoformat(), "examples": len(examples),
             "users": int(examples.facts.get("n_users", 0)), "n_train": history.n_train, "n_val": history.n_val,
             "epochs_run": len(history.epochs), "best_epoch": history.best_epoch,
             "val_nll": float(best.get("val_nll", float("nan"))), "val_nll_uniform": float(history.val_nll_uniform),
             "temperature": history.temperature, "train_seconds": history.seconds,
             "seconds": time.perf_counter() - started, "config": config.to_dict()}
    log(f"autoencoder: {len(examples)} examples before {cutoff:%Y-%m-%d}, best epoch {history.best_epoch}/"
        f"{len(history.epochs)}, val NLL {facts['val_nll']:.3f} vs uniform {facts['val_nll_uniform']:.3f}, "
        f"{facts['seconds']:.1f} s")
    return facts


def _prepare_store(settings, variants: tuple[str, ...], out_dir: Path, log=print):
    """In-memory store with events, items, a basis and LTE snapshots for every selected variant.

    Returns (con, basis, store, lte settings per variant, autoencoder facts)."""
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
    autoencoder_facts: dict = {}
    per_variant = {}
    for variant in variants:
        lte_settings = settings.lte.model_copy(update={"variant": variant})
        if variant == "autoencoder":
            name = _dataset_label(settings).replace(":", "-")
            checkpoint = Path(out_dir) / f"autoencoder-{name}-{basis.hash[:12]}.pt"
            autoencoder_facts = train_point_in_time_autoencoder(con, basis, settings, checkpoint, log=log)
            lte_settings = lte_settings.model_copy(update={"autoencoder_checkpoint": str(checkpoint)})
        started = time.perf_counter()
        backfill(con, basis, snapshot_cadence_times(con, lte_settings), lte_settings, store=store)
        if variant == "autoencoder":
            autoencoder_facts["backfill_seconds"] = time.perf_counter() - started
        per_variant[variant] = lte_settings
    return con, basis, store, per_variant, autoencoder_facts


def _dataset_label(settings) -> str:
    return settings.data.dataset if settings.data.dataset != "synthetic" else f"synthetic:{settings.data.synthetic_size}"


def _selection(values, allowed: tuple[str, ...], what: str, default: tuple[str, ...]) -> tuple[str, ...]:
    chosen = tuple(default if values is None else values)
    unknown = [v for v in chosen if v not in allowed]
    if unknown or not chosen:
        raise ValueError(f"unknown or empty {what} {unknown or list(chosen)}: choose from {', '.join(allowed)}")
    return tuple(v for v in allowed if v in chosen)  # canonical order, no duplicates


def _model_label(attn_dim: int | None) -> str:
    return "sasrec" if attn_dim is None else f"dare-{attn_dim}"


def run_ablation(settings, progress: bool = True, log=print, variants=None, integrations=None,
                 out_dir: Path | None = None, dare_dims=()) -> AblationResult:
    """Train and evaluate `none` + variants x integrations on settings.data.dataset.

    variants/integrations: subsets of VARIANTS/INTEGRATIONS (None = DEFAULT_VARIANTS/INTEGRATIONS).
    `none` is always trained: every relative change is a paired bootstrap against it. dare_dims: for
    each attention width, two more rows with DARE's decoupled attention table: none/none and the first
    variant with the first integration (0 = d_model). out_dir holds the autoencoder checkpoint
    (default settings.artifacts_dir / "ablation")."""
    variants = _selection(variants, VARIANTS, "LTE variants", DEFAULT_VARIANTS)
    integrations = _selection(integrations, INTEGRATIONS, "integrations", DEFAULT_INTEGRATIONS)
    dare_dims = [int(d) or settings.model.d_model for d in dare_dims]
    out_dir = Path(out_dir or settings.artifacts_dir / "ablation")
    started = time.perf_counter()
    con, basis, store, per_variant, autoencoder_facts = _prepare_store(settings, variants, out_dir, log=log)
    datasets: dict[str, SequenceDataset] = {
        v: build_dataset(con, store, basis, settings, variant=v) for v in variants}
    n_boot, seed = settings.gate.n_bootstrap, settings.train.seed

    def fit(lte: str, integration: str, dataset: SequenceDataset,
            attn_dim: int | None = None) -> tuple[EvalResult, object]:
        model = _model_label(attn_dim)
        run_settings = settings if attn_dim is None else settings.with_overrides(
            model={"dare": True, "attn_dim": attn_dim})
        result = train(run_settings, dataset, integration=integration, progress=progress)
        evaluation = evaluate_model(result.model, dataset.test, dataset.item_counts,
                                    name=f"{lte}/{integration}/{model}", n_bootstrap=n_boot, seed=seed)
        log(f"{lte:>14} {integration:<12} {model:<8} NDCG@100 {evaluation.mean('ndcg@100'):.4f}  NDCG@500 "
            f"{evaluation.mean('ndcg@500'):.4f}  best epoch {result.best_epoch}/{len(result.history)}  "
            f"{result.s_per_epoch:.1f} s/epoch")
        return evaluation, result

    # `none` reads no LTE; its examples equal those of every variant (LTE never changes the examples).
    reference = datasets[variants[0]]
    base_eval, base_fit = fit("none", "none", reference)
    rows = [AblationRow("none", "none", {m: base_eval.summary[m] for m in STORED_METRICS}, {},
                        base_eval.attention_ratio, base_fit.s_per_epoch, base_fit.best_epoch, len(base_fit.history))]
    history = {"none/none": base_fit.history}
    uniform_evals: dict[tuple[str, str], EvalResult] = {}
    shared_evals: dict[tuple[str, str], EvalResult] = {("none", "none"): base_eval}

    def add_row(variant: str, integration: str, attn_dim: int | None = None) -> None:
        dataset = reference if variant == "none" else datasets[variant]
        evaluation, fitted = fit(variant, integration, dataset, attn_dim)
        model = _model_label(attn_dim)
        vs_none = {m: paired_difference(evaluation, base_eval, m, n_boot, seed).to_dict() for m in TABLE_METRICS}
        vs_uniform = {}
        if variant == "uniform":
            uniform_evals[integration, model] = evaluation
        elif variant in VS_UNIFORM and (integration, model) in uniform_evals:
            vs_uniform = {m: paired_difference(evaluation, uniform_evals[integration, model], m, n_boot, seed).to_dict()
                          for m in TABLE_METRICS}
        vs_shared = {}
        if attn_dim is None:
            shared_evals[variant, integration] = evaluation
        elif (variant, integration) in shared_evals:
            vs_shared = {m: paired_difference(evaluation, shared_evals[variant, integration], m, n_boot, seed).to_dict()
                         for m in TABLE_METRICS}
        extra = {}
        if integration == "slsrec":
            extra = {"contrastive": fitted.history[-1]["contrastive"],
                     "long_term_gate": _mean_long_term_gate(fitted.model, dataset.test)}
        rows.append(AblationRow(variant, integration, {m: evaluation.summary[m] for m in STORED_METRICS}, vs_none,
                                evaluation.attention_ratio, fitted.s_per_epoch, fitted.best_epoch,
                                len(fitted.history), vs_uniform, model, extra, vs_shared))
        history[f"{variant}/{integration}" + ("" if attn_dim is None else f"/{model}")] = fitted.history

    for variant in variants:
        for integration in integrations:
            add_row(variant, integration)
    for attn_dim in dare_dims:
        add_row("none", "none", attn_dim)
        add_row(variants[0], integrations[0], attn_dim)
    con.close()
    return AblationResult(
        dataset=_dataset_label(settings),
        rows=rows, popularity={m: base_eval.baseline.summary[m] for m in STORED_METRICS},
        data_stats=reference.stats(),
        settings={"model": settings.model.model_dump(), "train": settings.train.model_dump(),
                  "lte": settings.lte.model_dump(mode="json"), "basis": settings.basis.model_dump(),
                  "variants": list(variants), "integrations": list(integrations), "dare_dims": dare_dims},
        seconds=time.perf_counter() - started, history=history, autoencoder=autoencoder_facts,
        lte_coverage={v: 1.0 - d.stats()["test"]["no_lte_fraction"] for v, d in datasets.items()})


def _mean_long_term_gate(model, part, max_examples: int = 2000) -> float:
    """slsrec: mean weight the fusion gate gives the long-term representation (users with an LTE)."""
    n = min(len(part), max_examples)
    has_lte = part.lte_mask[:n].reshape(n, -1).any(1)
    if not has_lte.any():
        return float("nan")
    gate = model.long_term_gate(part.items[:n][has_lte], part.lte[:n][has_lte], part.lte_mask[:n][has_lte])
    return float(gate.mean())


def _fmt(stat: dict) -> str:
    return f"{stat['mean']:.4f} [{stat['lo']:.4f}, {stat['hi']:.4f}]"


def _rel(diff: dict) -> str:
    return f"{100 * diff['relative']:+.1f}% [{100 * diff['relative_lo']:+.1f}, {100 * diff['relative_hi']:+.1f}]"


def markdown_table(result: AblationResult) -> str:
    header = ["LTE", "integration", "model"] + [f"NDCG@{m.split('@')[1]} [95% CI]" for m in TABLE_METRICS] + \
             [f"vs none @{m.split('@')[1]}" for m in TABLE_METRICS] + ["attn ratio", "s/epoch", "best/run epochs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result.rows:
        rel = [_rel(row.vs_none[m]) if row.vs_none else "—" for m in TABLE_METRICS]
        ratio = f"{row.attention_ratio:.2f}" if row.attention_ratio is not None else "—"
        cells = [row.lte, row.integration, row.model] + [_fmt(row.metrics[m]) for m in TABLE_METRICS] + rel + \
                [ratio, f"{row.s_per_epoch:.1f}", f"{row.best_epoch}/{row.epochs_run}"]
        lines.append("| " + " | ".join(cells) + " |")
    pop = ["popularity", "—", "—"] + [_fmt(result.popularity[m]) for m in TABLE_METRICS] + ["—"] * 3 + ["—", "—", "—"]
    lines.append("| " + " | ".join(pop) + " |")
    stats = result.data_stats
    coverage = ", ".join(f"{v} {share:.2f}" for v, share in result.lte_coverage.items())
    lines.append("")
    lines.append(f"Dataset {result.dataset}; split {stats['split']}, max_len {stats['max_len']}, "
                 f"{stats['n_items']} items; test: {stats['test']['examples']} examples of {stats['test']['users']} "
                 f"users; share of test examples with a non-empty LTE: {coverage}; relative changes are paired "
                 f"bootstraps over users vs `none`; total {result.seconds:.0f} s.")
    if stats["split"] == "leave_one_out":
        lines += ["", "Leave-one-out, full ranking over all items (one target per user, so Recall@10 = HR@10):", "",
                  "| LTE | integration | model | HR@10 [95% CI] | NDCG@10 [95% CI] | MRR [95% CI] |",
                  "|---|---|---|---|---|---|"]
        for row in result.rows:
            lines.append(f"| {row.lte} | {row.integration} | {row.model} | {_fmt(row.metrics['recall@10'])} | "
                         f"{_fmt(row.metrics['ndcg@10'])} | {_fmt(row.metrics['mrr'])} |")
        lines.append(f"| popularity | — | — | {_fmt(result.popularity['recall@10'])} | {_fmt(result.popularity['ndcg@10'])} | "
                     f"{_fmt(result.popularity['mrr'])} |")
    vs_uniform_rows = [row for row in result.rows if row.vs_uniform]
    if vs_uniform_rows:
        lines += ["", "Variants vs the uniform LTE (same integration and model; paired bootstrap over users; the paper's "
                  "autoencoder: +2.1% NDCG@500):", "",
                  "| LTE | integration | model | " + " | ".join(f"vs uniform @{m.split('@')[1]}" for m in TABLE_METRICS)
                  + " |", "|---|---|---|" + "---|" * len(TABLE_METRICS)]
        for row in vs_uniform_rows:
            lines.append(f"| {row.lte} | {row.integration} | {row.model} | "
                         + " | ".join(_rel(row.vs_uniform[m]) for m in TABLE_METRICS) + " |")
    dare_rows = [row for row in result.rows if row.vs_shared]
    if dare_rows:
        lines += ["", "DARE vs shared attention (same LTE and integration; paired bootstrap over users):", "",
                  "| LTE | integration | model | " + " | ".join(f"vs shared @{m.split('@')[1]}" for m in TABLE_METRICS)
                  + " | s/epoch |", "|---|---|---|" + "---|" * (len(TABLE_METRICS) + 1)]
        for row in dare_rows:
            lines.append(f"| {row.lte} | {row.integration} | {row.model} | "
                         + " | ".join(_rel(row.vs_shared[m]) for m in TABLE_METRICS) + f" | {row.s_per_epoch:.1f} |")
    for row in result.rows:
        if row.extra:
            lines += ["", f"SLSRec ({row.lte}/{row.integration}/{row.model}): final InfoNCE term "
                      f"{row.extra['contrastive']:.3f}; the fusion gate gives the long-term representation "
                      f"{row.extra['long_term_gate']:.2f} of the weight at the ranking position (users with an LTE)."]
    if result.autoencoder:
        ae = result.autoencoder
        lines += ["", f"Autoencoder training (point-in-time, events before {ae['trained_before']}): {ae['examples']} "
                  f"examples of {ae['users']} users, best epoch {ae['best_epoch']}/{ae['epochs_run']}, held-out "
                  f"decoder NLL {ae['val_nll']:.3f} vs uniform {ae['val_nll_uniform']:.3f}; "
                  f"{ae['train_seconds']:.1f} s training ({ae['seconds']:.1f} s with example loading), "
                  f"{ae.get('backfill_seconds', float('nan')):.1f} s snapshot back-fill."]
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

    from training.registry import experiment_id

    with mlflow.start_run(experiment_id=experiment_id(settings, "ablation"), run_name=f"ablation-{result.dataset}") as run:
        mlflow.log_params({"dataset": result.dataset, **{f"model.{k}": v for k, v in settings.model.model_dump().items()}})
        for row in result.rows:
            key = f"{row.lte}.{row.integration}" + ("" if row.model == "sasrec" else f".{row.model}")
            for metric, stat in row.metrics.items():
                mlflow.log_metric(f"{key}.{metric.replace('@', '_at_')}", stat["mean"])
            for metric, diff in row.vs_none.items():
                mlflow.log_metric(f"{key}.rel_{metric.replace('@', '_at_')}", diff["relative"])
            for metric, diff in row.vs_uniform.items():
                mlflow.log_metric(f"{key}.rel_uniform_{metric.replace('@', '_at_')}", diff["relative"])
            history_key = f"{row.lte}/{row.integration}" + ("" if row.model == "sasrec" else f"/{row.model}")
            for epoch_row in result.history.get(history_key, []):
                mlflow.log_metric(f"{key}.val_ndcg_at_10", epoch_row["val_ndcg@10"], step=epoch_row["epoch"])
        if result.autoencoder:
            mlflow.log_metric("autoencoder.train_seconds", result.autoencoder["train_seconds"])
        mlflow.log_artifact(str(md_path))
        mlflow.log_artifact(str(json_path))
        return run.info.run_id


def uplift(result: AblationResult, lte: str = "uniform", integration: str = "prefix",
           metric: str = "ndcg@100", model: str = "sasrec") -> dict:
    row = next(r for r in result.rows if (r.lte, r.integration, r.model) == (lte, integration, model))
    return row.vs_none[metric]
