"""Offline evaluation on full ranking over all items, with bootstrap confidence intervals over users.

Semantics:
- Every evaluation example has exactly one target item; its 0-based rank among all n_items items
  counts the items scored strictly higher plus half of the other items with an equal score (so a
  constant scorer gets the middle rank, not the top). No sampled negatives, no items removed.
- Per example: NDCG@k = 1 / log2(rank + 2) if rank < k else 0; Recall@k = 1 if rank < k (one target,
  so also HR@k); MRR = 1 / (rank + 1) without cut-off.
- Per user: the mean over that user's examples. Reported means are over users (every user weighs
  the same), and 95% CIs are percentile bootstraps that resample users.
- Paired differences resample the SAME users for both models, so the shared per-user difficulty
  cancels; the relative uplift is mean(a) / mean(b) - 1 under the same resamples.
- Attention diagnostic: at the last query position (the one that ranks), the mean attention weight
  on the last interaction divided by the mean weight per item position (over the real, non-padded
  items of the sequence; the LTE prefix token is neither numerator nor denominator), averaged as a
  ratio of means over examples, heads and layers. 1.0 = no recency preference. The paper reports
  2.83 without LTE and 2.62 with the prefix (its exact definition is not available).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

KS = (10, 100, 500)
METRICS = tuple(f"ndcg@{k}" for k in KS) + tuple(f"recall@{k}" for k in KS) + ("mrr",)


def ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target: scores (B, V) with column 0 = padding (-inf), targets (B,) >= 1."""
    target_score = scores.gather(1, targets[:, None])
    higher = (scores > target_score).sum(1)
    ties = (scores == target_score).sum(1) - 1
    return higher.double() + ties.double() / 2


def metrics_from_ranks(ranks: np.ndarray) -> dict[str, np.ndarray]:
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {}
    for k in KS:
        out[f"ndcg@{k}"] = np.where(ranks < k, 1.0 / np.log2(ranks + 2), 0.0)
    for k in KS:
        out[f"recall@{k}"] = (ranks < k).astype(np.float64)
    out["mrr"] = 1.0 / (ranks + 1)
    return out


@torch.no_grad()
def model_ranks(model, part, batch_size: int = 512) -> np.ndarray:
    """Rank of every example's target under the model (eval mode, dropout off)."""
    was_training = model.training
    model.eval()
    ranks = []
    for start in range(0, len(part), batch_size):
        sl = slice(start, start + batch_size)
        scores = model.score_all(part.items[sl], part.lte[sl], part.lte_mask[sl])
        ranks.append(ranks_from_scores(scores, part.targets[sl]))
    model.train(was_training)
    return torch.cat(ranks).numpy() if ranks else np.zeros(0)


def popularity_ranks(item_counts: np.ndarray, part) -> np.ndarray:
    """Ranks under the most-popular-in-training scorer (the same list for everyone)."""
    scores = torch.as_tensor(item_counts, dtype=torch.float64).clone()
    scores[0] = float("-inf")
    return ranks_from_scores(scores.expand(len(part), -1), part.targets).numpy()


@torch.no_grad()
def attention_ratio(model, part, max_examples: int = 2000) -> float | None:
    """The recency diagnostic described in the module docstring, on the first max_examples examples."""
    n = min(len(part), max_examples)
    items = part.items[:n]
    keep = (items > 0).sum(1) >= 2  # with one item the ratio is 1 by construction
    if n == 0 or not keep.any():
        return None
    was_training = model.training
    model.eval()
    attention = model.attention(items[keep], part.lte[:n][keep], part.lte_mask[:n][keep])
    model.train(was_training)
    valid = items[keep] > 0  # (B, L)
    last, per_position = [], []
    for weights in attention:  # (B, nh, T, T)
        row = weights[:, :, -1, -valid.size(1):]  # last query, item keys only: (B, nh, L)
        n_valid = valid.sum(1, keepdim=True)  # (B, 1)
        last.append(row[:, :, -1])
        per_position.append((row * valid[:, None, :]).sum(-1) / n_valid)
    return float(torch.stack(last).mean() / torch.stack(per_position).mean())


def bootstrap_indices(n_users: int, n_bootstrap: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_users, size=(n_bootstrap, n_users))


def _ci(samples: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return float(lo), float(hi)


@dataclass
class EvalResult:
    """Metrics of one scorer on one split. per_user[m][i] belongs to user_ids[i] (sorted)."""

    name: str
    user_ids: np.ndarray
    per_user: dict[str, np.ndarray]
    per_example: dict[str, np.ndarray]
    example_users: np.ndarray
    summary: dict  # metric -> {"mean", "lo", "hi"}; plus n_users, n_examples, attention_ratio
    attention_ratio: float | None = None
    baseline: EvalResult | None = field(default=None, repr=False)  # popularity on the same examples

    def mean(self, metric: str) -> float:
        return self.summary[metric]["mean"]

    def to_dict(self) -> dict:
        out = {"name": self.name, **self.summary}
        if self.baseline is not None:
            out["popularity"] = self.baseline.to_dict()
        return out


def summarize(name: str, ranks: np.ndarray, example_users: np.ndarray, n_bootstrap: int = 1000,
              seed: int = 0, attention: float | None = None) -> EvalResult:
    """Per-example ranks -> per-user metrics, means over users and bootstrap CIs."""
    if len(ranks) == 0:
        raise ValueError(f"{name}: no evaluation examples (is the validation/test period empty?)")
    per_example = metrics_from_ranks(ranks)
    user_ids, inverse, counts = np.unique(example_users, return_inverse=True, return_counts=True)
    per_user = {m: np.bincount(inverse, weights=v) / counts for m, v in per_example.items()}
    index = bootstrap_indices(len(user_ids), n_bootstrap, seed)
    summary = {}
    for metric, values in per_user.items():
        lo, hi = _ci(values[index].mean(1))
        summary[metric] = {"mean": float(values.mean()), "lo": lo, "hi": hi}
    summary.update(n_users=int(len(user_ids)), n_examples=int(len(ranks)), attention_ratio=attention)
    return EvalResult(name, user_ids, per_user, per_example, np.asarray(example_users), summary, attention)


def evaluate_model(model, part, item_counts: np.ndarray | None = None, name: str = "model",
                   n_bootstrap: int = 1000, seed: int = 0, with_attention: bool = True) -> EvalResult:
    """Full-ranking metrics of `model` on an evaluation part; with item_counts also the popularity baseline."""
    users = part.user_ids.numpy()
    ratio = attention_ratio(model, part) if with_attention else None
    result = summarize(name, model_ranks(model, part), users, n_bootstrap, seed, ratio)
    if item_counts is not None:
        result.baseline = summarize("popularity", popularity_ranks(item_counts, part), users, n_bootstrap, seed)
    return result


@dataclass(frozen=True)
class PairedDifference:
    metric: str
    n_users: int
    mean_a: float
    mean_b: float
    diff: float  # mean_a - mean_b
    diff_lo: float
    diff_hi: float
    relative: float  # mean_a / mean_b - 1
    relative_lo: float
    relative_hi: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def paired_difference(a: EvalResult, b: EvalResult, metric: str, n_bootstrap: int = 1000,
                      seed: int = 0) -> PairedDifference:
    """a minus b on the users both were evaluated on, bootstrapping users jointly."""
    common, ia, ib = np.intersect1d(a.user_ids, b.user_ids, assume_unique=True, return_indices=True)
    if len(common) == 0:
        raise ValueError(f"{a.name} and {b.name} share no evaluated users: compare results on the same split")
    va, vb = a.per_user[metric][ia], b.per_user[metric][ib]
    index = bootstrap_indices(len(common), n_bootstrap, seed)
    ma, mb = va[index].mean(1), vb[index].mean(1)
    diff_lo, diff_hi = _ci(ma - mb)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A resample where both means are 0 is no change (0/0 would void the CI); one where only b's
        # is 0 is +inf, and the bound is then taken without interpolation (inf - inf is nan too).
        relative_samples = np.where((ma == 0) & (mb == 0), 0.0, ma / mb - 1)
        rel_lo, rel_hi = (float(v) for v in np.percentile(relative_samples, [2.5, 97.5], method="nearest"))
        relative = float(va.mean() / vb.mean() - 1) if vb.mean() > 0 else float("nan")
    return PairedDifference(metric, int(len(common)), float(va.mean()), float(vb.mean()),
                            float(va.mean() - vb.mean()), diff_lo, diff_hi, relative, rel_lo, rel_hi)
