"""The Dagster UI over a fresh LTE home: the whole chain on the asset graph, and a `full_pipeline`
run launched from the UI's Launchpad that succeeds and leaves every asset materialized."""

from __future__ import annotations

ASSET_RUNS = """
query Assets { assetNodes { assetKey { path } assetMaterializations(limit: 1) { runId } } }
"""
GROUPS = ("ingestion", "basis", "lte", "training", "registry", "monitoring")


def test_asset_graph_shows_every_asset_of_the_chain(servers, asset_graph, chain, page, shots):
    defined = ["/".join(n["assetKey"]["path"]) for n in servers.graphql(ASSET_RUNS)["assetNodes"]]
    asset_graph(page)
    missing = [name for name in (*chain, *defined) if not page.get_by_text(name, exact=True).first.is_visible()]
    assert not missing, f"assets not drawn on the asset graph: {missing}"
    absent = [group for group in GROUPS if page.get_by_text(group, exact=True).count() == 0]
    assert not absent, f"asset groups not shown: {absent}"
    page.screenshot(path=str(shots / "dagster_asset_graph_before_run.png"))


def test_pipeline_launched_from_the_ui_succeeds(servers, pipeline_run, asset_graph, chain, page, shots):
    assert pipeline_run.status == "SUCCESS", (
        f"run {pipeline_run.run_id} launched from the UI ended {pipeline_run.status}: "
        + "; ".join(pipeline_run.failures)
    )
    nodes = {"/".join(n["assetKey"]["path"]): n for n in servers.graphql(ASSET_RUNS)["assetNodes"]}
    assert set(chain) <= set(nodes), f"assets missing from the definitions: {set(chain) - set(nodes)}"
    not_by_this_run = [name for name in chain
                       if [m["runId"] for m in nodes[name]["assetMaterializations"]] != [pipeline_run.run_id]]
    assert not not_by_this_run, f"not materialized by run {pipeline_run.run_id}: {not_by_this_run}"

    page.goto(f"{servers.dagster}/runs/{pipeline_run.run_id}")
    page.get_by_text("Success", exact=True).first.wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(shots / "dagster_run.png"))

    asset_graph(page)
    page.screenshot(path=str(shots / "dagster_asset_graph.png"))
