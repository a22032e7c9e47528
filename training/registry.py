"""The MLflow model registry for LTE models: one registered model, versions tied to a basis hash.

Every version is an MLflow pyfunc (so `mlflow models serve` can score it) whose artifacts are the
SASRec state_dict, its `SASRecConfig`, the basis manifest and the basis item ids (the model's
vocabulary: item index = basis row + 1). Loading rebuilds `SASRec(config)` from the state_dict, so a
version never depends on pickled code.

Aliases and promotion:
- `challenger` is set on every registration.
- `champion` moves only through `promote`: the version must carry a passed gate verdict
  (`gate.passed = true`) computed against the champion of the moment, or the promotion is forced,
  which records who and why on the version.
- Each promotion pushes the outgoing champion onto the registered model's `champion_history` tag
  (a JSON list), so `rollback` moves `champion` back in one step (and again, further back).

Works against any MLflow tracking URI: the embedded sqlite file under LTE_HOME (artifacts in a local
directory or wherever `registry.artifact_location` says) or a tracking server (artifacts proxied).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, DataType, ParamSchema, ParamSpec, Schema

from training.model import SASRec, SASRecConfig

# DESIGN.md: every version carries these tags.
REQUIRED_TAGS = (
    "basis_hash", "basis_family", "lte_variant", "integration", "lag_days", "window_days",
    "data_snapshot", "git_commit",
)
HISTORY_TAG = "champion_history"  # registered-model tag: JSON list of earlier champions, newest last
PREVIOUS_TAG = "previous_champion"  # registered-model tag: the version `rollback` would restore
_HISTORY_MAX = 100  # keeps the tag value well under MLflow's length limit
_PROJECT_ROOT = Path(__file__).resolve().parents[1]
# tqdm bars on every artifact download would bury the CLI's output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# The pyfunc contract: one row per request. item_ids are catalog ids of the user's recent events,
# oldest first (ids outside the model's basis are ignored); lte is the live LTE vector and
# lte_events its event count (0 = no LTE: the model's learned "no LTE" token is used).
PYFUNC_SIGNATURE = ModelSignature(
    inputs=Schema([
        ColSpec(Array(DataType.long), "item_ids"),
        ColSpec(Array(DataType.double), "lte"),
        ColSpec(DataType.long, "lte_events"),
    ]),
    outputs=Schema([ColSpec(Array(DataType.long), "item_ids"), ColSpec(Array(DataType.double), "scores")]),
    params=ParamSchema([ParamSpec("k", DataType.long, 10)]),
)


class RegistryError(RuntimeError):
    """A registry operation that cannot proceed; the message says what to do instead."""


class PromotionRefused(RegistryError):
    pass


class LoadedModel(NamedTuple):
    model: SASRec  # in eval mode
    config: SASRecConfig
    tags: dict[str, str]
    manifest: Any  # lte.basis.BasisManifest


@dataclass(frozen=True)
class ModelBundle:
    """Everything a loaded version holds; `LoadedModel` is its first four fields."""

    version: str
    model: SASRec
    config: SASRecConfig
    tags: dict[str, str]
    manifest: Any
    item_ids: np.ndarray  # (n_items,) int64, basis order: item index i + 1 is item_ids[i]


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: list[str]
    basis_hash: str | None
    gate_passed: bool | None  # None = no gate verdict recorded
    metrics: dict[str, float]
    params: dict[str, str]  # run parameters: `model.<SASRecConfig field>`
    tags: dict[str, str]
    created_at: datetime
    run_id: str | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Promotion:
    version: str
    previous: str | None
    forced: bool
    who: str
    reason: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict:
        return asdict(self)


class SASRecPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc around a SASRec state_dict: scores requests shaped like PYFUNC_SIGNATURE."""

    def load_context(self, context) -> None:
        from training.serve import Ranker

        paths = context.artifacts
        self.config = SASRecConfig(**json.loads(Path(paths["sasrec_config"]).read_text()))
        self.manifest_dict = json.loads(Path(paths["basis_manifest"]).read_text())
        self.item_ids = np.load(paths["item_ids"])
        model = SASRec(self.config)
        model.load_state_dict(torch.load(paths["state_dict"], map_location="cpu", weights_only=True))
        self.model = model.eval()
        self.ranker = Ranker(self.model, self.item_ids)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        k = int((params or {}).get("k", 10))
        histories = [np.asarray(ids, dtype=np.int64) for ids in model_input["item_ids"]]
        lte = np.stack([np.asarray(v, dtype=np.float32) for v in model_input["lte"]])
        lte_mask = np.asarray(model_input["lte_events"], dtype=np.int64) > 0
        top_ids, scores = self.ranker.rank(histories, lte, lte_mask, k)
        return pd.DataFrame({"item_ids": list(top_ids), "scores": list(scores.astype(np.float64))})


class Registry:
    """One registered model in one MLflow tracking/registry store."""

    def __init__(
        self,
        tracking_uri: str,
        model_name: str,
        experiment: str = "lte",
        artifact_location: str | None = None,
        store=None,
    ):
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.store = store  # lte.storage ArtifactStore: finds basis item ids when not passed
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def from_settings(cls, settings) -> Registry:
        from lte.storage import open_store

        uri = settings.mlflow_tracking_uri
        artifact_location = settings.registry.artifact_location
        if artifact_location is None and uri.startswith("sqlite:"):
            # Without this MLflow writes artifacts into ./mlruns of whatever directory we run in.
            artifact_location = settings.mlflow_artifact_location
        store = open_store(settings.storage.uri, settings.artifacts_dir, settings.storage.s3_endpoint_url)
        return cls(uri, settings.registry.model_name, settings.registry.experiment, artifact_location, store)

    # ---- registration -------------------------------------------------------------------------

    def register(
        self,
        model: SASRec,
        sasrec_config: SASRecConfig,
        basis_manifest,
        tags: dict[str, Any],
        metrics: dict[str, float],
        verdict=None,
        item_ids: np.ndarray | None = None,
    ) -> str:
        """Log `model` as a new version (alias `challenger`) and return its version number.

        `tags` must hold the DESIGN.md tags not derivable here (lte_variant, lag_days, window_days,
        data_snapshot; git_commit defaults to the working tree's HEAD); basis_hash, basis_family and
        integration come from the manifest and config. Metric names are made MLflow-safe
        (`ndcg@100` -> `ndcg_100`). `item_ids` is the basis item order, read from the store if None.
        """
        manifest_dict = basis_manifest.to_dict()
        all_tags = self._version_tags(tags, manifest_dict, sasrec_config)
        if item_ids is None:
            item_ids = self._basis_item_ids(manifest_dict["basis_hash"])
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if len(item_ids) != sasrec_config.n_items:
            raise RegistryError(
                f"the model has {sasrec_config.n_items} items but the basis order has {len(item_ids)}: "
                "register the model with the basis it was trained on"
            )

        self._use_this_store()
        experiment_id = self._experiment_id()
        with tempfile.TemporaryDirectory(prefix="lte-register-") as tmp:
            tmp = Path(tmp)
            torch.save(model.state_dict(), tmp / "state_dict.pt")
            (tmp / "sasrec_config.json").write_text(json.dumps(sasrec_config.to_dict(), indent=2))
            (tmp / "basis_manifest.json").write_text(json.dumps(manifest_dict, indent=2, default=str))
            np.save(tmp / "item_ids.npy", item_ids)
            artifacts = {name: str(tmp / file) for name, file in (
                ("state_dict", "state_dict.pt"), ("sasrec_config", "sasrec_config.json"),
                ("basis_manifest", "basis_manifest.json"), ("item_ids", "item_ids.npy"))}
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"sasrec-{all_tags['integration']}") as run:
                mlflow.set_tags(all_tags)
                mlflow.log_params({f"model.{k}": v for k, v in sasrec_config.to_dict().items()})
                run_metrics = {_metric_key(k): float(v) for k, v in metrics.items()}
                if verdict is not None:
                    run_metrics.update(verdict.as_metrics())
                mlflow.log_metrics(run_metrics)
                mlflow.log_dict(manifest_dict, "basis_manifest.json")
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=SASRecPyfunc(),
                    artifacts=artifacts,
                    signature=PYFUNC_SIGNATURE,
                    input_example=(_input_example(item_ids, sasrec_config), {"k": 5}),
                    pip_requirements=_pip_requirements(),
                    registered_model_name=self.model_name,
                    metadata={"basis_hash": all_tags["basis_hash"]},
                )
                run_id = run.info.run_id
        version = str(info.registered_model_version)
        try:
            for key, value in all_tags.items():
                self.client.set_model_version_tag(self.model_name, version, key, value)
            self.client.set_model_version_tag(self.model_name, version, "run_id", run_id)
            if verdict is not None:
                self.record_gate(version, verdict, log_metrics=False)
            self.client.set_registered_model_alias(self.model_name, "challenger", version)
        except Exception:
            # A version without its tags (basis hash, gate) must not be left behind for serving or
            # promotion to find: delete it, mark the run failed, and let the caller retry.
            self._discard(version, run_id)
            raise
        return version

    def _discard(self, version: str, run_id: str) -> None:
        """Best effort: remove a half-registered version and mark its run FAILED (it keeps its logs)."""
        for undo in (lambda: self.client.delete_model_version(self.model_name, version),
                     lambda: self.client.set_terminated(run_id, status="FAILED")):
            try:
                undo()
            except Exception:  # noqa: BLE001 - the original error is what the caller must see
                pass

    def record_gate(self, version: str, verdict, log_metrics: bool = True) -> None:
        """Store a gate verdict (tags + metrics) on an existing version; promotion reads `gate.passed`."""
        version = str(version)
        mv = self._version(version)
        for key, value in verdict.as_tags().items():
            self.client.set_model_version_tag(self.model_name, version, key, value)
        if log_metrics and mv.run_id:
            for key, value in verdict.as_metrics().items():
                self.client.log_metric(mv.run_id, key, value)

    # ---- aliases ------------------------------------------------------------------------------

    def promote(self, version: str, force: bool = False, who: str | None = None,
                reason: str | None = None) -> Promotion:
        """Point `champion` at `version`.

        Without `force` the version must carry a passed gate verdict whose comparison was made
        against the current champion (or against the baseline when there is none). With `force`,
        `reason` is required and who/why/when are recorded on the version.
        """
        version = str(version)
        mv = self._version(version)
        current = self.alias_version("champion")
        if current == version:
            raise PromotionRefused(f"version {version} is already the champion of {self.model_name}")
        who = who or getpass.getuser()
        if force:
            if not reason:
                raise PromotionRefused("a forced promotion needs a reason: add --reason '...'")
        else:
            self._check_gate(mv, current)
            reason = reason or "passed the NDCG gate"

        history = self._history()
        if current is not None:
            history.append(current)
        promotion = Promotion(version=version, previous=current, forced=force, who=who, reason=reason)
        self.client.set_registered_model_alias(self.model_name, "champion", version)
        self._set_history(history)
        for key, value in {
            "promotion.at": promotion.at.isoformat(),
            "promotion.by": who,
            "promotion.forced": str(force).lower(),
            "promotion.reason": reason[:4000],
            "promotion.previous": current or "",
        }.items():
            self.client.set_model_version_tag(self.model_name, version, key, value)
        return promotion

    def rollback(self, who: str | None = None) -> Promotion:
        """Move `champion` back to the version it replaced; the rolled-back version is tagged."""
        history = self._history()
        current = self.alias_version("champion")
        if not history:
            raise RegistryError(
                f"{self.model_name} has no earlier champion to roll back to "
                f"(champion: {current or 'none'}); promote a version with `lte promote VERSION`"
            )
        target = history.pop()
        self._version(target)  # fails clearly if it was deleted
        who = who or getpass.getuser()
        promotion = Promotion(version=target, previous=current, forced=False, who=who,
                              reason=f"rollback from version {current}")
        self.client.set_registered_model_alias(self.model_name, "champion", target)
        self._set_history(history)
        if current is not None:
            self.client.set_model_version_tag(self.model_name, current, "rolled_back.at", promotion.at.isoformat())
            self.client.set_model_version_tag(self.model_name, current, "rolled_back.by", who)
        return promotion

    # ---- reading ------------------------------------------------------------------------------

    def alias_version(self, alias: str) -> str | None:
        """The version an alias points at, or None when the alias (or the model) does not exist."""
        try:
            return str(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException as exc:
            if _not_found(exc):
                return None
            raise

    def get(self, alias_or_version: str) -> VersionInfo | None:
        """One version (by alias or number) with tags, aliases and run metrics; None if absent."""
        version = self._resolve(alias_or_version, must_exist=False)
        return None if version is None else self._info(self._version(version))

    def describe_alias(self, alias: str) -> dict | None:
        info = self.get(alias)
        return None if info is None else info.to_dict()

    def list_versions(self) -> list[VersionInfo]:
        """Every version, newest first."""
        try:
            versions = self.client.search_model_versions(f"name='{self.model_name}'")
        except MlflowException as exc:
            if _not_found(exc):
                return []
            raise
        aliases = self._aliases()
        return sorted((self._info(mv, aliases) for mv in versions), key=lambda v: int(v.version), reverse=True)

    def load(self, alias_or_version: str = "champion") -> LoadedModel:
        """(model in eval mode, SASRecConfig, version tags, BasisManifest) of a version."""
        bundle = self.load_bundle(alias_or_version)
        return LoadedModel(bundle.model, bundle.config, bundle.tags, bundle.manifest)

    def load_bundle(self, alias_or_version: str = "champion") -> ModelBundle:
        from lte.basis import BasisManifest

        version = self._resolve(alias_or_version, must_exist=True)
        mv = self._version(version)
        self._use_this_store()
        python_model = mlflow.pyfunc.load_model(f"models:/{self.model_name}/{version}").unwrap_python_model()
        return ModelBundle(
            version=version,
            model=python_model.model,
            config=python_model.config,
            tags=dict(mv.tags),
            manifest=BasisManifest.from_dict(python_model.manifest_dict),
            item_ids=python_model.item_ids,
        )

    def history(self) -> list[str]:
        """Earlier champions, oldest first (what successive rollbacks would restore, last first)."""
        return self._history()

    # ---- internals ----------------------------------------------------------------------------

    def _check_gate(self, mv, current: str | None) -> None:
        tags = mv.tags
        version = str(mv.version)
        passed = tags.get("gate.passed")
        force_hint = f"`lte promote {version} --force --reason '...'`"
        if passed is None:
            raise PromotionRefused(
                f"version {version} has no gate verdict; run the NDCG gate on it (the training pipeline "
                f"records it), or override with {force_hint}"
            )
        if passed != "true":
            raise PromotionRefused(
                f"version {version} failed the NDCG gate: {tags.get('gate.reasons', '(no reasons recorded)')}. "
                f"Train a better model, or override with {force_hint}"
            )
        champion_then = tags.get("gate.champion_version") or None
        if champion_then != current:
            raise PromotionRefused(
                f"version {version} passed the gate when the champion was {champion_then or 'none'} "
                f"(compared with the {tags.get('gate.reference', '?')}), but the champion is now "
                f"{current or 'none'}; re-run the gate against the current champion, or override with {force_hint}"
            )

    def _version_tags(self, tags: dict[str, Any], manifest: dict, config: SASRecConfig) -> dict[str, str]:
        derived = {
            "basis_hash": manifest["basis_hash"],
            "basis_family": _basis_family(manifest),
            "integration": config.integration,
        }
        for key, value in derived.items():
            if key in tags and str(tags[key]) != str(value):
                raise RegistryError(f"tag {key}={tags[key]!r} contradicts the model/basis ({value!r})")
        merged = {"git_commit": git_commit(), **{k: str(v) for k, v in tags.items()}, **derived}
        missing = [key for key in REQUIRED_TAGS if not merged.get(key)]
        if missing:
            raise RegistryError(f"missing version tags {missing}; pass them in `tags` (see version_tags())")
        return merged

    def _basis_item_ids(self, basis_hash: str) -> np.ndarray:
        if self.store is None:
            raise RegistryError("pass item_ids= (the basis item order) or create the Registry with a store")
        from lte.basis import load_basis

        return load_basis(self.store, basis_hash).item_ids

    def _use_this_store(self) -> None:
        # mlflow's fluent API (start_run, log_model, pyfunc.load_model) reads the global URIs.
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(self.experiment, artifact_location=self.artifact_location)

    def _resolve(self, alias_or_version: str, must_exist: bool) -> str | None:
        key = str(alias_or_version)
        if key.isdigit():
            if must_exist:
                self._version(key)
            return key
        version = self.alias_version(key)
        if version is None and must_exist:
            raise RegistryError(
                f"{self.model_name} has no version with alias {key!r}; see `lte models` "
                + ("and promote one with `lte promote VERSION`" if key == "champion" else "")
            )
        return version

    def _version(self, version: str):
        try:
            return self.client.get_model_version(self.model_name, str(version))
        except MlflowException as exc:
            if _not_found(exc):
                raise RegistryError(f"{self.model_name} has no version {version}; see `lte models`") from exc
            raise

    def _aliases(self) -> dict[str, list[str]]:
        """version -> its aliases (search results do not carry aliases on every store)."""
        try:
            model = self.client.get_registered_model(self.model_name)
        except MlflowException as exc:
            if _not_found(exc):
                return {}
            raise
        by_version: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        return by_version

    def _info(self, mv, aliases: dict[str, list[str]] | None = None) -> VersionInfo:
        if aliases is None:
            aliases = self._aliases()
        run_id = mv.tags.get("run_id") or mv.run_id
        run_data = self.client.get_run(run_id).data if run_id else None
        passed = mv.tags.get("gate.passed")
        return VersionInfo(
            version=str(mv.version),
            aliases=sorted(aliases.get(str(mv.version), [])),
            basis_hash=mv.tags.get("basis_hash"),
            gate_passed=None if passed is None else passed == "true",
            metrics=dict(run_data.metrics) if run_data else {},
            params=dict(run_data.params) if run_data else {},
            tags=dict(mv.tags),
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
            run_id=run_id,
        )

    def _history(self) -> list[str]:
        try:
            tags = self.client.get_registered_model(self.model_name).tags
        except MlflowException as exc:
            if _not_found(exc):
                return []
            raise
        return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]

    def _set_history(self, history: list[str]) -> None:
        history = history[-_HISTORY_MAX:]
        self.client.set_registered_model_tag(self.model_name, HISTORY_TAG, json.dumps(history))
        self.client.set_registered_model_tag(self.model_name, PREVIOUS_TAG, history[-1] if history else "")


def version_tags(settings, data_snapshot: str, git_commit_value: str | None = None) -> dict[str, str]:
    """The DESIGN.md tags that come from settings and the data, for `Registry.register(tags=...)`."""
    return {
        "lte_variant": settings.lte.variant,
        "lag_days": str(settings.lte.lag_days),
        "window_days": str(settings.lte.window_days),
        "data_snapshot": data_snapshot,
        "git_commit": git_commit_value or git_commit(),
    }


def git_commit() -> str:
    """HEAD of the project checkout (+ "-dirty" with uncommitted changes), or "unknown" outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_PROJECT_ROOT, capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_PROJECT_ROOT,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def _basis_family(manifest: dict) -> str:
    encoder = manifest.get("encoder") or {}
    return str(encoder.get("name") or "unknown")


def _metric_key(name: str) -> str:
    return re.sub(r"[^\w\-./ ]", "_", str(name))


def _input_example(item_ids: np.ndarray, config: SASRecConfig) -> pd.DataFrame:
    """One request: a user who saw the first three basis items and has no LTE yet."""
    return pd.DataFrame({
        "item_ids": [item_ids[:3].tolist()],
        "lte": [[0.0] * config.lte_dim],
        "lte_events": [0],
    })


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"} or "not found" in str(exc).lower()


def _pip_requirements() -> list[str]:
    # Explicit pins: inference is slow and writes torch's "+cpu" local label, which pip rejects.
    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"mlflow=={mlflow.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
    ]


def experiment_id(settings, suffix: str) -> str:
    """Id of the experiment `<registry.experiment>-<suffix>`, created with the home's artifact location."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    name = f"{settings.registry.experiment}-{suffix}"
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = settings.registry.artifact_location or (
        settings.mlflow_artifact_location if settings.mlflow_tracking_uri.startswith("sqlite:") else None
    )
    return mlflow.create_experiment(name, artifact_location=location)


def log_training_run(settings, result, evaluation, tags: dict[str, str]) -> str:
    """One MLflow run per trained SASRec: params, loss and validation NDCG per epoch, test metrics
    with their 95% CIs, the popularity baseline and the checkpoint. Returns the run id."""
    with mlflow.start_run(experiment_id=experiment_id(settings, "training"),
                          run_name=f"sasrec-{result.config.integration}") as run:
        mlflow.set_tags({**tags, "integration": result.config.integration, "git_commit": git_commit()})
        mlflow.log_params({f"model.{k}": v for k, v in result.params().items()})
        mlflow.log_params({"train.lr": settings.train.lr, "train.batch_size": settings.train.batch_size,
                           "train.seed": settings.train.seed, "train.split": settings.train.split})
        for row in result.history:
            mlflow.log_metrics({_metric_key(k): float(v) for k, v in row.items() if k != "epoch"},
                               step=int(row["epoch"]))
        final = {}
        for metric, summary in evaluation.summary.items():
            if isinstance(summary, dict):
                final.update({f"test_{_metric_key(metric)}": summary["mean"],
                              f"test_{_metric_key(metric)}_ci_lo": summary["lo"],
                              f"test_{_metric_key(metric)}_ci_hi": summary["hi"]})
        if evaluation.baseline is not None:
            final.update({f"popularity_{_metric_key(m)}": v for m, v in
                          ((m, evaluation.baseline.mean(m)) for m in evaluation.baseline.per_user)})
        if evaluation.attention_ratio is not None:
            final["attention_ratio"] = float(evaluation.attention_ratio)
        mlflow.log_metrics(final)
        if result.checkpoint is not None and Path(result.checkpoint).exists():
            mlflow.log_artifact(str(result.checkpoint), artifact_path="checkpoint")
        return run.info.run_id


def log_autoencoder_run(settings, checkpoint: Path, history, basis_hash: str, config: dict) -> str:
    """Version a trained LTE autoencoder like a model: an MLflow run in `<experiment>-autoencoder`,
    tagged with the basis it was trained for, holding its checkpoint, config and training history."""
    with mlflow.start_run(experiment_id=experiment_id(settings, "autoencoder"), run_name="lte-autoencoder") as run:
        mlflow.set_tags({"basis_hash": basis_hash, "lte_variant": "autoencoder", "git_commit": git_commit()})
        mlflow.log_params({f"autoencoder.{k}": v for k, v in config.items()})
        for row in history.epochs:
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        mlflow.log_metrics({"val_nll_uniform": history.val_nll_uniform, "best_epoch": history.best_epoch})
        mlflow.log_artifact(str(checkpoint))
        return run.info.run_id
