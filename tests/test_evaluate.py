"""Full-ranking metrics, per-user aggregation, bootstrap CIs, paired differences, attention ratio."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.data import SequencePart
from training.evaluate import (
    attention_ratio,
    metrics_from_ranks,
    paired_difference,
    popularity_ranks,
    ranks_from_scores,
    summarize,
)


def part(items, targets) -> SequencePart:
    items, targets = torch.as_tensor(items), torch.as_tensor(targets)
    n = len(items)
    return SequencePart(items, targets, torch.zeros(n, 2), torch.zeros(n, dtype=torch.bool), torch.arange(n),
                        np.zeros(n, dtype=np.int64))


def test_ranks_count_higher_items_and_half_the_ties():
    scores = torch.tensor([[float("-inf"), 0.9, 0.5, 0.5, 0.1],
                           [float("-inf"), 0.2, 0.2, 0.2, 0.2]])
    ranks = ranks_from_scores(scores, torch.tensor([3, 1])).tolist()
    assert ranks == [1.5, 1.5]  # one higher + one tie; 3 ties among 4 equal items
    assert ranks_from_scores(scores, torch.tensor([1, 4]))[0].item() == 0.0


def test_metric_values_are_exact():
    m = metrics_from_ranks(np.array([0, 9, 10, 99, 499, 500]))
    assert m["ndcg@10"].tolist() == pytest.approx([1.0, 1 / math.log2(11), 0, 0, 0, 0])
    assert m["recall@100"].tolist() == [1, 1, 1, 1, 0, 0]
    assert m["recall@500"].tolist() == [1, 1, 1, 1, 1, 0]
    assert m["ndcg@500"][4] == pytest.approx(1 / math.log2(501))
    assert m["mrr"].tolist() == pytest.approx([1, 0.1, 1 / 11, 0.01, 1 / 500, 1 / 501])


def test_users_weigh_equally_and_ci_brackets_the_mean():
    # user 7 has three perfect examples, user 8 one miss: mean over users is 0.5, not 0.75.
    result = summarize("m", np.array([0, 0, 0, 1000]), np.array([7, 7, 7, 8]), n_bootstrap=500)
    assert result.user_ids.tolist() == [7, 8]
    assert result.per_user["recall@10"].tolist() == [1.0, 0.0]
    stat = result.summary["recall@10"]
    assert stat["mean"] == 0.5 and stat["lo"] <= 0.5 <= stat["hi"] and stat["lo"] < stat["hi"]
    assert result.summary["n_users"] == 2 and result.summary["n_examples"] == 4
    with pytest.raises(ValueError, match="no evaluation examples"):
        summarize("m", np.array([]), np.array([]))


def test_paired_difference_sees_a_consistent_small_gain():
    rng = np.random.default_rng(0)
    users = np.arange(300)
    base_ranks = rng.integers(0, 200, size=300)
    better_ranks = np.maximum(base_ranks - 5, 0)  # every user a little better
    a, b = summarize("a", better_ranks, users), summarize("b", base_ranks, users)
    d = paired_difference(a, b, "mrr", n_bootstrap=500)
    assert d.diff > 0 and d.diff_lo > 0 and d.relative_lo > 0
    assert d.relative == pytest.approx(d.mean_a / d.mean_b - 1)
    same = paired_difference(b, b, "mrr", n_bootstrap=200)
    assert same.diff == 0 and same.diff_lo == 0 and same.diff_hi == 0


def test_relative_ci_stays_defined_when_few_users_ever_hit():
    """16 users, one hit in the top 10 each side: many resamples have NDCG@10 = 0 on both sides."""
    users = np.arange(16)
    ranks_a, ranks_b = np.full(16, 500), np.full(16, 500)
    ranks_a[3], ranks_b[7] = 0, 2
    d = paired_difference(summarize("a", ranks_a, users), summarize("b", ranks_b, users), "ndcg@10", n_bootstrap=500)
    assert not math.isnan(d.relative_lo) and not math.isnan(d.relative_hi)
    assert d.relative_lo <= d.relative <= d.relative_hi


def test_paired_difference_refuses_disjoint_users():
    a = summarize("a", np.array([0]), np.array([1]))
    b = summarize("b", np.array([0]), np.array([2]))
    with pytest.raises(ValueError, match="share no evaluated users"):
        paired_difference(a, b, "mrr")


def test_popularity_ranks_follow_training_counts():
    counts = np.array([0, 5, 50, 1, 0])  # index 0 = padding
    p = part([[1, 2]] * 3, [2, 1, 4])
    assert popularity_ranks(counts, p).tolist() == [0.0, 1.0, 3.0]


class FixedAttention:
    """A model stand-in whose last-query attention is given: for the ratio's arithmetic."""

    training = False

    def __init__(self, weights):
        self.weights = weights

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def attention(self, items, lte, lte_mask):
        return [self.weights[: len(items)]]


def test_attention_ratio_is_last_weight_over_mean_weight_per_item_position():
    # One example, 4 item positions of which the first is padding; no prefix; one head.
    w = torch.zeros(1, 1, 4, 4)
    w[0, 0, -1] = torch.tensor([0.0, 0.2, 0.2, 0.6])
    ratio = attention_ratio(FixedAttention(w), part([[0, 3, 4, 5]], [1]))
    assert ratio == pytest.approx(0.6 / ((0.2 + 0.2 + 0.6) / 3))
    # With a prefix token at index 0 holding weight, only item keys count.
    wp = torch.zeros(1, 1, 5, 5)
    wp[0, 0, -1] = torch.tensor([0.5, 0.0, 0.1, 0.1, 0.3])
    ratio = attention_ratio(FixedAttention(wp), part([[0, 3, 4, 5]], [1]))
    assert ratio == pytest.approx(0.3 / ((0.1 + 0.1 + 0.3) / 3))
