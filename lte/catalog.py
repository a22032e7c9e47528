"""Item catalog: id, text, attributes, first_seen. Text comes from content, never from behaviour."""

from __future__ import annotations

import duckdb
import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id BIGINT PRIMARY KEY,
    text VARCHAR NOT NULL,
    attributes JSON,
    first_seen TIMESTAMPTZ
)
"""


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(SCHEMA)


def upsert_items(con: duckdb.DuckDBPyConnection, items: pd.DataFrame) -> int:
    """Add items not yet in the catalog; existing rows keep their text (the basis depends on it)."""
    ensure_schema(con)
    frame = items[["item_id", "text", "attributes", "first_seen"]].copy()
    frame["item_id"] = frame["item_id"].astype("int64")
    before = con.execute("SELECT count(*) FROM items").fetchall()[0][0]
    con.register("new_items", frame)
    try:
        con.execute(
            "INSERT INTO items SELECT item_id, text, attributes::JSON, first_seen FROM new_items "
            "WHERE item_id NOT IN (SELECT item_id FROM items)"
        )
    finally:
        con.unregister("new_items")
    return con.execute("SELECT count(*) FROM items").fetchall()[0][0] - before


def load_items(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    ensure_schema(con)
    return con.execute(
        "SELECT item_id, text, attributes::VARCHAR AS attributes, first_seen FROM items ORDER BY item_id"
    ).df()
