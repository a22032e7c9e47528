"""Ingestion assets: the built-in dataset's events and item catalog, loaded into DuckDB."""

from __future__ import annotations

import dagster as dg

from lte import catalog
from lte import events as event_store
from lte.datasets import load_dataset
from orchestration.resources import LteResource

GROUP = "ingestion"


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    owners=["team:lte"],
    description="Interaction events (user, item, ts, type) in the DuckDB event store; "
    "idempotent: re-materializing adds no duplicate rows.",
)
def events(context: dg.AssetExecutionContext, lte: LteResource) -> dg.MaterializeResult:
    settings = lte.settings()
    dataset = load_dataset(settings)
    with lte.connect() as con:
        report = event_store.ingest_frame(con, dataset.events, source=dataset.name)
        total = event_store.event_count(con)
        lo, hi = event_store.time_range(con)
        users = con.execute("SELECT count(DISTINCT user_id) FROM events").fetchall()[0][0]
    context.log.info(f"{report.accepted} new events from {dataset.name}; {total} in store")
    return dg.MaterializeResult(
        metadata={
            "source": dataset.name,
            "rows_in": report.rows_in,
            "accepted": report.accepted,
            "duplicates": report.duplicates,
            "quarantined": report.quarantined,
            "events_total": total,
            "users": users,
            "first_ts": str(lo),
            "last_ts": str(hi),
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    owners=["team:lte"],
    description="Item catalog: id, text, attributes. Text comes from content only, never behaviour.",
)
def items(context: dg.AssetExecutionContext, lte: LteResource) -> dg.MaterializeResult:
    settings = lte.settings()
    dataset = load_dataset(settings)
    with lte.connect() as con:
        added = catalog.upsert_items(con, dataset.items)
        frame = catalog.load_items(con)
    return dg.MaterializeResult(
        metadata={
            "items_total": len(frame),
            "items_added": added,
            "sample": dg.MetadataValue.md(frame.head(5)[["item_id", "text"]].to_markdown(index=False)),
        }
    )
