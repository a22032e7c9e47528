"""Parquet copies of the LTE feature store in the artifact store (S3 or a directory), and the way back.

The DuckDB file stays local (docs/decisions.md 5), so when artifacts live on S3 the LTE assets also
copy what they wrote there: `export_lte` runs DuckDB `COPY (SELECT ...) TO 'file.parquet'` on a
temp file and uploads it in one PUT under a time- and content-addressed key

    lte_exports/<table>/<basis_hash>/<variant>/<first as_of>_<last as_of>-<sha256[:16]>.parquet

(rows ordered by as_of, user_id; the snapshot columns, without `published_at`). Re-exporting the
same rows gives the same key, so a retried step overwrites nothing with different bytes.

`restore_lte` loads an export into a (possibly new, empty) LTE_HOME through `FeatureStore`: every
snapshot in the file is appended (first write wins, so restoring twice adds nothing), and an
`lte_live` export is made the live set again. From the shell:

    python -m lte.lte_export list [--table lte_live]
    python -m lte.lte_export restore lte_exports/lte_live/<...>.parquet
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from lte.embeddings import LteBatch
from lte.feature_store import COLUMNS, FeatureStore
from lte.storage import ArtifactStore

EXPORT_PREFIX = "lte_exports"
TABLES = ("lte_snapshots", "lte_live")


def time_key(moment: datetime) -> str:
    """A path- and tag-safe name of a time (UTC, second precision): 20250301T000000Z."""
    return pd.Timestamp(moment).tz_convert("UTC").strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class LteExport:
    key: str
    uri: str
    rows: int
    snapshots: int
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RestoreReport:
    key: str
    snapshots: int  # distinct (as_of, basis_hash, variant) in the file
    rows_added: int  # snapshot rows that were not there yet
    live_rows: int | None  # rows made live (None: not a live export)

    def to_dict(self) -> dict:
        return asdict(self)


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def export_lte(
    con: duckdb.DuckDBPyConnection,
    store: ArtifactStore,
    table: str,
    basis_hash: str,
    variant: str,
    as_of: list[datetime] | None = None,
) -> LteExport:
    """Copy `table`'s rows of one basis and variant (at the given as_of times; all when None) to a
    Parquet file in `store`. Raises LookupError when there is nothing to export."""
    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, got {table!r}")
    where = "basis_hash = $basis AND variant = $variant"
    params: dict = {"basis": basis_hash, "variant": variant}
    if as_of is not None:
        where += " AND epoch_us(as_of) IN (SELECT unnest($times))"
        params["times"] = [int(pd.Timestamp(t).value // 1000) for t in as_of]
    rows, snapshots, first, last = con.execute(
        f"SELECT count(*), count(DISTINCT as_of), min(as_of), max(as_of) FROM {table} WHERE {where}", params
    ).fetchall()[0]
    if rows == 0:
        raise LookupError(f"{table} holds no rows for basis {basis_hash[:12]} variant {variant!r} to export")
    with tempfile.TemporaryDirectory(prefix="lte-export-") as tmp:
        path = Path(tmp) / "export.parquet"
        con.execute(
            f"COPY (SELECT {COLUMNS} FROM {table} WHERE {where} ORDER BY as_of, user_id) "
            f"TO '{_sql_path(path)}' (FORMAT parquet)",
            params,
        )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        key = f"{EXPORT_PREFIX}/{table}/{basis_hash}/{variant}/{time_key(first)}_{time_key(last)}-{digest[:16]}.parquet"
        uri = store.put_file(path, key)
    return LteExport(key=key, uri=uri, rows=int(rows), snapshots=int(snapshots), sha256=digest)


def list_exports(store: ArtifactStore, table: str | None = None) -> list[str]:
    """Export keys in the store, ordered by their as_of range (the file name starts with it)."""
    keys = store.list(f"{EXPORT_PREFIX}/{table}/" if table else f"{EXPORT_PREFIX}/")
    return sorted((k for k in keys if k.endswith(".parquet")), key=lambda k: (Path(k).name, k))


def _batches(con: duckdb.DuckDBPyConnection, path: Path) -> list[LteBatch]:
    source = f"read_parquet('{_sql_path(path)}')"
    batches = []
    for as_of, basis_hash, variant in con.execute(
        f"SELECT DISTINCT as_of, basis_hash, variant FROM {source} ORDER BY as_of, basis_hash, variant"
    ).fetchall():
        table = con.sql(
            f"""SELECT user_id, n_events, vector, window_start, window_end FROM {source}
                WHERE as_of = $as_of AND basis_hash = $basis AND variant = $variant ORDER BY user_id""",
            params={"as_of": as_of, "basis": basis_hash, "variant": variant},
        ).to_arrow_table()
        n = table.num_rows
        vectors = np.asarray(table["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False), np.float32)
        window_start, window_end = table["window_start"][0].as_py(), table["window_end"][0].as_py()
        batches.append(LteBatch(
            user_ids=table["user_id"].to_numpy().astype(np.int64), vectors=vectors.reshape(n, -1),
            n_events=table["n_events"].to_numpy().astype(np.int32), as_of=as_of, window_start=window_start,
            window_end=window_end, basis_hash=basis_hash, variant=variant,
        ))
    return batches


def restore_lte(con: duckdb.DuckDBPyConnection, store: ArtifactStore, key: str, live: bool | None = None) -> RestoreReport:
    """Load the export `key` into the feature store behind `con`. `live` (default: the export is of
    `lte_live`) also swaps the live table to the file's snapshot, atomically."""
    live = key.startswith(f"{EXPORT_PREFIX}/lte_live/") if live is None else live
    with tempfile.TemporaryDirectory(prefix="lte-restore-") as tmp:
        path = store.get_file(key, Path(tmp) / "export.parquet")
        batches = _batches(con, path)
    if not batches:
        raise LookupError(f"{store.uri(key)} holds no LTE rows")
    if live and len(batches) != 1:
        raise ValueError(f"{store.uri(key)} holds {len(batches)} snapshots; only a one-snapshot export can become live")
    feature_store = FeatureStore(con)
    added = sum(feature_store.write_snapshot(batch) for batch in batches)
    live_rows = feature_store.publish_live(batches[0]) if live else None
    return RestoreReport(key=key, snapshots=len(batches), rows_added=added, live_rows=live_rows)
