"""Drift of the LTE distribution: is the population of live LTEs still the one the champion learned on?

`drift_report(reference, current, out_dir, drift_settings)` compares two LTE batches (any objects with
`.vectors (n, dim)` and `.n_events (n,)`; `lte.feature_store.LteBatch` in the pipeline) and writes an
Evidently report as HTML and JSON. The verdict is machine readable (`DriftResult.to_dict()`).

What is compared, and why:
- Embedding drift over the LTE vectors with Evidently's own embedding drift methods
  (`settings.drift.method`: mmd | model | distance | ratio). By default MMD with Evidently's
  bootstrap test: its threshold adapts to the sample size and the spread of the data, whereas the
  fixed MMD threshold (0.015) is a scale that LTEs (means of unit vectors, MMD^2 ~ 1e-3 under a real
  taste shift) never reach. `bench/drift.py` measures detection and false alarms for each method.
- The share of drifted dimensions: Evidently's `RatioDriftMethod` over the raw LTE dimensions
  (normed Wasserstein per dimension). Informational; it is not the verdict unless method == "ratio".
- Summary columns per user: vector norm, n_events, cosine to the reference mean LTE, each with
  Evidently's per-column drift test and mean (informational).
- Users with an empty LTE (n_events == 0, a zero vector by contract) are excluded from all of the
  above, because a block of identical zero vectors would dominate any distance between
  distributions; their share on each side is reported instead (`empty_share_reference/current`).
- A multi-interest LTE (`batch.tokens` = k > 1: k centroids per row, flattened) is compared through
  one vector per user: the unweighted mean of the user's non-empty centroids. It stays in the basis
  space with the basis dimension (so the same method and calibration apply, and it is comparable
  whatever k each side used), and a shift in any of the user's interests moves it, not only in the
  largest one (which comparing the first centroid alone would miss).

The two sides are sampled to at most `max_rows` non-empty rows each with a seeded generator, so a
report costs the same for 2k or 1M users (MMD builds a (2n)^2 kernel matrix: 2000 rows -> 128 MB).

Evidently's `EmbeddingsDrift` metric draws a t-SNE picture for the HTML on every run (seconds to
tens of seconds, unseeded). `_tsne_as_pca` swaps it for a seeded PCA while the report runs.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from lte.storage import atomic_write_bytes

if TYPE_CHECKING:
    from evidently import Report
    from evidently.core.report import Snapshot

    from lte.config import DriftSettings

EMBEDDING = "lte"
# Same columns under a second name, so dashboard panels can tell the verdict metric (EMBEDDING)
# from the share-of-drifted-dimensions metric by the `embeddings_name` label.
DIMENSIONS = "lte_dimensions"
SUMMARY_COLUMNS = ("norm", "n_events", "cosine_to_reference_mean")
# Per-column test for the summary columns: normed Wasserstein distance (distance / reference std),
# drifted at >= 0.1, Evidently's default for large numerical columns. Pinned so that the score
# means the same thing whatever the sample size (Evidently would switch to K-S p-values at <= 1000 rows).
SUMMARY_STATTEST, SUMMARY_STATTEST_THRESHOLD = "wasserstein", 0.1


class LteLike(Protocol):
    vectors: np.ndarray  # (n, dim) float32 (or (n, tokens * dim), see `tokens`); zero rows where n_events == 0
    n_events: np.ndarray  # (n,) int
    # optional `tokens: int`: vectors per row (k centroids of a multi-interest LTE); absent = 1


def user_vectors(batch: LteLike) -> np.ndarray:
    """(n, dim): the LTE of each user; for a multi-interest LTE (batch.tokens = k > 1) the mean of the
    user's non-empty centroids (zero for a user without any)."""
    vectors = np.asarray(batch.vectors)
    tokens = int(getattr(batch, "tokens", 1))
    if tokens == 1:
        return vectors
    if vectors.ndim != 2 or vectors.shape[1] % tokens:
        raise ValueError(f"rows of shape {vectors.shape} cannot hold {tokens} vectors each")
    centroids = vectors.reshape(len(vectors), tokens, -1)
    present = np.any(centroids != 0, axis=2).sum(axis=1, keepdims=True)
    return (centroids.sum(axis=1) / np.maximum(present, 1)).astype(np.float32)


@dataclass(frozen=True)
class DriftResult:
    """The verdict of one drift report.

    `score` is the chosen method's statistic (MMD^2, domain-classifier ROC AUC, distance between
    means, or share of drifted components). `threshold` is the fixed threshold when one is used;
    None means the method's bootstrap test at `quantile_probability` decided. n_reference/n_current
    count every user in the batches; n_compared_* the non-empty rows actually compared (after sampling).
    """

    drifted: bool
    score: float
    method: str
    threshold: float | None
    quantile_probability: float | None
    share_drifted_dims: float
    n_reference: int
    n_current: int
    n_compared_reference: int
    n_compared_current: int
    empty_share_reference: float
    empty_share_current: float
    summary: dict[str, dict[str, float | bool]]
    html_path: Path | None
    json_path: Path | None
    run_name: str | None = None
    reference_as_of: str | None = None
    current_as_of: str | None = None
    seconds: float = 0.0
    snapshot: Snapshot | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("snapshot")
        data["html_path"] = str(self.html_path) if self.html_path else None
        data["json_path"] = str(self.json_path) if self.json_path else None
        return data


def should_retrain(result: DriftResult, drift_settings: DriftSettings) -> bool:
    """The retrain sensor's decision: retraining is switched on, the embeddings drifted, and the
    current side had enough non-empty users for the verdict to mean something."""
    return bool(
        drift_settings.retrain_on_drift
        and result.drifted
        and result.n_compared_current >= drift_settings.min_rows
        and result.n_compared_reference >= drift_settings.min_rows
    )


def drift_method(drift_settings: DriftSettings):
    """The Evidently embedding drift method the settings ask for (a fresh object each call)."""
    from evidently.metrics.embeddings import (
        DistanceDriftMethod,
        MMDDriftMethod,
        ModelDriftMethod,
        RatioDriftMethod,
    )

    s = drift_settings
    common = {"pca_components": s.pca_components}
    fixed = s.threshold is not None
    if s.method == "mmd":
        if fixed:
            return MMDDriftMethod(threshold=s.threshold, **common)
        return MMDDriftMethod(bootstrap=True, quantile_probability=s.quantile_probability, **common)
    if s.method == "model":
        if fixed:
            return ModelDriftMethod(threshold=s.threshold, **common)
        return ModelDriftMethod(bootstrap=True, quantile_probability=s.quantile_probability, **common)
    if s.method == "distance":
        if fixed:
            return DistanceDriftMethod(threshold=s.threshold, **common)
        return DistanceDriftMethod(bootstrap=True, quantile_probability=s.quantile_probability, **common)
    if s.method == "ratio":
        # Evidently's ratio method has no bootstrap; without a threshold it uses its own (0.2).
        return RatioDriftMethod(**({"threshold": s.threshold} if fixed else {}), **common)
    raise ValueError(f"unknown drift method {s.method!r}: use mmd, model, distance or ratio")


def dimensions_method(drift_settings: DriftSettings):
    """Share of drifted raw dimensions (normed Wasserstein per dimension, Evidently's default 0.1)."""
    from evidently.metrics.embeddings import RatioDriftMethod

    return RatioDriftMethod(threshold=drift_settings.dims_share_threshold)


def _non_empty_sample(batch: LteLike, max_rows: int, rng: np.random.Generator, side: str) -> np.ndarray:
    vectors = np.asarray(batch.vectors, dtype=np.float32)
    n_events = np.asarray(batch.n_events)
    if vectors.ndim != 2 or len(vectors) != len(n_events):
        raise ValueError(
            f"{side}: vectors must be (n, dim) with one n_events per row, got {vectors.shape} and {n_events.shape}"
        )
    rows = np.flatnonzero(n_events > 0)
    if len(rows) < 2:
        raise ValueError(
            f"{side}: {len(rows)} users with a non-empty LTE; drift needs at least 2. "
            "Build LTEs for an as_of with events in the window (lte snapshots), or check lag/window."
        )
    if len(rows) > max_rows:
        rows = np.sort(rng.choice(rows, size=max_rows, replace=False))
    return rows


def _frame(vectors: np.ndarray, n_events: np.ndarray, cosine: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(vectors.astype(np.float64), columns=_dim_columns(vectors.shape[1]))
    frame["norm"] = np.linalg.norm(vectors.astype(np.float64), axis=1)
    frame["n_events"] = n_events.astype(np.int64)
    frame["cosine_to_reference_mean"] = cosine
    return frame


def _cosines_to_reference_mean(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of each row to the reference mean LTE. A reference row is compared with the mean of
    the *other* reference rows: its own contribution would otherwise bias its cosine upwards
    (by ~|v| / (n |mean|), large for weakly aligned high-dimensional vectors), which alone would
    show up as drift on a plain resample."""
    reference, current = reference.astype(np.float64), current.astype(np.float64)
    total = reference.sum(axis=0)
    leave_one_out = (total[None, :] - reference) / (len(reference) - 1)  # (n_ref, dim)
    mean = total / len(reference)  # (dim,)
    ref_cosine = _safe_divide(
        np.einsum("ij,ij->i", reference, leave_one_out),
        np.linalg.norm(reference, axis=1) * np.linalg.norm(leave_one_out, axis=1),
    )
    cur_cosine = _safe_divide(current @ mean, np.linalg.norm(current, axis=1) * np.linalg.norm(mean))
    return ref_cosine, cur_cosine


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _dim_columns(dim: int) -> list[str]:
    return [f"d{i:03d}" for i in range(dim)]


@contextlib.contextmanager
def _tsne_as_pca() -> Iterator[None]:
    """Evidently draws its embedding picture with an unseeded t-SNE (slow); use a seeded PCA meanwhile."""
    from evidently.legacy.metrics.data_drift import embeddings_drift
    from sklearn.decomposition import PCA

    original = embeddings_drift.TSNE
    embeddings_drift.TSNE = lambda n_components=2, **_: PCA(
        n_components=n_components, svd_solver="randomized", random_state=0
    )
    try:
        yield
    finally:
        embeddings_drift.TSNE = original


def _build_report(verdict_method, drift_settings: DriftSettings, metadata: dict, tags: list[str]) -> Report:
    from evidently import Report
    from evidently.metrics import EmbeddingsDrift, MeanValue, ValueDrift

    metrics: list = [
        EmbeddingsDrift(embeddings_name=EMBEDDING, drift_method=verdict_method),
        EmbeddingsDrift(embeddings_name=DIMENSIONS, drift_method=dimensions_method(drift_settings)),
    ]
    for column in SUMMARY_COLUMNS:
        metrics += [
            ValueDrift(column=column, method=SUMMARY_STATTEST, threshold=SUMMARY_STATTEST_THRESHOLD),
            MeanValue(column=column),
        ]
    return Report(metrics, metadata=metadata, tags=tags)


def _jsonable(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def drift_report(
    reference: LteLike,
    current: LteLike,
    out_dir: Path | str,
    drift_settings: DriftSettings,
    run_name: str | None = None,
) -> DriftResult:
    """Compare the LTE distribution of `current` against `reference`; write `<run>.html` and `<run>.json`.

    Both batches must share the embedding dimension (an extended basis keeps it: parent rows are
    bit-identical). The verdict is the Evidently drift method run once, inside the report, on the
    sampled non-empty rows, so the verdict, the HTML and the dashboard show the same score. Rows
    with n_events == 0 are left out and counted (`empty_share_*`).
    """
    started = time.perf_counter()
    s = drift_settings
    ref_vectors = user_vectors(reference)
    cur_vectors = user_vectors(current)
    if ref_vectors.ndim != 2 or cur_vectors.ndim != 2 or ref_vectors.shape[1] != cur_vectors.shape[1]:
        raise ValueError(
            f"reference and current LTEs must have the same dimension, got {ref_vectors.shape} and "
            f"{cur_vectors.shape}: compare LTEs built on the same basis family"
        )
    rng = np.random.default_rng(s.seed)
    ref_rows = _non_empty_sample(reference, s.max_rows, rng, "reference")
    cur_rows = _non_empty_sample(current, s.max_rows, rng, "current")
    ref_n_events = np.asarray(reference.n_events)
    cur_n_events = np.asarray(current.n_events)

    ref_cosine, cur_cosine = _cosines_to_reference_mean(ref_vectors[ref_rows], cur_vectors[cur_rows])
    ref_frame = _frame(ref_vectors[ref_rows], ref_n_events[ref_rows], ref_cosine)
    cur_frame = _frame(cur_vectors[cur_rows], cur_n_events[cur_rows], cur_cosine)
    dims = _dim_columns(ref_vectors.shape[1])

    empty_ref = float(np.mean(ref_n_events == 0)) if len(ref_n_events) else 0.0
    empty_cur = float(np.mean(cur_n_events == 0)) if len(cur_n_events) else 0.0
    name = run_name or f"lte-drift-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    reference_as_of = getattr(reference, "as_of", None)
    current_as_of = getattr(current, "as_of", None)
    metadata = {
        "empty_share_reference": f"{empty_ref:.4f}",
        "empty_share_current": f"{empty_cur:.4f}",
        "reference_as_of": _jsonable(reference_as_of),
        "current_as_of": _jsonable(current_as_of),
        "reference_basis_hash": str(getattr(reference, "basis_hash", "")),
        "current_basis_hash": str(getattr(current, "basis_hash", "")),
        "variant": str(getattr(current, "variant", "")),
    }
    tags = ["lte-drift"]

    from evidently import DataDefinition, Dataset

    verdict_method = drift_method(s)
    definition = DataDefinition(
        numerical_columns=[*dims, *SUMMARY_COLUMNS], embeddings={EMBEDDING: dims, DIMENSIONS: dims}
    )
    # The dashboard plots snapshots over their timestamp: the monitored moment, not the wall clock.
    timestamp = current_as_of if isinstance(current_as_of, datetime) else datetime.now(UTC)
    with _tsne_as_pca(), warnings.catch_warnings():
        # Evidently assigns into frame slices and trips pandas' chained-assignment warnings.
        warnings.simplefilter("ignore", category=pd.errors.SettingWithCopyWarning)
        snapshot = _build_report(verdict_method, s, metadata, tags).run(
            current_data=Dataset.from_pandas(cur_frame, data_definition=definition),
            reference_data=Dataset.from_pandas(ref_frame, data_definition=definition),
            timestamp=timestamp.replace(tzinfo=None) if timestamp.tzinfo else timestamp,
            name=name,
        )

    score, drifted, method_name = _verdict(snapshot, verdict_method)
    metric_values = snapshot.dict()["metrics"]
    share_dims = _metric_value(metric_values, "EmbeddingsDrift", "embeddings_name", DIMENSIONS)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / f"{name}.html", out / f"{name}.json"
    # Written whole or not at all (temp file + rename), like every other artifact of a run.
    atomic_write_bytes(html_path, snapshot.get_html_str(as_iframe=False).encode("utf-8"))
    summary = _summary(metric_values, ref_frame, cur_frame)
    result = DriftResult(
        drifted=bool(drifted),
        score=float(score),
        method=method_name,
        threshold=s.threshold if s.threshold is not None else (0.2 if s.method == "ratio" else None),
        quantile_probability=None if (s.threshold is not None or s.method == "ratio") else s.quantile_probability,
        share_drifted_dims=float(share_dims),
        n_reference=len(ref_n_events),
        n_current=len(cur_n_events),
        n_compared_reference=len(ref_rows),
        n_compared_current=len(cur_rows),
        empty_share_reference=empty_ref,
        empty_share_current=empty_cur,
        summary=summary,
        html_path=html_path,
        json_path=json_path,
        run_name=name,
        reference_as_of=_jsonable(reference_as_of) if reference_as_of is not None else None,
        current_as_of=_jsonable(current_as_of) if current_as_of is not None else None,
        seconds=round(time.perf_counter() - started, 3),
        snapshot=snapshot,
    )
    # One JSON document: our verdict first, then Evidently's own snapshot (metrics, tests, config).
    atomic_write_bytes(json_path, json.dumps({"verdict": result.to_dict(), "evidently": snapshot.dict()},
                                             default=str).encode("utf-8"))
    return result


def _verdict(snapshot: Snapshot, verdict_method) -> tuple[float, bool, str]:
    """(score, drifted, method name) of the verdict metric, as the report computed it.

    The v2 metric value is the score only; the drifted flag lives in the legacy result, which the
    report's context caches by metric fingerprint, so this looks it up instead of recomputing.
    """
    from evidently.legacy.metrics.data_drift.embeddings_drift import EmbeddingsDriftMetric

    legacy, _ = snapshot.context.get_legacy_metric(
        EmbeddingsDriftMetric(EMBEDDING, verdict_method), None, None
    )
    return float(legacy.drift_score), bool(legacy.drift_detected), str(legacy.method_name)


def _metric_value(metrics: list[dict], metric_type: str, label: str, value: str) -> float:
    for metric in metrics:
        config = metric["config"]
        if config["type"].endswith(metric_type) and config.get(label) == value:
            return float(metric["value"])
    raise KeyError(f"no {metric_type} with {label}={value!r} in the report")


def _summary(metrics: list[dict], ref_frame: pd.DataFrame, cur_frame: pd.DataFrame) -> dict[str, dict]:
    """Per summary column: reference and current means, Evidently's drift score and flag."""
    drift_scores = {column: _metric_value(metrics, "ValueDrift", "column", column) for column in SUMMARY_COLUMNS}
    return {
        column: {
            "reference_mean": float(ref_frame[column].mean()),
            "current_mean": float(cur_frame[column].mean()),
            "drift_score": drift_scores[column],
            "drifted": drift_scores[column] >= SUMMARY_STATTEST_THRESHOLD,
        }
        for column in SUMMARY_COLUMNS
    }
