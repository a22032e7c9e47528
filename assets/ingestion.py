"""Ingestion assets: the built-in dataset's events and item catalog, loaded into DuckDB."""


import dagster as dg

from lte import catalog
from lte import events as event_store
from lte.datasets import load_catalog, load_dataset
from orchestration.resources import ArtifactStoreResource, DuckDBStoreResource, LteSettingsResource

GROUP = "ingestion"


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    owners=["team:lte"],
    description="Interaction events (user, item, ts, type) in the DuckDB event store; "
    "idempotent: re-materializing adds no duplicate rows.",
)
def events(
    context: dg.AssetExecutionContext, lte_settings: LteSettingsResource, duckdb: DuckDBStoreResource
) -> dg.MaterializeResult:
    dataset = load_dataset(lte_settings.settings())
    with duckdb.connect() as con:  # one transaction per ingested frame (lte/events.py)
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
def items(
    context: dg.AssetExecutionContext, lte_settings: LteSettingsResource, duckdb: DuckDBStoreResource
) -> dg.MaterializeResult:
    with duckdb.connect() as con:
        added = catalog.upsert_items(con, load_catalog(lte_settings.settings()))
        frame = catalog.load_items(con)
    return dg.MaterializeResult(
        metadata={
            "items_total": len(frame),
            "items_added": added,
            "sample": dg.MetadataValue.md(frame.head(5)[["item_id", "text"]].to_markdown(index=False)),
        }
    )


def landing_uri(settings) -> str:
    if settings.data.landing_uri:
        return settings.data.landing_uri
    path = settings.home / "landing"
    path.mkdir(parents=True, exist_ok=True)
    return str(path.resolve())


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "s3"},
    owners=["team:lte"],
    description="Files dropped in the landing location (local dir or S3 prefix), each ingested once "
    "(identity = content hash): validated, deduplicated, bad rows quarantined with a reason.",
)
def landed_files(
    context: dg.AssetExecutionContext, artifact_store: ArtifactStoreResource, duckdb: DuckDBStoreResource
) -> dg.MaterializeResult:
    from lte.ingest_files import ingest_landing_file, pending_files, summarize

    settings = artifact_store.settings()  # S3 landing uses the artifact store's endpoint
    uri = landing_uri(settings)
    with duckdb.connect() as con:  # one transaction per file (lte/ingest_files.py)
        reports = [ingest_landing_file(con, f) for f in pending_files(uri, con, settings.storage.s3_endpoint_url)]
    totals = summarize(reports)
    rows = "\n".join(
        f"| {r.file} | {r.rows_in} | {r.accepted} | {r.duplicates} | {r.quarantined} | {r.status} | {r.reason} |"
        for r in reports
    )
    table = "| file | rows in | accepted | duplicates | quarantined | status | reason |\n|---|---|---|---|---|---|---|\n" + rows
    return dg.MaterializeResult(
        metadata={**totals, "landing": uri, "files_table": dg.MetadataValue.md(table)}
    )


@dg.asset_check(asset=landed_files, description="The quarantine rate of the last landing ingestion is under data.max_quarantine_rate.")
def quarantine_rate_ok(context: dg.AssetCheckExecutionContext, lte_settings: LteSettingsResource) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(landed_files.key)
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    rate = float(metadata["quarantine_rate"].value) if "quarantine_rate" in metadata else 0.0
    limit = lte_settings.settings().data.max_quarantine_rate
    return dg.AssetCheckResult(passed=rate <= limit, metadata={"quarantine_rate": rate, "max_quarantine_rate": limit})
