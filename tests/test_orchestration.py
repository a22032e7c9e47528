"""Dagster wiring: definitions load, the drift sensor decides from the stored verdict."""

from __future__ import annotations

import json

import dagster as dg

from orchestration.definitions import defs
from orchestration.resources import lte_resources


def test_definitions_resolve_with_every_asset_grouped():
    defs.resolve_all_job_defs()
    graph = defs.resolve_asset_graph()
    groups = {node.key.to_user_string(): node.group_name for node in graph.asset_nodes}
    assert groups["events"] == "ingestion" and groups["content_basis"] == "basis"
    assert groups["lte_live"] == "lte" and groups["trained_model"] == "training"
    assert groups["registered_model"] == "registry" and groups["lte_drift_report"] == "monitoring"
    for node in graph.asset_nodes:
        assert node.description, f"{node.key} has no description"


def test_ndcg_gate_is_blocking():
    specs = {spec.name: spec for checks in defs.asset_checks for spec in checks.check_specs}
    assert specs["ndcg_gate"].blocking
    assert specs["basis_hash_verified"].blocking
    assert {"lte_live_sane", "lte_not_drifted"} <= set(specs)


def _tick(home, cursor=None):
    from orchestration.sensors import retrain_on_drift

    with dg.build_sensor_context(cursor=cursor, resources=lte_resources(home=str(home))) as context:
        return retrain_on_drift(context), context.cursor


def _home(tmp_path, verdict, retrain_on_drift):
    home = tmp_path / "home"
    (home / "drift").mkdir(parents=True)
    (home / "lte.toml").write_text(f"[drift]\nretrain_on_drift = {str(retrain_on_drift).lower()}\n")
    (home / "drift" / "latest.json").write_text(json.dumps(verdict))
    return home


DRIFTED = {"drifted": True, "n_compared_current": 5000, "n_compared_reference": 5000, "run_name": "r1"}


def test_drift_sensor_requests_retrain_once_per_drifted_verdict(tmp_path, monkeypatch):
    home = _home(tmp_path, DRIFTED, retrain_on_drift=True)
    monkeypatch.setenv("LTE_HOME", str(home))
    result, cursor = _tick(home)
    assert isinstance(result, dg.RunRequest) and result.run_key == "drift-r1"
    again, _ = _tick(home, cursor=cursor)
    assert isinstance(again, dg.SkipReason)


def test_drift_sensor_skips_when_disabled_or_calm(tmp_path, monkeypatch):
    off = _home(tmp_path / "off", DRIFTED, retrain_on_drift=False)
    monkeypatch.setenv("LTE_HOME", str(off))
    assert isinstance(_tick(off)[0], dg.SkipReason)
    calm = _home(tmp_path / "calm", {**DRIFTED, "drifted": False}, retrain_on_drift=True)
    monkeypatch.setenv("LTE_HOME", str(calm))
    assert isinstance(_tick(calm)[0], dg.SkipReason)


def test_drift_sensor_waits_for_a_verdict(tmp_path, monkeypatch):
    monkeypatch.setenv("LTE_HOME", str(tmp_path / "empty"))
    assert isinstance(_tick(tmp_path / "empty")[0], dg.SkipReason)


def test_landing_sensor_and_ingest_job(tmp_path, monkeypatch):
    """A file dropped in the landing dir triggers one run; after ingestion the sensor goes quiet."""
    from orchestration.sensors import landing_files

    home = tmp_path / "home"
    monkeypatch.setenv("LTE_HOME", str(home))
    landing = home / "landing"
    landing.mkdir(parents=True)
    (landing / "a.csv").write_text("user_id,item_id,timestamp\n1,10,1700000000\n2,11,1700000100\nx,12,1700000200\n")
    resources = lte_resources(home=str(home))
    with dg.build_sensor_context(resources=resources) as context:
        first = landing_files(context)
    assert isinstance(first, dg.RunRequest)

    result = defs.resolve_job_def("ingest").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), resources=resources, raise_on_error=False
    )
    (materialization,) = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    assert materialization.metadata["accepted"].value == 2
    assert materialization.metadata["quarantined"].value == 1
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"quarantine_rate_ok": False}  # 1 of 3 rows quarantined > 5 %
    with dg.build_sensor_context(resources=resources) as context:
        again = landing_files(context)
    assert isinstance(again, dg.SkipReason)


def test_ablation_job_writes_the_table_and_logs_it(tmp_path, monkeypatch):
    import mlflow

    home = tmp_path / "home"
    for key, value in {"LTE_HOME": str(home), "LTE_BASIS__ENCODER": "hashing", "LTE_BASIS__HASHING_DIM": "32",
                       "LTE_MODEL__D_MODEL": "16", "LTE_MODEL__N_LAYERS": "1"}.items():
        monkeypatch.setenv(key, value)
    run_config = {"ops": {"ablation_table": {"config": {
        "dataset": "synthetic", "synthetic_size": "tiny", "epochs": 1,
        "variants": ["uniform"], "integrations": ["prefix"]}}}}
    result = defs.resolve_job_def("ablation").execute_in_process(
        run_config=run_config, resources=lte_resources(home=str(home)))
    assert result.success
    table = open(result.output_for_node("ablation_table")).read()
    assert "uniform | prefix" in table and "none | none" in table
    from lte.config import load_settings

    mlflow.set_tracking_uri(load_settings().mlflow_tracking_uri)
    runs = mlflow.search_runs(experiment_names=["lte-ablation"])
    assert len(runs) == 1 and runs["metrics.uniform.prefix.ndcg_at_10"].iloc[0] >= 0
