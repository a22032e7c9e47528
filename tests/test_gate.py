"""The NDCG gate on per-user arrays built here: worse models are blocked, better ones pass."""

from __future__ import annotations

import numpy as np
import pytest

from lte.config import GateSettings
from training.gate import evaluate_gate, paired_bootstrap_uplift

N_USERS = 400


@pytest.fixture
def gate():
    return GateSettings(k=100, min_uplift=0.0, tolerance=0.0, n_bootstrap=300, seed=0)


@pytest.fixture
def champion():
    return np.random.default_rng(1).beta(2, 8, N_USERS)  # mean ~0.2, per-user spread


@pytest.fixture
def baseline(champion):
    return champion * 0.5


def test_better_challenger_passes(gate, champion, baseline):
    challenger = np.clip(champion * 1.15 + 0.01, 0, 1)
    verdict = evaluate_gate(challenger, champion, baseline, gate, champion_version="3")
    assert verdict.passed, verdict.reasons
    assert verdict.reference == "champion" and verdict.champion_version == "3"
    assert verdict.uplift == pytest.approx(challenger.mean() / champion.mean() - 1)
    assert 0 < verdict.ci_low <= verdict.uplift <= verdict.ci_high
    assert all(reason.startswith("ok") for reason in verdict.reasons)


def test_untrained_challenger_is_blocked(gate, champion, baseline):
    untrained = np.random.default_rng(2).uniform(0, 0.02, N_USERS)  # near-random ranking
    verdict = evaluate_gate(untrained, champion, baseline, gate, champion_version="3")
    assert not verdict.passed
    assert verdict.uplift < -0.5 and verdict.ci_high < 0
    assert sum(reason.startswith("FAIL") for reason in verdict.reasons) == 3  # uplift, CI and baseline
    assert verdict.as_tags()["gate.passed"] == "false"
    assert "champion v3" in verdict.as_tags()["gate.reasons"]


def test_noisy_tie_fails_the_ci_unless_tolerated(champion, baseline):
    noise = np.random.default_rng(3).normal(0, 0.05, N_USERS)
    challenger = np.clip(champion + noise, 0, 1)
    strict = evaluate_gate(challenger, champion, baseline, GateSettings(n_bootstrap=300, min_uplift=-1.0))
    assert strict.ci_low < 0 < strict.ci_high
    assert not strict.passed  # CI crosses zero with tolerance 0
    lenient = evaluate_gate(challenger, champion, baseline,
                            GateSettings(n_bootstrap=300, min_uplift=-1.0, tolerance=0.5))
    assert lenient.passed, lenient.reasons


def test_without_champion_the_popularity_baseline_is_the_bar(gate, baseline):
    above = baseline * 1.2 + 0.001
    verdict = evaluate_gate(above, None, baseline, gate)
    assert verdict.passed and verdict.reference == "baseline" and verdict.champion_ndcg is None
    assert "gate.champion_ndcg" not in verdict.as_metrics()
    below = baseline * 0.9
    assert not evaluate_gate(below, None, baseline, gate).passed


def test_an_incomparable_champion_is_recorded_and_the_baseline_is_the_bar(gate, baseline):
    verdict = evaluate_gate(baseline * 1.5, None, baseline, gate, champion_version="2")
    assert verdict.passed and verdict.reference == "baseline"
    assert verdict.as_tags()["gate.champion_version"] == "2"  # promotion checks it is still the champion


def test_beating_the_champion_is_not_enough_when_popularity_is_better(gate, champion):
    baseline = champion * 2.0  # a champion that was worse than popularity
    challenger = champion * 1.3
    verdict = evaluate_gate(challenger, champion, baseline, gate)
    assert verdict.uplift > 0 and verdict.ci_low > 0
    assert not verdict.passed
    assert verdict.reasons[2].startswith("FAIL") and "popularity baseline" in verdict.reasons[2]


def test_min_uplift_is_enforced(champion, baseline):
    challenger = champion * 1.05
    verdict = evaluate_gate(challenger, champion, baseline, GateSettings(n_bootstrap=200, min_uplift=0.10))
    assert not verdict.passed and verdict.reasons[0].startswith("FAIL")


def test_bootstrap_is_paired_and_seeded(champion):
    # A constant per-user shift has a zero-width paired CI; an unpaired one would not.
    shifted = champion * 1.1
    uplift, low, high = paired_bootstrap_uplift(shifted, champion, 200, seed=0)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1) and uplift == pytest.approx(0.1)
    noisy = champion + np.random.default_rng(4).normal(0, 0.02, N_USERS)
    assert paired_bootstrap_uplift(noisy, champion, 200, 7) == paired_bootstrap_uplift(noisy, champion, 200, 7)


def test_misaligned_or_missing_users_are_rejected(gate, champion, baseline):
    with pytest.raises(ValueError, match="same users"):
        evaluate_gate(champion[:-1], champion, baseline, gate)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_gate(np.full(N_USERS, np.nan), champion, baseline, gate)


def test_verdict_serialises_for_mlflow(gate, champion, baseline):
    verdict = evaluate_gate(champion * 1.2, champion, baseline, gate, champion_version="1")
    tags, metrics = verdict.as_tags(), verdict.as_metrics()
    assert tags["gate.passed"] == "true" and tags["gate.k"] == "100"
    assert all(isinstance(v, str) for v in tags.values())
    assert metrics["gate.uplift"] == pytest.approx(0.2)
    assert all(np.isfinite(v) for v in metrics.values())
    assert verdict.to_dict()["reasons"] == list(verdict.reasons)
