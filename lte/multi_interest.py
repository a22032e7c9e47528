"""Multi-interest LTE (ENCODE's offline extraction stage): k interest centroids per user.

    LTE_k(u, T) = centroids of a spherical k-means over u's basis rows with T - lag - window <= ts < T - lag

The events are exactly the lagged window every other variant receives (`WindowedEvents` from
lte/embeddings.py), so the window, lag, filters, dedupe and leakage rules are the uniform LTE's.

One relevance metric, offline and online (ENCODE's requirement): clustering uses cosine similarity
in the frozen basis space, and every interest is stored as the event-weighted mean of its items'
basis rows, i.e. in that same basis space, which is the space the model reads the LTE in (and the
space of its item content vectors). ENCODE's learned dimension reduction is not used: clustering in
a second, reduced space would introduce a second metric.

- Points: a user's distinct basis rows, L2-normalised for clustering, each weighted by its number
  of window events.
- k = settings.interests. A user with at most k distinct items gets every item as its own interest.
- Otherwise, deterministic init (greedy k-means++): the most frequent item (ties: lowest basis row),
  then repeatedly the point with the largest weight * (1 - cosine to its nearest seed)^2 (ties: lowest
  basis row). Then at most `settings.interest_iterations` Lloyd steps: assign each point to the
  centroid direction of highest cosine (ties: lower index); a direction is the normalised weighted
  sum of its points (a cluster left empty keeps its direction). Steps stop once no assignment changes
  (a fixed point: further steps could not change anything).
- Row: k centroids (each the event-weighted mean of the raw basis rows of its cluster, so each lies in
  the unit ball for unit basis rows), largest cluster (events) first, ties in seed order (for users
  with <= k items: in basis-row order). Slots without a cluster (fewer distinct items, or fewer
  distinct directions, than k) are zero; a user without window events gets the zero row. Stored
  flattened: (k * dim) floats, `LteBatch.tokens` = k.
- k = 1 is the uniform LTE (one cluster holding every event), up to float rounding.
- Determinism: no randomness, and a user's row depends only on its own events: the input is
  canonicalised (np.unique), users are batched by their number of distinct items, and every matrix
  product is one user's, of a shape fixed by that user. Shards and insertion orders give
  bit-identical rows (tested).
"""

from __future__ import annotations

import numpy as np

from lte.config import LteSettings
from lte.embeddings import BasisLike, WindowedEvents, register_variant

# Floats of one user batch's (users, points, dim) arrays; bounds memory, never changes a result.
_CHUNK_FLOATS = 4_000_000


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero): cosine becomes a dot product."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _distinct_points(events: WindowedEvents, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, basis_row, events) per distinct (user, basis row), sorted by (user, basis row)."""
    key = events.user_row.astype(np.int64) * n_rows + events.basis_row.astype(np.int64)
    distinct, counts = np.unique(key, return_counts=True)
    return distinct // n_rows, distinct % n_rows, counts


def _greedy_seeds(points: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """(g, k) point indices: greedy k-means++ seeds of each user (see the module docstring)."""
    g, p = weights.shape
    users = np.arange(g)
    seeds = np.zeros((g, k), dtype=np.int64)
    seeds[:, 0] = np.argmax(weights, axis=1)  # points are in basis-row order: ties -> lowest row
    nearest = np.full((g, p), -np.inf, dtype=np.float32)  # cosine to the nearest seed so far
    for j in range(1, k):
        newest = points[users, seeds[:, j - 1]]  # (g, dim)
        nearest = np.maximum(nearest, np.matmul(points, newest[:, :, None])[..., 0])
        distance = np.maximum(1.0 - nearest, 0.0)
        score = weights * distance * distance
        score[users[:, None], seeds[:, :j]] = -1.0  # a seed is never picked twice
        seeds[:, j] = np.argmax(score, axis=1)
    return seeds


def _lloyd(points: np.ndarray, weights: np.ndarray, seeds: np.ndarray, iterations: int) -> np.ndarray:
    """(g, p, k) weighted one-hot assignment after at most `iterations` spherical Lloyd steps."""
    g, _, _ = points.shape
    k = seeds.shape[1]
    directions = points[np.arange(g)[:, None], seeds]  # (g, k, dim), unit
    assignment = None
    for _ in range(iterations):
        similarity = np.matmul(points, directions.transpose(0, 2, 1))  # (g, p, k) cosines
        new = np.argmax(similarity, axis=2)  # ties -> lower cluster index
        if assignment is not None and np.array_equal(new, assignment):
            break  # every user of the batch is at a fixed point
        assignment = new
        members = (assignment[..., None] == np.arange(k)) * weights[..., None]  # (g, p, k)
        sums = np.matmul(members.transpose(0, 2, 1), points)  # (g, k, dim)
        norms = np.linalg.norm(sums, axis=2, keepdims=True)
        directions = np.where(norms > 0, sums / np.where(norms > 0, norms, 1.0), directions)
    return (assignment[..., None] == np.arange(k)) * weights[..., None]


def _cluster_users(unit: np.ndarray, raw: np.ndarray, point_rows: np.ndarray, point_weights: np.ndarray,
                   k: int, iterations: int) -> np.ndarray:
    """(g, k, dim) ordered centroids for g users with p > k points each; point_rows (g, p)."""
    points = unit[point_rows]  # (g, p, dim)
    weights = point_weights.astype(np.float32)
    members = _lloyd(points, weights, _greedy_seeds(points, weights, k), iterations)  # (g, p, k)
    sizes = members.sum(axis=1)  # (g, k) events per cluster (exact: integer counts)
    sums = np.matmul(members.transpose(0, 2, 1), raw[point_rows])  # (g, k, dim)
    centroids = np.divide(sums, sizes[..., None], out=np.zeros_like(sums), where=sizes[..., None] > 0)
    order = np.argsort(-sizes, axis=1, kind="stable")  # largest first, ties in seed order
    return np.take_along_axis(centroids, order[..., None], axis=1)


def multi_interest_vectors(events: WindowedEvents, basis: BasisLike, settings: LteSettings) -> np.ndarray:
    """(n_users, k * dim) float32: each user's k interest centroids, flattened (module docstring)."""
    k, iterations = int(settings.interests), int(settings.interest_iterations)
    if k < 1 or iterations < 1:
        raise ValueError(f"lte.interests and lte.interest_iterations must be >= 1, got {k} and {iterations}")
    raw = np.asarray(basis.vectors, dtype=np.float32)
    n_users, dim = events.n_users, raw.shape[1]
    out = np.zeros((n_users, k, dim), dtype=np.float32)
    if events.user_row.size == 0:
        return out.reshape(n_users, k * dim)
    user, row, count = _distinct_points(events, raw.shape[0])
    n_points = np.bincount(user, minlength=n_users)
    start = np.concatenate([[0], np.cumsum(n_points)[:-1]])

    # At most k distinct items: each item is its own interest, most events first, then basis row.
    direct = n_points[user] <= k
    order = np.flatnonzero(direct)[np.lexsort((row[direct], -count[direct], user[direct]))]
    position = np.arange(order.size)
    first_of_user = np.ones(order.size, dtype=bool)
    first_of_user[1:] = user[order][1:] != user[order][:-1]
    rank = position - np.maximum.accumulate(np.where(first_of_user, position, 0))
    out[user[order], rank] = raw[row[order]]

    # More than k: spherical k-means, batched over users with the same number of distinct items.
    unit = unit_rows(raw)
    clustered = np.flatnonzero(n_points > k)
    for size in np.unique(n_points[clustered]):
        users = clustered[n_points[clustered] == size]
        batch = max(1, _CHUNK_FLOATS // (int(size) * dim))
        for lo in range(0, users.size, batch):
            chunk = users[lo:lo + batch]
            index = start[chunk][:, None] + np.arange(size)  # (g, size) point indices
            out[chunk] = _cluster_users(unit, raw, row[index], count[index], k, iterations)
    return out.reshape(n_users, k * dim)


register_variant("multi_interest", multi_interest_vectors, needs_time=False,
                 tokens=lambda settings: int(settings.interests))
