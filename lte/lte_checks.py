"""Sanity of a published LTE set, and the figures shown next to it (plain functions, no Dagster).

Used by the `lte_live_sane` and `lte_live_sharded_sane` asset checks, which both judge the live
table serving reads. A set passes when:
- every value is finite (no NaN/inf);
- every non-empty LTE has a norm in (0, 1 + 1e-3]: a (weighted) mean of unit-norm basis rows, or an
  L2-normalised vector, can never leave the unit ball, and a zero row with n_events > 0 is a bug.
  A multi-interest LTE (`batch.tokens` = k centroids per row) is judged per centroid: each is a mean
  of unit rows, so each norm is <= 1 + 1e-3; the first (largest cluster) must be non-zero, later
  ones may be zero (empty interest slots);
- the share of users with an empty LTE (n_events == 0) is at most `max_empty_share`;
- its basis_hash is the current basis's (None = no current basis = fails).
An empty set (no users at all) counts as fully empty: empty_share 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lte.embeddings import LteBatch

NORM_TOLERANCE = 1e-3
# n_events buckets of the histogram: [lo, hi) in events; the last is open-ended.
HISTOGRAM_EDGES = (0, 1, 2, 5, 10, 20, 50, 100)


@dataclass(frozen=True)
class LteSanity:
    finite: bool
    norms_in_unit_ball: bool
    empty_share: float
    max_empty_share: float
    basis_matches_current: bool

    @property
    def passed(self) -> bool:
        return (self.finite and self.norms_in_unit_ball and self.basis_matches_current
                and self.empty_share <= self.max_empty_share)

    def metadata(self) -> dict:
        """The verdict's parts, JSON-able (asset check metadata)."""
        return {
            "finite": self.finite,
            "norms_in_unit_ball": self.norms_in_unit_ball,
            "empty_share": round(self.empty_share, 4),
            "max_empty_share": self.max_empty_share,
            "basis_matches_current": self.basis_matches_current,
        }


def lte_sanity(batch: LteBatch, current_basis_hash: str | None, max_empty_share: float) -> LteSanity:
    """Judge one LTE set (see the module docstring for the rules)."""
    finite = bool(np.isfinite(batch.vectors).all())
    empty_share = float((batch.n_events == 0).mean()) if len(batch.n_events) else 1.0
    norms = np.linalg.norm(batch.token_vectors()[batch.n_events > 0], axis=2)  # (non-empty users, tokens)
    norms_ok = bool(len(norms) == 0 or (norms.max() <= 1.0 + NORM_TOLERANCE and norms[:, 0].min() > 0))
    basis_ok = current_basis_hash is not None and batch.basis_hash == current_basis_hash
    return LteSanity(finite, norms_ok, empty_share, float(max_empty_share), basis_ok)


def n_events_histogram_markdown(n_events: np.ndarray) -> str:
    """A markdown table: users per bucket of events in their LTE window (0 = empty LTE)."""
    n_events = np.asarray(n_events, dtype=np.int64)
    total = max(int(n_events.size), 1)
    rows = ["| events in window | users | share |", "|---|---:|---:|"]
    edges = (*HISTOGRAM_EDGES, None)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if hi is None:
            label, count = f"{lo}+", int((n_events >= lo).sum())
        elif hi - lo == 1:
            label, count = str(lo), int((n_events == lo).sum())
        else:
            label, count = f"{lo}-{hi - 1}", int(((n_events >= lo) & (n_events < hi)).sum())
        rows.append(f"| {label} | {count} | {count / total:.1%} |")
    return "\n".join(rows)


def lte_set_figures(batch: LteBatch) -> dict:
    """Users, empty share, mean norm of non-empty LTEs (of the largest interest for a multi-interest
    LTE), and the n_events histogram (markdown)."""
    nonempty = batch.n_events > 0
    norms = np.linalg.norm(batch.token_vectors()[nonempty, 0], axis=1)
    return {
        "users": len(batch),
        "users_without_lte": int((~nonempty).sum()),
        "empty_share": round(batch.empty_share, 4),
        "mean_norm": round(float(norms.mean()), 4) if norms.size else 0.0,
        "n_events_histogram": n_events_histogram_markdown(batch.n_events),
    }
