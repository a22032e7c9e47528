"""Registry: register the trained model as `challenger` with its gate verdict, block on the gate,
then move `champion`."""


from dataclasses import dataclass

import dagster as dg

from lte import basis as content
from lte.feature_store import FeatureStore
from orchestration.resources import DuckDBStoreResource, MlflowResource
from orchestration.retries import SERVICE_RETRY, retry_transient_only

from .training import OfflineEvaluation, TrainedModel

GROUP = "registry"


@dataclass
class RegisteredVersion:
    version: str
    gate: dict  # GateVerdict.to_dict()
    basis_hash: str


def _champion_scores(duckdb: DuckDBStoreResource, settings, registry, basis, k: int, challenger_users):
    """Per-user NDCG@k of the current champion on the challenger's test examples, or (None, why)."""
    from training.data import build_dataset
    from training.evaluate import evaluate_model

    version = registry.alias_version("champion")
    if version is None:
        return None, None, "no champion yet: the popularity baseline is the bar"
    champion = registry.load_bundle(version)
    if champion.manifest.basis_hash != basis.hash:
        return None, version, (
            f"champion v{version} uses basis {champion.manifest.basis_hash[:12]}, the challenger "
            f"{basis.hash[:12]}: not comparable on the same items, the baseline is the bar"
        )
    variant = champion.tags.get("lte_variant") if champion.config.integration != "none" else None
    with duckdb.connect() as con:
        dataset = build_dataset(con, FeatureStore(con), basis, settings, variant=variant)
    evaluation = evaluate_model(champion.model, dataset.test, None, name=f"champion-v{version}",
                                n_bootstrap=10, with_attention=False)
    if len(evaluation.user_ids) != len(challenger_users) or (evaluation.user_ids != challenger_users).any():
        return None, version, f"champion v{version} was evaluated on other users: the baseline is the bar"
    return evaluation.per_user[f"ndcg@{k}"], version, f"compared with champion v{version}"


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow"},
    owners=["team:lte"],
    retry_policy=SERVICE_RETRY,
    description="An MLflow model version tagged with basis_hash and the DESIGN.md tags, alias "
    "`challenger`, carrying its metrics and the NDCG gate verdict.",
)
@retry_transient_only
def registered_model(
    context: dg.AssetExecutionContext,
    duckdb: DuckDBStoreResource,
    mlflow: MlflowResource,
    trained_model: TrainedModel,
    offline_evaluation: OfflineEvaluation,
) -> dg.Output[RegisteredVersion]:
    from training.gate import evaluate_gate
    from training.registry import version_tags
    from training.train import load_checkpoint

    settings = mlflow.settings()
    basis = content.current_basis(mlflow.artifact_store.store())
    registry = mlflow.registry()
    evaluation = trained_model.evaluation
    k = settings.gate.k
    champion_ndcg, champion_version, comparison = _champion_scores(duckdb, settings, registry, basis, k,
                                                                   evaluation.user_ids)
    verdict = evaluate_gate(evaluation.per_user[f"ndcg@{k}"], champion_ndcg,
                            evaluation.baseline.per_user[f"ndcg@{k}"], settings.gate, champion_version)
    model = load_checkpoint(trained_model.checkpoint)
    metrics = {m: evaluation.mean(m) for m in evaluation.per_user}
    metrics.update({f"popularity_{m}": evaluation.baseline.mean(m) for m in evaluation.baseline.per_user})
    metrics.update({f"uplift_vs_no_lte_{m}": d["relative"] for m, d in offline_evaluation.uplift.items()})
    with duckdb.connect() as con:
        reference = _reference_as_of(FeatureStore(con), trained_model)
        tags = version_tags(settings, data_snapshot=_data_snapshot(con))
    tags["lte_reference_as_of"] = reference
    tags["comparison"] = comparison
    tags["training_run_id"] = trained_model.mlflow_run_id
    version = registry.register(model, model.config, basis.manifest, tags, metrics, verdict=verdict)
    context.log.info(f"registered v{version} as challenger; gate {'PASSED' if verdict.passed else 'FAILED'}")
    return dg.Output(
        RegisteredVersion(version=version, gate=verdict.to_dict(), basis_hash=basis.hash),
        metadata={
            "version": version,
            "basis_hash": basis.hash,
            "gate_passed": verdict.passed,
            "gate_reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in verdict.reasons)),
            "comparison": comparison,
            "lte_reference_as_of": reference,
        },
    )


def _reference_as_of(store: FeatureStore, trained: TrainedModel) -> str:
    """The last LTE snapshot the training period could see: the drift monitor's reference."""
    times = store.snapshot_times_available(trained.variant or "uniform", trained.basis_hash)
    cutoff = trained.cutoffs.get("t_val")
    if cutoff:
        import pandas as pd

        times = [t for t in times if pd.Timestamp(t) <= pd.Timestamp(cutoff)] or times
    return times[-1].isoformat() if times else ""


def _data_snapshot(con) -> str:
    count, last = con.execute("SELECT count(*), max(ts) FROM events").fetchall()[0]
    return f"events={count};last_ts={last}"


@dg.asset_check(
    asset=registered_model,
    blocking=True,
    description="The NDCG gate: the challenger must beat the champion (or, with none, popularity) "
    "on the same users and period. Failing stops promotion.",
)
def ndcg_gate(mlflow: MlflowResource, registered_model: RegisteredVersion) -> dg.AssetCheckResult:
    info = mlflow.registry().get(registered_model.version)
    passed = bool(info and info.gate_passed)
    gate = registered_model.gate
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "version": registered_model.version,
            "reference": gate.get("reference", ""),
            "uplift": float(gate.get("uplift", 0.0)),
            "ci_low": float(gate.get("ci_low", 0.0)),
            "ci_high": float(gate.get("ci_high", 0.0)),
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in gate.get("reasons", []))),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow"},
    owners=["team:lte"],
    retry_policy=SERVICE_RETRY,
    description="The `champion` alias, moved to the new version only after the blocking gate passed.",
)
@retry_transient_only
def champion_model(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, registered_model: RegisteredVersion
) -> dg.MaterializeResult:
    promotion = mlflow.registry().promote(registered_model.version, who="dagster", reason="passed the NDCG gate")
    context.log.info(f"champion: v{promotion.version} (was {promotion.previous})")
    return dg.MaterializeResult(
        metadata={"champion": promotion.version, "previous": promotion.previous or "", "basis_hash": registered_model.basis_hash}
    )
