"""The LTE feature store: an append-only snapshot history plus the one live row per user.

Tables (DuckDB, docs/architecture.md):
- `lte_snapshots(user_id, as_of, basis_hash, variant, window_start, window_end, n_events, vector,
  written_at)`: one row per (user_id, as_of, basis_hash, variant). Append-only: writing a key that
  already exists is a no-op (first write wins), so re-running a backfill or a retried shard adds
  nothing and history never changes under a model trained on it. `replace=True` is the explicit,
  logged-by-the-caller escape hatch for a snapshot known to be wrong.
- `lte_live`: the rows serving reads, all from one snapshot (same as_of, basis, variant) plus
  `published_at`. `publish_live` writes the snapshot and swaps live in ONE DuckDB transaction: a
  crash (even kill -9) leaves either the old live set or the new one, never a mix.
- `lte_layouts(as_of, basis_hash, variant, tokens)`: vectors per user in each snapshot's rows (1 for
  single-vector variants; k for multi_interest, whose `vector` holds k centroids flattened, k * dim
  floats). Written with the snapshot in the same transaction; a snapshot without a layout row (written
  before this table existed) has tokens = 1. All snapshots of one (variant, basis) keep one layout:
  a write with another k is refused, because rows are keyed by variant, not by k.

Reads:
- `as_of(user_ids, times, ...)`: for each (user, time), the latest snapshot row of that user with
  as_of <= time (DuckDB ASOF JOIN). A snapshot at exactly `time` is allowed: it only used events
  before time - lag. Users without such a row get the zero vector, n_events 0, snapshot_as_of None.
  Training and evaluation must read LTEs only through this path.
- Every read for a model names the model's basis. Rows on that basis or on an extension of it (same
  encoder, parent rows bit-identical: `lte.basis.compatible`) are usable, because LTEs are averages
  of frozen rows; anything else is refused with `lte.basis.BasisMismatchError`. This is what lets an
  older model keep reading today's live LTEs after a rollback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from lte.basis import Basis, BasisMismatchError, compatible
from lte.config import LteSettings
from lte.db import transaction
from lte.embeddings import LteBatch, _registered, compute_lte, from_epoch_us, to_epoch_us
from lte.storage import ArtifactStore

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS lte_snapshots (
        user_id BIGINT NOT NULL,
        as_of TIMESTAMPTZ NOT NULL,
        basis_hash VARCHAR NOT NULL,
        variant VARCHAR NOT NULL,
        window_start TIMESTAMPTZ,
        window_end TIMESTAMPTZ,
        n_events INTEGER NOT NULL,
        vector FLOAT[] NOT NULL,
        written_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS lte_live (
        user_id BIGINT NOT NULL,
        as_of TIMESTAMPTZ NOT NULL,
        basis_hash VARCHAR NOT NULL,
        variant VARCHAR NOT NULL,
        window_start TIMESTAMPTZ,
        window_end TIMESTAMPTZ,
        n_events INTEGER NOT NULL,
        vector FLOAT[] NOT NULL,
        written_at TIMESTAMPTZ NOT NULL,
        published_at TIMESTAMPTZ NOT NULL
    )""",
]
COLUMNS = "user_id, as_of, basis_hash, variant, window_start, window_end, n_events, vector, written_at"
# Created by the first write (not by ensure_schema), so reading an older store read-only still works.
LAYOUT_SCHEMA = """CREATE TABLE IF NOT EXISTS lte_layouts (
    as_of TIMESTAMPTZ NOT NULL,
    basis_hash VARCHAR NOT NULL,
    variant VARCHAR NOT NULL,
    tokens INTEGER NOT NULL
)"""

BasisRef = Basis | str


@dataclass
class AsOfResult:
    """Row i answers (user_ids[i], times[i]); snapshot_as_of[i] is None where no snapshot existed."""

    vectors: np.ndarray  # (n, tokens * dim) float32, zero rows where missing
    n_events: np.ndarray  # (n,) int32, 0 where missing
    snapshot_as_of: list[datetime | None]
    basis_hashes: list[str | None]
    tokens: int = 1  # vectors per user in a row (k for multi_interest)


def _hash_of(basis: BasisRef) -> str:
    return basis if isinstance(basis, str) else basis.hash


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"times must be timezone-aware (e.g. tzinfo=UTC); got {moment}")
    return moment.astimezone(UTC)


def _times_us(times: Sequence[datetime] | np.ndarray) -> np.ndarray:
    """Epoch microseconds from tz-aware datetimes, numpy datetime64 (taken as UTC) or int64 us."""
    if isinstance(times, np.ndarray) and times.dtype.kind == "M":
        return times.astype("datetime64[us]").astype(np.int64)
    if isinstance(times, np.ndarray) and times.dtype.kind in "iu":
        return times.astype(np.int64)
    return np.array([to_epoch_us(_as_utc(t)) for t in times], dtype=np.int64)


def _vectors_from_arrow(column: pa.ChunkedArray, n: int, dim: int) -> np.ndarray:
    """(n, dim) float32 from a FLOAT[] column; null entries become zero rows."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    out = np.zeros((n, dim), dtype=np.float32)
    if n == 0:
        return out
    valid = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    values = array.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if values.size != int(valid.sum()) * dim:
        raise ValueError(f"stored LTE vectors do not all have {dim} floats (tokens * basis dimension); "
                         "were snapshots of this variant written with different lte.interests?")
    out[valid] = values.reshape(-1, dim)
    return out


def _batch_table(batch: LteBatch) -> pa.Table:
    vectors = np.ascontiguousarray(batch.vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise ValueError("refusing to store an LTE batch with NaN/inf values")
    return pa.table({
        "user_id": np.asarray(batch.user_ids, dtype=np.int64),
        "n_events": np.asarray(batch.n_events, dtype=np.int32),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
    })


class FeatureStore:
    """Snapshots and live LTEs in the DuckDB file behind `con`.

    `artifact_store` (where bases live) is needed only to accept snapshots on a *descendant* of a
    model's basis; without it only the exact basis hash is accepted."""

    def __init__(self, con: duckdb.DuckDBPyConnection, artifact_store: ArtifactStore | None = None):
        self.con = con
        self.artifact_store = artifact_store

    def ensure_schema(self) -> None:
        """Create the tables if missing (a no-op on a read-only connection that already has them)."""
        present = {r[0] for r in self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name IN ('lte_snapshots', 'lte_live')").fetchall()}
        for name, ddl in zip(("lte_snapshots", "lte_live"), SCHEMA, strict=True):
            if name not in present:
                self.con.execute(ddl)

    # ------------------------------------------------------------------ writes

    def _insert_snapshot(self, batch: LteBatch, replace: bool) -> int:
        """Rows added; call inside a transaction."""
        if batch.as_of is None or batch.basis_hash is None or batch.variant is None:
            raise ValueError("an LTE batch needs as_of, basis_hash and variant to be stored")
        key = {"as_of": _as_utc(batch.as_of), "basis": batch.basis_hash, "variant": batch.variant}
        self._record_layout(batch, key)
        with _registered(self.con, _batch_table(batch)) as incoming:
            if replace:
                self.con.execute(
                    f"""DELETE FROM lte_snapshots WHERE as_of = $as_of AND basis_hash = $basis
                        AND variant = $variant AND user_id IN (SELECT user_id FROM {incoming})""",
                    key,
                )
            before = self._count("lte_snapshots")
            self.con.execute(
                f"""INSERT INTO lte_snapshots
                    SELECT i.user_id, $as_of, $basis, $variant, $window_start, $window_end,
                           i.n_events, i.vector::FLOAT[], now()
                    FROM {incoming} i
                    WHERE NOT EXISTS (
                        SELECT 1 FROM lte_snapshots s
                        WHERE s.as_of = $as_of AND s.basis_hash = $basis AND s.variant = $variant
                          AND s.user_id = i.user_id)""",
                {**key, "window_start": batch.window_start, "window_end": batch.window_end},
            )
            return self._count("lte_snapshots") - before

    def _record_layout(self, batch: LteBatch, key: dict) -> None:
        """Store the snapshot's tokens per row; refuse a k other than earlier snapshots' (call inside
        the write transaction)."""
        tokens = int(batch.tokens)
        if tokens < 1 or batch.vectors.shape[1] % tokens:
            raise ValueError(f"an LTE batch with rows of {batch.vectors.shape[1]} floats cannot hold {tokens} "
                             "vectors per user")
        self.con.execute(LAYOUT_SCHEMA)
        recorded = sorted(r[0] for r in self.con.execute(
            "SELECT DISTINCT tokens FROM lte_layouts WHERE basis_hash = $basis AND variant = $variant",
            {"basis": key["basis"], "variant": key["variant"]}).fetchall())
        if recorded and recorded != [tokens]:
            raise ValueError(
                f"snapshots of variant {batch.variant!r} on basis {batch.basis_hash[:12]} hold {recorded} "
                f"vectors per user, this batch {tokens}: the store keys rows by variant, not by k. Keep "
                "lte.interests at the stored value, or write the new k into a fresh LTE home"
            )
        self.con.execute(
            """INSERT INTO lte_layouts SELECT $as_of, $basis, $variant, $tokens
               WHERE NOT EXISTS (SELECT 1 FROM lte_layouts
                                 WHERE as_of = $as_of AND basis_hash = $basis AND variant = $variant)""",
            {**key, "tokens": tokens},
        )

    def _has_layouts(self) -> bool:
        return bool(self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'lte_layouts'").fetchall()[0][0])

    def _tokens(self, where: str, params: dict) -> list[int]:
        """Distinct recorded tokens of the snapshots matching `where` (over lte_layouts)."""
        if not self._has_layouts():
            return []
        return sorted(r[0] for r in self.con.execute(
            f"SELECT DISTINCT tokens FROM lte_layouts WHERE {where}", params).fetchall())

    def _count(self, table: str) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    def _transaction(self, body):
        with transaction(self.con):
            return body()

    def write_snapshot(self, batch: LteBatch, replace: bool = False) -> int:
        """Append `batch` to the history; returns rows added. Users already stored under the same
        (as_of, basis_hash, variant) are skipped (first write wins) unless replace=True, which
        overwrites exactly those users' rows. One transaction."""
        self.ensure_schema()
        return self._transaction(lambda: self._insert_snapshot(batch, replace))

    def publish_live(self, batch: LteBatch) -> int:
        """Store `batch` as a snapshot (first write wins) and make exactly its users' rows of that
        snapshot the live set, atomically. Returns the number of live rows."""
        self.ensure_schema()

        def body() -> int:
            self._insert_snapshot(batch, replace=False)
            with _registered(self.con, pa.table({"user_id": np.asarray(batch.user_ids, np.int64)})) as users:
                return self._swap_live(batch.as_of, batch.basis_hash, batch.variant, users)

        return self._transaction(body)

    def publish_snapshot(self, as_of: datetime, basis: BasisRef, variant: str) -> int:
        """Make a stored snapshot (e.g. written shard by shard) the live set, atomically."""
        self.ensure_schema()

        def body() -> int:
            rows = self._swap_live(as_of, _hash_of(basis), variant, users_table=None)
            if rows == 0:
                raise LookupError(
                    f"no snapshot at {as_of} for basis {_hash_of(basis)} variant {variant!r}; "
                    "write it first (backfill or write_snapshot)"
                )
            return rows

        return self._transaction(body)

    def _swap_live(self, as_of: datetime, basis_hash: str, variant: str, users_table: str | None) -> int:
        # Live is copied from the history, so whatever serving reads is also what as_of() returns.
        users_sql = f"AND user_id IN (SELECT user_id FROM {users_table})" if users_table else ""
        self.con.execute("DELETE FROM lte_live")
        self.con.execute(
            f"""INSERT INTO lte_live SELECT {COLUMNS}, now() FROM lte_snapshots
                WHERE as_of = $as_of AND basis_hash = $basis AND variant = $variant {users_sql}""",
            {"as_of": _as_utc(as_of), "basis": basis_hash, "variant": variant},
        )
        return self._count("lte_live")

    # ------------------------------------------------------------------ basis checks

    def _usable_hashes(self, basis: BasisRef, stored: Sequence[str]) -> list[str]:
        """The stored basis hashes whose LTEs a model on `basis` may read."""
        model_hash = _hash_of(basis)
        usable = []
        for serving_hash in stored:
            if serving_hash == model_hash:
                usable.append(serving_hash)
            elif self.artifact_store is not None and compatible(basis, serving_hash, self.artifact_store):
                usable.append(serving_hash)
        return usable

    def _require_usable(self, basis: BasisRef, stored: Sequence[str], what: str) -> list[str]:
        usable = self._usable_hashes(basis, stored)
        if stored and not usable:
            reason = f"{what} holds LTEs on {sorted(stored)} only"
            if self.artifact_store is None:
                reason += "; FeatureStore has no artifact_store, so extensions cannot be recognised"
            raise BasisMismatchError(_hash_of(basis), sorted(stored)[0], reason)
        return usable

    # ------------------------------------------------------------------ reads

    def _read_batch(self, table: str, where: str, params: dict, dim: int | None = None) -> LteBatch:
        result = self.con.sql(
            f"""SELECT user_id, epoch_us(as_of) AS as_of_us, basis_hash, variant,
                       epoch_us(window_start) AS ws_us, epoch_us(window_end) AS we_us, n_events, vector
                FROM {table} WHERE {where} ORDER BY user_id""",
            params=params,
        ).to_arrow_table()
        n = result.num_rows
        if n == 0:
            return LteBatch(np.zeros(0, np.int64), np.zeros((0, dim or 0), np.float32),
                            np.zeros(0, np.int32), None, None, None, None, None)
        keys = {(a, b, v) for a, b, v in zip(result["as_of_us"].to_pylist(), result["basis_hash"].to_pylist(),
                                             result["variant"].to_pylist(), strict=True)}
        if len(keys) != 1:
            raise ValueError(f"{table} rows for this read mix {len(keys)} snapshots; name as_of, basis and variant")
        as_of_us, basis_hash, variant = keys.pop()
        first_len = len(result["vector"][0])
        ws, we = result["ws_us"][0].as_py(), result["we_us"][0].as_py()
        recorded = self._tokens("epoch_us(as_of) = $as_of_us AND basis_hash = $basis AND variant = $variant",
                                {"as_of_us": as_of_us, "basis": basis_hash, "variant": variant})
        return LteBatch(
            user_ids=result["user_id"].to_numpy().astype(np.int64),
            vectors=_vectors_from_arrow(result["vector"], n, first_len),
            n_events=result["n_events"].to_numpy().astype(np.int32),
            as_of=from_epoch_us(as_of_us),
            window_start=None if ws is None else from_epoch_us(ws),
            window_end=None if we is None else from_epoch_us(we),
            basis_hash=basis_hash,
            variant=variant,
            tokens=recorded[0] if recorded else 1,
        )

    def live(self, users: Sequence[int] | np.ndarray | None = None, basis: BasisRef | None = None) -> LteBatch:
        """The live LTEs (all users, sorted by id; or `users` in the given order, zero rows and
        n_events 0 for users not live). With `basis` (the model's), refuses an incompatible live set."""
        self.ensure_schema()
        batch = self._read_batch("lte_live", "TRUE", {})
        if basis is not None and batch.basis_hash is not None:
            self._require_usable(basis, [batch.basis_hash], "lte_live")
        if users is None:
            return batch
        wanted = np.asarray(users, dtype=np.int64)
        pos = np.searchsorted(batch.user_ids, wanted)
        pos = np.clip(pos, 0, max(len(batch) - 1, 0))
        found = (batch.user_ids[pos] == wanted) if len(batch) else np.zeros(wanted.size, bool)
        vectors = np.zeros((wanted.size, batch.dim), np.float32)
        n_events = np.zeros(wanted.size, np.int32)
        vectors[found] = batch.vectors[pos[found]]
        n_events[found] = batch.n_events[pos[found]]
        return LteBatch(wanted, vectors, n_events, batch.as_of, batch.window_start, batch.window_end,
                        batch.basis_hash, batch.variant, tokens=batch.tokens)

    def snapshot_times_available(self, variant: str | None = None, basis: BasisRef | None = None) -> list[datetime]:
        """Distinct snapshot as_of times (ascending), optionally for one variant / exact basis."""
        self.ensure_schema()
        rows = self.con.execute(
            """SELECT DISTINCT epoch_us(as_of) FROM lte_snapshots
               WHERE ($variant IS NULL OR variant = $variant) AND ($basis IS NULL OR basis_hash = $basis)
               ORDER BY 1""",
            {"variant": variant, "basis": None if basis is None else _hash_of(basis)},
        ).fetchall()
        return [from_epoch_us(r[0]) for r in rows]

    def snapshot(
        self,
        as_of: datetime | None = None,
        variant: str = "uniform",
        basis: BasisRef | None = None,
        basis_hash: str | None = None,
    ) -> LteBatch:
        """One stored snapshot: at `as_of` (default: the latest for this variant and basis). The
        basis (`basis` or its alias `basis_hash`) may be omitted when only one is stored then."""
        self.ensure_schema()
        basis = basis if basis is not None else basis_hash
        if as_of is None:
            times = self.snapshot_times_available(variant, basis)
            if not times:
                raise LookupError(f"no LTE snapshot for variant {variant!r}"
                                  + (f" on basis {_hash_of(basis)}" if basis is not None else "")
                                  + "; run `lte embedding backfill`")
            as_of = times[-1]
        params = {"as_of": _as_utc(as_of), "variant": variant}
        where = "as_of = $as_of AND variant = $variant"
        if basis is not None:
            where += " AND basis_hash = $basis"
            params["basis"] = _hash_of(basis)
        return self._read_batch("lte_snapshots", where, params)

    def as_of(
        self,
        user_ids: Sequence[int] | np.ndarray,
        times: Sequence[datetime] | np.ndarray,
        variant: str,
        basis: BasisRef | None = None,
        basis_hash: str | None = None,
    ) -> AsOfResult:
        """Point-in-time LTEs: row i = the latest snapshot of user_ids[i] with as_of <= times[i],
        among snapshots of `variant` on the model's basis or an extension of it (`basis_hash` is an
        alias of `basis`). Never a snapshot from the future. Raises BasisMismatchError when the
        variant has snapshots but none on a usable basis."""
        self.ensure_schema()
        basis = basis if basis is not None else basis_hash
        if basis is None:
            raise ValueError("as_of needs the model's basis (Basis or basis hash) to check compatibility")
        user_ids = np.asarray(user_ids, dtype=np.int64)
        times_us = _times_us(times)
        if times_us.shape != user_ids.shape:
            raise ValueError(f"need one time per user: {user_ids.shape} users, {times_us.shape} times")
        stored = [r[0] for r in self.con.execute(
            "SELECT DISTINCT basis_hash FROM lte_snapshots WHERE variant = ?", [variant]).fetchall()]
        usable = self._require_usable(basis, stored, f"lte_snapshots (variant {variant!r})")
        if not usable:  # nothing stored for this variant yet: every query is a miss
            dim = basis.dim if isinstance(basis, Basis) else 0
            return AsOfResult(np.zeros((user_ids.size, dim), np.float32), np.zeros(user_ids.size, np.int32),
                              [None] * user_ids.size, [None] * user_ids.size)
        model_hash = _hash_of(basis)
        queries = pa.table({"q": np.arange(user_ids.size, dtype=np.int64), "user_id": user_ids, "t_us": times_us})
        with _registered(self.con, queries) as q:
            # 1. Candidate rows: this variant, usable bases only; if the same (user, as_of) exists on
            #    several usable bases, prefer the model's own basis, then the lowest hash (deterministic).
            # 2. ASOF LEFT JOIN: per query row, the candidate with the greatest as_of <= t. `>=`
            #    includes a snapshot at exactly t (it only used events before t - lag); nothing later.
            # 3. Unmatched query rows keep NULLs and become zero vectors below.
            result = self.con.sql(
                f"""WITH candidates AS (
                        SELECT user_id, epoch_us(as_of) AS as_of_us, basis_hash, n_events, vector
                        FROM lte_snapshots
                        WHERE variant = $variant AND list_contains($usable, basis_hash)
                        QUALIFY row_number() OVER (
                            PARTITION BY user_id, as_of
                            ORDER BY basis_hash = $model DESC, basis_hash) = 1
                    )
                    SELECT q.q, c.as_of_us, c.basis_hash, c.n_events, c.vector
                    FROM {q} q ASOF LEFT JOIN candidates c
                      ON q.user_id = c.user_id AND q.t_us >= c.as_of_us
                    ORDER BY q.q""",
                params={"variant": variant, "usable": usable, "model": model_hash},
            ).to_arrow_table()
        recorded = self._tokens("variant = $variant AND list_contains($usable, basis_hash)",
                                {"variant": variant, "usable": usable})
        if len(recorded) > 1:
            raise ValueError(f"snapshots of variant {variant!r} on the usable bases hold {recorded} vectors per "
                             "user; a model reads one k: rebuild them with one lte.interests")
        tokens = recorded[0] if recorded else 1
        width = self._stored_width(variant, usable, basis, tokens)
        as_of_us = result["as_of_us"].to_pylist()
        return AsOfResult(
            vectors=_vectors_from_arrow(result["vector"], user_ids.size, width),
            n_events=result["n_events"].fill_null(0).to_numpy().astype(np.int32),
            snapshot_as_of=[None if v is None else from_epoch_us(v) for v in as_of_us],
            basis_hashes=result["basis_hash"].to_pylist(),
            tokens=tokens,
        )

    def _stored_width(self, variant: str, usable: list[str], basis: BasisRef, tokens: int) -> int:
        """Floats per stored row: tokens * basis dim (checked against every row read), or the stored
        length when only the basis hash is known."""
        if isinstance(basis, Basis):
            return tokens * basis.dim
        rows = self.con.execute(
            "SELECT len(vector) FROM lte_snapshots WHERE variant = ? AND list_contains(?, basis_hash) LIMIT 1",
            [variant, usable],
        ).fetchall()
        return int(rows[0][0]) if rows else 0


# ---------------------------------------------------------------------- cadence and backfill


def snapshot_times(start: datetime, end: datetime, every_days: float) -> list[datetime]:
    """Snapshot times in [start, end] on a fixed grid: multiples of `every_days` since the Unix
    epoch (so daily snapshots fall at 00:00 UTC, and two backfills over overlapping ranges share
    their times and never duplicate work)."""
    if every_days <= 0:
        raise ValueError(f"every_days must be > 0, got {every_days}")
    step = int(round(every_days * 86_400_000_000))
    lo, hi = to_epoch_us(_as_utc(start)), to_epoch_us(_as_utc(end))
    first = -(-lo // step) * step
    return [from_epoch_us(t) for t in range(first, hi + 1, step)]


def backfill(
    con: duckdb.DuckDBPyConnection,
    basis: Basis,
    times: Sequence[datetime],
    lte_settings: LteSettings,
    shard: tuple[int, int] | None = None,
    store: FeatureStore | None = None,
) -> int:
    """Compute and store the snapshot at each time (oldest first); returns rows added. Resumable:
    a time whose snapshot (this basis and variant, unsharded) already exists is skipped, and rows
    already stored are never rewritten."""
    store = store or FeatureStore(con)
    store.ensure_schema()
    existing = set(store.snapshot_times_available(lte_settings.variant, basis.hash)) if shard is None else set()
    added = 0
    for moment in sorted(_as_utc(t) for t in times):
        if moment in existing:
            continue
        added += store.write_snapshot(compute_lte(con, basis, moment, lte_settings, shard=shard))
    return added


def snapshot_cadence_times(con: duckdb.DuckDBPyConnection, lte_settings: LteSettings,
                           start: datetime | None = None, end: datetime | None = None) -> list[datetime]:
    """The configured cadence (lte_settings.snapshot_every_days) over [start, end], defaulting to
    the events' time range (the last snapshot lies just after the last event)."""
    lo, hi = con.execute("SELECT epoch_us(min(ts)), epoch_us(max(ts)) FROM events").fetchall()[0]
    if lo is None and (start is None or end is None):
        raise LookupError("the events table is empty: ingest events before building snapshots")
    start = start or from_epoch_us(lo)
    end = end or from_epoch_us(hi) + timedelta(days=lte_settings.snapshot_every_days)
    return snapshot_times(start, end, lte_settings.snapshot_every_days)
