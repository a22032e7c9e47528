"""The whole chain, as `make demo` runs it, on tiny data in a temporary LTE_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_env import QUICK
from typer.testing import CliRunner

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("demo") / "home"
    saved = {k: os.environ.get(k) for k in [*QUICK, "LTE_HOME", "DAGSTER_HOME"]}
    os.environ.update(QUICK, LTE_HOME=str(home))
    from lte.config import load_settings
    from orchestration.run import run_full_pipeline

    ok, figures = run_full_pipeline(load_settings())
    yield home, ok, figures
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_pipeline_succeeds_and_reports_each_step(demo_home):
    _, ok, figures = demo_home
    assert ok
    for asset in ("events", "items", "content_basis", "lte_snapshots", "lte_live", "baseline_model",
                  "trained_model", "offline_evaluation", "registered_model", "champion_model", "lte_drift_report"):
        assert asset in figures, f"{asset} was not materialized"
    assert figures["events"]["events_total"] > 1000
    assert figures["lte_live"]["users"] > 0
    assert "NDCG@10" in figures["offline_evaluation"]["ndcg_table"]


def test_registered_version_carries_the_basis_hash_and_is_champion(demo_home):
    from lte.basis import current_basis
    from lte.config import load_settings
    from lte.storage import open_store
    from training.registry import Registry

    settings = load_settings()
    basis = current_basis(open_store(None, settings.artifacts_dir))
    registry = Registry.from_settings(settings)
    champion = registry.get("champion")
    assert champion is not None, "the gate should pass on planted data and promote the first version"
    assert champion.tags["basis_hash"] == basis.hash == basis.manifest.basis_hash
    for tag in ("basis_family", "lte_variant", "integration", "lag_days", "window_days", "data_snapshot", "git_commit"):
        assert champion.tags.get(tag), f"missing DESIGN.md tag {tag}"
    assert champion.gate_passed is True


def test_drift_report_written(demo_home):
    home, _, figures = demo_home
    report = Path(str(figures["lte_drift_report"]["report"]))
    assert report.exists() and report.suffix == ".html" and report.stat().st_size > 10_000
    assert home in report.parents
    verdict = json.loads((home / "drift" / "latest.json").read_text())
    # The reference is what the champion trained on: a snapshot before the validation period.
    assert verdict["reference_as_of"] < verdict["current_as_of"]


def test_every_training_run_is_logged_to_mlflow(demo_home):
    import mlflow

    from lte.config import load_settings
    from training.registry import Registry

    settings = load_settings()
    champion = Registry.from_settings(settings).get("champion")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    run = mlflow.get_run(champion.tags["training_run_id"])
    assert run.data.metrics["test_ndcg_10"] > 0 and "test_ndcg_10_ci_lo" in run.data.metrics
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert len(history) >= 1  # one point per epoch
    runs = mlflow.search_runs(experiment_names=[f"{settings.registry.experiment}-training"])
    assert set(runs["tags.integration"]) == {"prefix", "none"}


def test_status_json_has_the_documented_fields(demo_home):
    from lte.cli import app

    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    state = json.loads(result.output)
    assert state["events"] > 0
    assert set(state["basis"]) >= {"hash", "n_items", "dim", "encoder"}
    assert set(state["lte"]) >= {"as_of", "variant", "users", "users_without_lte"}
    assert state["model"]["name"] == "lte-sasrec"
    assert state["model"]["champion"]["basis_hash"] == state["basis"]["hash"]
    assert "metrics" in state["model"]["champion"] and state["model"]["challenger"] is not None
    assert state["drift"]["report"].endswith(".html") and isinstance(state["drift"]["drifted"], bool)


def test_rematerializing_events_is_idempotent(demo_home):
    from lte.config import load_settings
    from lte.datasets import load_dataset
    from lte.db import connect
    from lte.events import event_count, ingest_frame

    settings = load_settings()
    con = connect(settings.duckdb_path)
    try:
        before = event_count(con)
        report = ingest_frame(con, load_dataset(settings).events, source="again")
        assert report.accepted == 0 and event_count(con) == before
    finally:
        con.close()


def test_dagster_definitions_validate(demo_home):
    env = {**os.environ, "DAGSTER_HOME": str(demo_home[0] / "dagster")}
    exe = Path(sys.executable).with_name("dagster")
    out = subprocess.run([str(exe), "definitions", "validate", "-m", "orchestration.definitions"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_a_refused_challenger_is_a_finished_pipeline_not_a_failure(tmp_path, monkeypatch):
    """The gate doing its job (refusing a model) is not an error of the tool: `lte demo` exits 0,
    the version stays challenger, nothing is promoted."""
    for key, value in {**QUICK, "LTE_HOME": str(tmp_path / "home"), "LTE_GATE__MIN_UPLIFT": "100"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    from lte.config import load_settings
    from orchestration.run import run_full_pipeline
    from training.registry import Registry

    settings = load_settings()
    ok, figures = run_full_pipeline(settings)
    assert ok
    assert "registered_model" in figures and "champion_model" not in figures
    registry = Registry.from_settings(settings)
    assert registry.get("champion") is None and registry.get("challenger") is not None
