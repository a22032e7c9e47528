"""Serving: top-k items for users from a registered model, their live LTE and their recent events.

A request for user u with model version v (found by alias):
1. The live LTE row of u (`lte_live`) and its basis hash. The LTE must be on v's basis or an
   extension of it with the same encoder (lte.basis.require_compatible); otherwise the request is
   refused with both hashes, and the versions that would fit are named. A model trained on a
   multi-interest LTE (config.lte_tokens = k > 1) reads the row as k centroids, (B, k, dim) with a
   (B, k) mask of non-empty interests, exactly as in training (training/data.py).
2. u's last `max_len` events on items in v's basis, ordered by (ts, item_id, event_id) as in
   training; items newer than v's basis cannot be scored and are skipped.
3. Scores over every basis item (index 0 = padding never ranks); the k best with their text.

Nothing is cached across calls except inside one `Recommender` (model, basis checks), which
`bench/serve.py` and batch callers keep alive; `recommend()` builds one per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from lte.basis import BasisMismatchError


class UnknownUserError(LookupError):
    pass


class ServingBasisError(BasisMismatchError):
    """BasisMismatchError with the model version and the versions that would be compatible."""

    def __init__(self, cause: BasisMismatchError, hint: str):
        Exception.__init__(self, f"{cause} {hint}".strip())
        self.model_hash = cause.model_hash
        self.serving_hash = cause.serving_hash


@dataclass(frozen=True)
class RecommendedItem:
    rank: int
    item_id: int
    score: float
    title: str
    text: str


@dataclass(frozen=True)
class Recommendation:
    user_id: int
    model_version: str
    alias: str
    model_basis_hash: str
    lte_basis_hash: str | None  # None = the user has no live LTE row
    lte_events: int  # events inside the user's LTE window (0 = the model's "no LTE" token)
    history_length: int  # recent events fed to the model (<= max_len)
    items: list[RecommendedItem] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class Ranker:
    """Pure scoring: catalog item ids in, catalog item ids out. Used by serving and the pyfunc."""

    def __init__(self, model, item_ids: np.ndarray):
        self.model = model.eval()
        self.item_ids = np.asarray(item_ids, dtype=np.int64)  # basis order: index i + 1 = item_ids[i]
        self.max_len = model.config.max_len
        order = np.argsort(self.item_ids, kind="stable")
        self._sorted_ids, self._order = self.item_ids[order], order

    def indices(self, item_ids: np.ndarray) -> np.ndarray:
        """Model item index (basis row + 1) of each catalog id; 0 where the basis lacks the item."""
        query = np.asarray(item_ids, dtype=np.int64)
        pos = np.clip(np.searchsorted(self._sorted_ids, query), 0, len(self._sorted_ids) - 1)
        return np.where(self._sorted_ids[pos] == query, self._order[pos] + 1, 0)

    def encode(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, max_len) int64, left-padded with 0: the last max_len known items of each history."""
        batch = np.zeros((len(histories), self.max_len), dtype=np.int64)
        for row, history in enumerate(histories):
            known = self.indices(history)
            known = known[known > 0][-self.max_len:]
            if len(known):
                batch[row, -len(known):] = known
        return torch.from_numpy(batch)

    def rank(self, histories: Sequence[np.ndarray], lte: np.ndarray, lte_mask: np.ndarray,
             k: int) -> tuple[np.ndarray, np.ndarray]:
        """(top item ids (B, k) int64, scores (B, k) float32), best first; k is capped at n_items."""
        items = self.encode(histories)
        lte_t = torch.as_tensor(np.asarray(lte, dtype=np.float32))
        mask_t = torch.as_tensor(np.asarray(lte_mask, dtype=bool))
        scores = self.model.score_all(items, lte_t, mask_t)  # (B, n_items + 1), [:, 0] = -inf
        top = torch.topk(scores, k=min(k, len(self.item_ids)), dim=1)
        return self.item_ids[top.indices.numpy() - 1], top.values.numpy()


class Recommender:
    """One loaded model version serving many requests against one DuckDB store."""

    def __init__(self, settings, alias: str = "champion", registry=None):
        from lte.storage import open_store
        from training.registry import Registry

        self.settings = settings
        self.alias = alias
        self.registry = registry or Registry.from_settings(settings)
        self.bundle = self.registry.load_bundle(alias)
        self.ranker = Ranker(self.bundle.model, self.bundle.item_ids)
        self.store = open_store(settings.storage.uri, settings.artifacts_dir, settings.storage.s3_endpoint_url)
        self._compatible: set[str] = {self.bundle.manifest.basis_hash}

    @property
    def version(self) -> str:
        return self.bundle.version

    def check_basis(self, serving_hash: str) -> None:
        """Raise ServingBasisError unless LTEs on `serving_hash` can feed this model."""
        if serving_hash in self._compatible:
            return
        from lte.basis import require_compatible

        try:
            require_compatible(self.bundle.manifest, serving_hash, self.store)
        except BasisMismatchError as exc:
            raise ServingBasisError(exc, self._compatible_versions_hint(serving_hash)) from exc
        self._compatible.add(serving_hash)

    def recommend(self, con, user_ids: Sequence[int], k: int = 10) -> list[Recommendation]:
        """Recommendations for each user (same order). Users without any event raise UnknownUserError."""
        user_ids = [int(u) for u in user_ids]
        known = known_users(con, user_ids)
        unknown = [u for u in user_ids if u not in known]
        if unknown:
            raise UnknownUserError(f"users {unknown[:10]} have no events; `lte users` lists users you can ask for")
        histories = recent_items(con, user_ids, self.bundle.item_ids, self.ranker.max_len)
        live = live_lte(con, user_ids)
        for serving_hash in live.basis_hashes:
            self.check_basis(serving_hash)
        lte, lte_mask = live.model_inputs(self.bundle.config.lte_dim, self.bundle.config.lte_tokens)
        top_ids, scores = self.ranker.rank(histories, lte, lte_mask, k)
        texts = item_texts(con, np.unique(top_ids))
        out = []
        for row, user in enumerate(user_ids):
            items = [
                RecommendedItem(rank=r + 1, item_id=int(item), score=float(score),
                                title=texts.get(int(item), ("", ""))[0], text=texts.get(int(item), ("", ""))[1])
                for r, (item, score) in enumerate(zip(top_ids[row], scores[row], strict=True))
            ]
            out.append(Recommendation(
                user_id=user,
                model_version=self.version,
                alias=self.alias,
                model_basis_hash=self.bundle.manifest.basis_hash,
                lte_basis_hash=live.row_hashes[row],
                lte_events=int(live.n_events[row]),
                history_length=int(len(histories[row])),
                items=items,
            ))
        return out

    def _compatible_versions_hint(self, serving_hash: str) -> str:
        from lte.basis import compatible

        fits = []
        for info in self.registry.list_versions():
            if info.basis_hash and compatible(info.basis_hash, serving_hash, self.store):
                fits.append(info.version)
        where = f"{self.registry.model_name} version {self.version} (alias {self.alias!r})"
        if fits:
            return (f"[{where}] Versions trained on a compatible basis: {', '.join(fits)}; "
                    f"`lte promote VERSION` (or `lte rollback`) to serve one of them.")
        return f"[{where}] No registered version fits basis {serving_hash[:12]}: retrain and register one."


@dataclass(frozen=True)
class LiveLte:
    """Live LTE rows of the requested users, in request order (None where a user has no row)."""

    vectors: list[np.ndarray | None]
    n_events: np.ndarray  # (n,) int64, 0 without a row
    row_hashes: list[str | None]

    @property
    def basis_hashes(self) -> list[str]:
        """Distinct basis hashes among the rows found (one when lte_live holds one snapshot)."""
        return sorted({h for h in self.row_hashes if h is not None})

    def matrix(self, dim: int, tokens: int = 1) -> np.ndarray:
        """(n, dim) float32, or (n, tokens, dim) for tokens > 1 (a multi-interest LTE: k centroids per
        row); zeros for users without a live row. Call after the basis check."""
        out = np.zeros((len(self.vectors), tokens * dim), dtype=np.float32)
        for i, vector in enumerate(self.vectors):
            if vector is None:
                continue
            if vector.shape != (tokens * dim,):
                raise ValueError(
                    f"the live LTE row has {vector.size} floats, the model reads {tokens} vector(s) of {dim}: "
                    "publish LTEs of the variant and lte.interests this version was trained on, or serve "
                    "a version trained on the live LTEs"
                )
            out[i] = vector
        if tokens == 1:
            return out
        # Imported only for multi-interest models: lte.embeddings pulls in DuckDB and SciPy.
        from lte.embeddings import split_tokens

        return split_tokens(out, tokens)

    def model_inputs(self, dim: int, tokens: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(lte, lte_mask) as the model was trained on: (n, dim) and (n,) = has an LTE, or for
        tokens > 1 (n, tokens, dim) and (n, tokens) = non-empty interest."""
        lte = self.matrix(dim, tokens)
        if tokens == 1:
            return lte, self.n_events > 0
        from lte.embeddings import nonempty_tokens

        return lte, nonempty_tokens(lte, self.n_events)


def live_lte(con, user_ids: Sequence[int]) -> LiveLte:
    """The `lte_live` rows of `user_ids`, read with a per-user filter.

    Read here rather than through FeatureStore.live: that method creates its tables first (fails on
    the read-only connection serving uses, so serving never takes DuckDB's single writer lock) and
    reads the whole live table, which would dominate a single request's latency.
    """
    vectors: list[np.ndarray | None] = [None] * len(user_ids)
    n_events = np.zeros(len(user_ids), dtype=np.int64)
    row_hashes: list[str | None] = [None] * len(user_ids)
    if not user_ids or not _has_table(con, "lte_live"):
        return LiveLte(vectors, n_events, row_hashes)
    con.register("_serve_users", _frame(user_id=np.asarray(user_ids, dtype=np.int64)))
    try:
        rows = con.execute(
            "SELECT l.user_id, l.basis_hash, l.n_events, l.vector FROM lte_live l "
            "SEMI JOIN _serve_users u ON l.user_id = u.user_id"
        ).fetchall()
    finally:
        con.unregister("_serve_users")
    position = {int(u): i for i, u in enumerate(user_ids)}
    for user, basis_hash, count, vector in rows:
        i = position[int(user)]
        vectors[i] = np.asarray(vector, dtype=np.float32)
        n_events[i], row_hashes[i] = int(count), basis_hash
    return LiveLte(vectors, n_events, row_hashes)


def known_users(con, user_ids: Sequence[int]) -> set[int]:
    """The subset of `user_ids` with at least one event."""
    if not _has_table(con, "events"):
        return set()
    con.register("_serve_users", _frame(user_id=np.asarray(user_ids, dtype=np.int64)))
    try:
        rows = con.execute(
            "SELECT DISTINCT e.user_id FROM events e SEMI JOIN _serve_users u ON e.user_id = u.user_id"
        ).fetchall()
    finally:
        con.unregister("_serve_users")
    return {int(u) for (u,) in rows}


def _has_table(con, name: str) -> bool:
    """A table or a view (`events` is a view over `event_log`)."""
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_catalog = current_database()",
        [name]).fetchall()[0][0])


def recent_items(con, user_ids: Sequence[int], model_item_ids: np.ndarray, max_len: int) -> list[np.ndarray]:
    """Each user's last `max_len` events on items in `model_item_ids`, oldest first (catalog ids).

    Order is (ts, item_id, event_id) as in training; events on items unknown to the model are
    skipped before the cut, so the model always sees up to max_len items it can embed.
    """
    if not user_ids:
        return []
    con.register("_serve_model_items", _frame(item_id=np.asarray(model_item_ids, dtype=np.int64)))
    con.register("_serve_users", _frame(user_id=np.asarray(user_ids, dtype=np.int64)))
    try:
        rows = con.execute(
            """
            SELECT user_id, list(item_id ORDER BY ts, item_id, event_id) AS items
            FROM (
                SELECT e.user_id, e.item_id, e.ts, e.event_id,
                       row_number() OVER (PARTITION BY e.user_id
                                          ORDER BY e.ts DESC, e.item_id DESC, e.event_id DESC) AS recency
                FROM events e
                SEMI JOIN _serve_users u ON e.user_id = u.user_id
                SEMI JOIN _serve_model_items m ON e.item_id = m.item_id
            )
            WHERE recency <= ?
            GROUP BY user_id
            """,
            [max_len],
        ).fetchall()
    finally:
        con.unregister("_serve_model_items")
        con.unregister("_serve_users")
    by_user = {int(user): np.asarray(items, dtype=np.int64) for user, items in rows}
    return [by_user.get(int(u), np.zeros(0, dtype=np.int64)) for u in user_ids]


def item_texts(con, item_ids: np.ndarray) -> dict[int, tuple[str, str]]:
    """item_id -> (title, text); title is attributes.title when the catalog has one, else the text."""
    con.register("_serve_items", _frame(item_id=np.asarray(item_ids, dtype=np.int64)))
    try:
        rows = con.execute(
            """
            SELECT i.item_id, coalesce(json_extract_string(i.attributes, '$.title'), i.text), i.text
            FROM items i SEMI JOIN _serve_items s ON i.item_id = s.item_id
            """
        ).fetchall()
    finally:
        con.unregister("_serve_items")
    return {int(item): (title, text) for item, title, text in rows}


def _frame(**columns):
    import pandas as pd

    return pd.DataFrame(columns)


def recommend(settings, user_id: int, k: int = 10, alias: str = "champion") -> Recommendation:
    """Top-k items for one user from the model behind `alias`; refuses an incompatible live LTE."""
    from lte.db import connect

    recommender = Recommender(settings, alias)
    con = connect(settings.duckdb_path, read_only=True)
    try:
        return recommender.recommend(con, [user_id], k)[0]
    finally:
        con.close()


def list_users(settings, limit: int | None = 20) -> list[dict]:
    """Users by event count (most active first): user_id, events, lte_events (None = no live LTE row)."""
    from lte.db import connect

    if not settings.duckdb_path.exists():
        return []
    con = connect(settings.duckdb_path, read_only=True)
    try:
        if not _has_table(con, "events"):
            return []
        live_join = "LEFT JOIN lte_live l USING (user_id)" if _has_table(con, "lte_live") else ""
        lte_col = "any_value(l.n_events)" if live_join else "NULL"
        sql = (f"SELECT e.user_id, count(*) AS events, {lte_col} AS lte_events FROM events e {live_join} "
               "GROUP BY e.user_id ORDER BY events DESC, e.user_id")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = con.execute(sql).fetchall()
    finally:
        con.close()
    return [{"user_id": int(u), "events": int(n), "lte_events": None if lte is None else int(lte)}
            for u, n, lte in rows]
