"""The per-service resources (run config switches embedded <-> real) and the retry layers."""

from __future__ import annotations

import http.server
import threading

import dagster as dg
import pytest

from orchestration.definitions import defs
from orchestration.resources import (
    MLFLOW_HTTP_DEFAULTS,
    ArtifactStoreResource,
    DuckDBStoreResource,
    MlflowResource,
    definitions_resources,
    lte_resources,
)
from orchestration.retries import SERVICE_RETRY, is_service_outage, retry_transient_only

# --------------------------------------------------------------------------- resources


@pytest.fixture(autouse=True)
def _restore_mlflow_http_environment(monkeypatch):
    """MlflowResource sets MLflow's HTTP variables for the whole process; undo that after each test."""
    for name, default in MLFLOW_HTTP_DEFAULTS.items():
        monkeypatch.setenv(name, str(default))


@dg.asset
def service_probe(duckdb: DuckDBStoreResource, artifact_store: ArtifactStoreResource, mlflow: MlflowResource) -> dict:
    """What each resource resolved to inside a run."""
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    )

    with duckdb.connect() as con:
        database = con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal").fetchall()[0][0]
    settings = mlflow.settings()
    return {
        "duckdb": database,
        "store": artifact_store.store().uri("k"),
        "s3": artifact_store.is_s3(),
        "tracking_uri": settings.mlflow_tracking_uri,
        "storage_seen_by_mlflow": settings.storage.uri,
        "http_max_retries": MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(),
        "http_backoff_factor": MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(),
    }


def _probe(run_config: dict) -> dict:
    job = dg.Definitions(assets=[service_probe], resources=definitions_resources(),
                         jobs=[dg.define_asset_job("probe", selection=[service_probe])]).resolve_job_def("probe")
    return job.execute_in_process(run_config=run_config).output_for_node("service_probe")


def test_run_config_on_lte_settings_moves_every_service_to_that_home(tmp_path, monkeypatch):
    monkeypatch.delenv("LTE_STORAGE__URI", raising=False)
    monkeypatch.delenv("LTE_REGISTRY__TRACKING_URI", raising=False)
    home = tmp_path / "home"
    seen = _probe({"resources": {"lte_settings": {"config": {"home": str(home)}}}})
    assert seen["duckdb"] in {str(home / "lte.duckdb"), str(home.resolve() / "lte.duckdb")}
    assert seen["store"] == (home / "artifacts" / "k").resolve().as_uri()
    assert seen["s3"] is False
    assert seen["tracking_uri"].startswith("sqlite:///") and str(home) in seen["tracking_uri"]


def test_run_config_switches_artifacts_to_s3_and_mlflow_to_a_server(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")  # an exported value yields to run config
    seen = _probe({"resources": {
        "lte_settings": {"config": {"home": str(tmp_path / "home")}},
        "artifact_store": {"config": {"uri": "s3://lte-bucket/prefix", "endpoint_url": "http://127.0.0.1:9"}},
        "mlflow": {"config": {"tracking_uri": "http://127.0.0.1:5999", "http_request_max_retries": 3}},
    }})
    assert seen["store"] == "s3://lte-bucket/prefix/k" and seen["s3"] is True
    assert seen["storage_seen_by_mlflow"] == "s3://lte-bucket/prefix"  # the registry reads the same store
    assert seen["tracking_uri"] == "http://127.0.0.1:5999"
    assert (seen["http_max_retries"], seen["http_backoff_factor"]) == (3, 2)


def test_definitions_use_the_four_documented_resource_keys():
    assert set(defs.resources) >= {"lte_settings", "duckdb", "artifact_store", "mlflow"}
    graph = defs.resolve_asset_graph()
    required = {node.key.to_user_string(): graph.assets_def_for_key(node.key).required_resource_keys - {"io_manager"}
                for node in graph.asset_nodes}
    assert required["events"] == {"lte_settings", "duckdb"}
    assert required["content_basis"] == {"lte_settings", "duckdb", "artifact_store"}
    assert required["registered_model"] == {"duckdb", "mlflow"}


class _Unavailable(http.server.BaseHTTPRequestHandler):
    requests = 0

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).requests += 1
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_mlflow_resource_sets_how_often_mlflow_retries_a_failing_server(tmp_path):
    """MLflow's own client, pointed at a server that answers 503, tries 1 + max_retries times."""
    from mlflow import MlflowClient

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        resources = lte_resources(home=str(tmp_path / "home"), tracking_uri=uri)
        resource = MlflowResource(artifact_store=resources["artifact_store"], tracking_uri=uri,
                                  http_request_max_retries=2, http_request_backoff_factor=0)
        with dg.build_resources({"mlflow": resource}) as built:
            assert built.mlflow.settings().mlflow_tracking_uri == uri
            with pytest.raises(Exception):  # noqa: B017 (MLflow wraps the final HTTP error in several ways)
                MlflowClient(tracking_uri=uri).get_experiment_by_name("lte")
        assert _Unavailable.requests == 3
    finally:
        server.shutdown()


# --------------------------------------------------------------------------- retries

SERVICE_ASSETS = {
    "content_basis", "lte_autoencoder", "lte_snapshots", "lte_live", "lte_shard", "lte_live_sharded",
    "trained_model", "baseline_model", "registered_model", "champion_model", "lte_drift_report",
}


def test_every_asset_that_calls_s3_or_mlflow_retries_with_exponential_backoff():
    graph = defs.resolve_asset_graph()
    policies = {node.key.to_user_string(): graph.assets_def_for_key(node.key).op.retry_policy
                for node in graph.asset_nodes}
    assert {name for name, policy in policies.items() if policy is not None} == SERVICE_ASSETS
    assert SERVICE_RETRY.backoff == dg.Backoff.EXPONENTIAL and SERVICE_RETRY.jitter is not None
    assert SERVICE_RETRY.max_retries >= 1 and SERVICE_RETRY.delay > 0
    for name in SERVICE_ASSETS:
        assert policies[name] == SERVICE_RETRY
        uses = graph.assets_def_for_key(dg.AssetKey(name)).required_resource_keys
        assert uses & {"artifact_store", "mlflow"}, f"{name} retries but calls neither S3 nor MLflow"


def test_service_outages_are_told_apart_from_errors_a_retry_cannot_fix():
    from botocore.exceptions import ClientError, EndpointConnectionError
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    def client_error(code):
        return ClientError({"Error": {"Code": code, "Message": "m"}}, "PutObject")

    assert is_service_outage(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert is_service_outage(client_error("SlowDown")) and is_service_outage(client_error("503"))
    assert is_service_outage(MlflowException("API request failed: Max retries exceeded with url"))
    assert is_service_outage(MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE))
    try:
        try:
            raise ConnectionResetError("peer reset")
        except ConnectionResetError as cause:
            raise RuntimeError("could not log the model") from cause
    except RuntimeError as wrapped:
        assert is_service_outage(wrapped)
    assert not is_service_outage(client_error("NoSuchKey"))
    assert not is_service_outage(MlflowException("no model", error_code=RESOURCE_DOES_NOT_EXIST))
    assert not is_service_outage(LookupError("no champion model"))
    assert not is_service_outage(FileNotFoundError("basis/CURRENT.json"))


def test_an_outage_is_retried_and_a_bug_is_not():
    attempts = {"flaky": 0, "broken": 0}
    quick = dg.RetryPolicy(max_retries=2, delay=0.01, backoff=dg.Backoff.EXPONENTIAL)

    @dg.asset(retry_policy=quick)
    @retry_transient_only
    def flaky() -> int:
        attempts["flaky"] += 1
        if attempts["flaky"] == 1:
            raise ConnectionResetError("connection reset by the S3 endpoint")
        return attempts["flaky"]

    @dg.asset(retry_policy=quick)
    @retry_transient_only
    def broken() -> None:
        attempts["broken"] += 1
        raise LookupError("no champion model: train and promote one first")

    assert dg.materialize([flaky]).output_for_node("flaky") == 2
    failed = dg.materialize([broken], raise_on_error=False)
    assert not failed.success and attempts["broken"] == 1
    (failure,) = [e for e in failed.all_events if e.is_step_failure]
    assert "no champion model" in str(failure.step_failure_data.error)
