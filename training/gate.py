"""The promotion gate: may a challenger replace the champion?

Inputs are per-user NDCG@K arrays computed on the SAME evaluation users and period, aligned by
position (index i is one user in all three arrays), so the comparison is paired: every bootstrap
resample draws users, not scores, and keeps each user's three numbers together.

Relative uplift = mean(challenger) / mean(reference) - 1, where the reference is the champion, or
the popularity baseline when there is no champion yet. The 95% CI is the 2.5 / 97.5 percentile of
the uplift over `n_bootstrap` paired resamples (seeded, so a verdict is reproducible).

The gate passes iff all three hold:
1. uplift >= min_uplift,
2. CI lower bound >= -tolerance (the challenger is not plausibly worse by more than the tolerance),
3. mean challenger NDCG@K > mean popularity-baseline NDCG@K (a model must beat "most popular").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Below this a mean NDCG counts as zero: the relative uplift over it is reported against this floor
# instead of dividing by zero (only an all-miss reference gets here).
_MEAN_FLOOR = 1e-12
# Resamples per chunk: bounds the (chunk, n_users) index matrix to a few tens of MB.
_CHUNK = 64


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    reasons: tuple[str, ...]  # one human-readable line per check, each saying ok or FAIL
    k: int
    n_users: int
    reference: str  # "champion" or "baseline": what the uplift is measured against
    # The champion when the gate ran, even if it could not be compared (then the baseline is the
    # bar): promotion refuses a verdict once the champion has changed since.
    champion_version: str | None
    challenger_ndcg: float  # mean NDCG@K over the users
    champion_ndcg: float | None
    baseline_ndcg: float
    uplift: float  # relative uplift over the reference
    ci_low: float
    ci_high: float
    baseline_uplift: float  # relative uplift over the popularity baseline (always computed)
    baseline_ci_low: float
    baseline_ci_high: float
    min_uplift: float
    tolerance: float
    n_bootstrap: int

    def as_tags(self) -> dict[str, str]:
        """MLflow model-version tags; `gate.passed` is what promotion reads."""
        return {
            "gate.passed": "true" if self.passed else "false",
            "gate.reference": self.reference,
            "gate.champion_version": self.champion_version or "",
            "gate.k": str(self.k),
            "gate.n_users": str(self.n_users),
            # MLflow caps tag values at a few thousand characters.
            "gate.reasons": " | ".join(self.reasons)[:4000],
        }

    def as_metrics(self) -> dict[str, float]:
        metrics = {
            "gate.challenger_ndcg": self.challenger_ndcg,
            "gate.baseline_ndcg": self.baseline_ndcg,
            "gate.uplift": self.uplift,
            "gate.ci_low": self.ci_low,
            "gate.ci_high": self.ci_high,
            "gate.baseline_uplift": self.baseline_uplift,
            "gate.baseline_ci_low": self.baseline_ci_low,
            "gate.baseline_ci_high": self.baseline_ci_high,
        }
        if self.champion_ndcg is not None:
            metrics["gate.champion_ndcg"] = self.champion_ndcg
        return metrics

    def to_dict(self) -> dict:
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        return data


def paired_bootstrap_uplift(
    challenger: np.ndarray, reference: np.ndarray, n_bootstrap: int, seed: int
) -> tuple[float, float, float]:
    """(relative uplift of the means, 2.5% and 97.5% percentiles over paired user resamples)."""
    n = len(challenger)
    uplift = _relative(challenger.mean(), reference.mean())
    rng = np.random.default_rng(seed)
    samples = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, _CHUNK):
        rows = min(_CHUNK, n_bootstrap - start)
        idx = rng.integers(0, n, size=(rows, n))  # the same users for both arrays: paired
        samples[start:start + rows] = _relative(challenger[idx].mean(axis=1), reference[idx].mean(axis=1))
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(uplift), float(low), float(high)


def _relative(challenger_mean, reference_mean):
    return challenger_mean / np.maximum(reference_mean, _MEAN_FLOOR) - 1.0


def _as_scores(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array of per-user NDCG values, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or inf; evaluate every user (a miss is NDCG 0, not NaN)")
    return array


def evaluate_gate(
    challenger_ndcg,
    champion_ndcg,
    baseline_ndcg,
    gate_settings,
    champion_version: str | None = None,
) -> GateVerdict:
    """Verdict for promoting the challenger; arrays are per-user NDCG@K on the same users, same order.

    `champion_ndcg` is None when there is no champion (or it cannot be evaluated on these users):
    the popularity baseline is then the bar. `champion_version` is the champion at gate time,
    recorded so that promotion can tell whether the champion changed since.
    """
    challenger = _as_scores("challenger_ndcg", challenger_ndcg)
    baseline = _as_scores("baseline_ndcg", baseline_ndcg)
    champion = None if champion_ndcg is None else _as_scores("champion_ndcg", champion_ndcg)
    for name, other in (("baseline_ndcg", baseline), ("champion_ndcg", champion)):
        if other is not None and len(other) != len(challenger):
            raise ValueError(
                f"challenger_ndcg has {len(challenger)} users but {name} has {len(other)}: "
                "evaluate both models on the same users and period"
            )

    s = gate_settings
    base_uplift, base_low, base_high = paired_bootstrap_uplift(challenger, baseline, s.n_bootstrap, s.seed)
    if champion is None:
        reference, (uplift, low, high) = "baseline", (base_uplift, base_low, base_high)
    else:
        reference = "champion"
        uplift, low, high = paired_bootstrap_uplift(challenger, champion, s.n_bootstrap, s.seed)

    k = s.k
    uplift_ok = uplift >= s.min_uplift
    ci_ok = low >= -s.tolerance
    beats_baseline = challenger.mean() > baseline.mean()
    against = f"champion v{champion_version}" if champion is not None and champion_version else reference
    reasons = (
        f"{'ok' if uplift_ok else 'FAIL'}: NDCG@{k} uplift over {against} {uplift:+.2%} "
        f"{'>=' if uplift_ok else '<'} min_uplift {s.min_uplift:+.2%}",
        f"{'ok' if ci_ok else 'FAIL'}: 95% CI of the uplift [{low:+.2%}, {high:+.2%}], lower bound "
        f"{'>=' if ci_ok else '<'} -tolerance {-s.tolerance:+.2%}",
        f"{'ok' if beats_baseline else 'FAIL'}: challenger NDCG@{k} {challenger.mean():.4f} "
        f"{'>' if beats_baseline else '<='} popularity baseline {baseline.mean():.4f} "
        f"(uplift {base_uplift:+.2%}, CI [{base_low:+.2%}, {base_high:+.2%}])",
    )
    return GateVerdict(
        passed=bool(uplift_ok and ci_ok and beats_baseline),
        reasons=reasons,
        k=k,
        n_users=len(challenger),
        reference=reference,
        champion_version=champion_version,
        challenger_ndcg=float(challenger.mean()),
        champion_ndcg=None if champion is None else float(champion.mean()),
        baseline_ndcg=float(baseline.mean()),
        uplift=uplift,
        ci_low=low,
        ci_high=high,
        baseline_uplift=base_uplift,
        baseline_ci_low=base_low,
        baseline_ci_high=base_high,
        min_uplift=s.min_uplift,
        tolerance=s.tolerance,
        n_bootstrap=s.n_bootstrap,
    )
