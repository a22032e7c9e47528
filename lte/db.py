"""The DuckDB file that holds events, items, quarantine, ingestions and the LTE feature store.

DuckDB is single-writer across processes: a second writer gets an IOException about the lock.
`connect` waits and retries with a clear message instead of failing at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb


class StoreBusyError(RuntimeError):
    pass


def connect(path: Path | str, read_only: bool = False, wait_s: float = 60.0) -> duckdb.DuckDBPyConnection:
    """Open the store, waiting up to `wait_s` seconds for another process's write lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext_dir = path.parent / ".duckdb-extensions"  # never ~/.duckdb
    config = {"extension_directory": str(ext_dir), "autoinstall_known_extensions": False}
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                if "lock" in str(exc).lower():
                    raise StoreBusyError(
                        f"{path} is locked by another process for more than {wait_s:.0f}s "
                        "(DuckDB allows one writer). Wait for the other `lte`/Dagster run to finish."
                    ) from exc
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN ... COMMIT, ROLLBACK on any exception (including KeyboardInterrupt)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
