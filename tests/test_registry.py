"""MLflow registry: tags, gate-only promotion, forced promotion, rollback, restarts, tracking server + S3."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from lte.basis import HashingEncoder, build_basis, publish_basis
from lte.config import GateSettings
from lte.storage import LocalStore
from training.gate import evaluate_gate
from training.model import SASRec, SASRecConfig
from training.registry import REQUIRED_TAGS, PromotionRefused, Registry, RegistryError, version_tags

N_ITEMS = 40
LTE_DIM = 16
MLFLOW = str(Path(sys.executable).with_name("mlflow"))


@pytest.fixture
def basis(settings):
    ids = np.arange(1000, 1000 + N_ITEMS)
    return publish_basis(LocalStore(settings.artifacts_dir),
                         build_basis(ids, [f"item number {i}" for i in ids], HashingEncoder(dim=LTE_DIM)))


@pytest.fixture(scope="module")
def tracking_db(tmp_path_factory):
    """One sqlite tracking store for the module: creating one runs MLflow's migrations (seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


@pytest.fixture
def registry(request, settings, tracking_db):
    """A registry of its own (one registered model per test) in the module's tracking store."""
    uri, artifacts = tracking_db
    return Registry(uri, f"lte-{request.node.name}", "lte", artifacts, LocalStore(settings.artifacts_dir))


def make_model(seed: int) -> tuple[SASRec, SASRecConfig]:
    config = SASRecConfig(n_items=N_ITEMS, lte_dim=LTE_DIM, d_model=16, n_layers=1, n_heads=1,
                          max_len=8, dropout=0.1, integration="prefix")
    torch.manual_seed(seed)
    return SASRec(config).eval(), config


def verdict(better: bool, champion_version: str | None):
    """A gate verdict from constructed per-user NDCG arrays: a better or a worse challenger."""
    rng = np.random.default_rng(0)
    champion = rng.beta(2, 8, 300)
    challenger = champion * (1.2 if better else 0.5)
    return evaluate_gate(challenger, None if champion_version is None else champion, champion * 0.5,
                         GateSettings(n_bootstrap=100), champion_version=champion_version)


def register(registry, settings, basis, seed: int, gate=None) -> str:
    model, config = make_model(seed)
    tags = version_tags(settings, data_snapshot="events@test", git_commit_value="abc123")
    return registry.register(model, config, basis.manifest, tags, {"ndcg@100": 0.1 + seed / 100}, verdict=gate)


def test_register_records_tags_metrics_manifest_and_signature(settings, basis, registry):
    import mlflow

    version = register(registry, settings, basis, seed=1, gate=verdict(True, None))
    info = registry.get("challenger")
    assert info.version == version and info.aliases == ["challenger"]
    assert set(REQUIRED_TAGS) <= set(info.tags)
    assert info.basis_hash == basis.hash and info.tags["basis_family"] == "hashing-ngrams"
    assert info.tags["integration"] == "prefix" and info.tags["git_commit"] == "abc123"
    assert info.tags["lag_days"] == str(settings.lte.lag_days)
    assert info.metrics["ndcg_100"] == pytest.approx(0.11) and info.gate_passed is True
    assert info.metrics["gate.uplift"] == pytest.approx(1.4)  # 1.2 / 0.5 - 1 against the baseline

    model, config, tags, manifest = registry.load(version)
    assert manifest == basis.manifest and config == make_model(1)[1] and tags["basis_hash"] == basis.hash
    assert registry.artifact_location.startswith("file://")
    expected, _ = make_model(1)
    for name, tensor in expected.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    assert not model.training

    signature = mlflow.models.get_model_info(f"models:/{registry.model_name}/{version}").signature
    assert [c.name for c in signature.inputs.inputs] == ["item_ids", "lte", "lte_events"]
    assert signature.params.params[0].name == "k"


def test_a_registration_that_fails_midway_leaves_no_version(settings, basis, registry, monkeypatch):
    calls = {"n": 0}
    real = registry.client.set_model_version_tag

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("tracking server went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(registry.client, "set_model_version_tag", flaky)
    with pytest.raises(ConnectionError):
        register(registry, settings, basis, seed=2, gate=verdict(True, None))
    assert registry.client.search_model_versions(f"name='{registry.model_name}'") == []
    monkeypatch.setattr(registry.client, "set_model_version_tag", real)
    version = register(registry, settings, basis, seed=2, gate=verdict(True, None))  # the retry succeeds
    assert registry.get("challenger").version == version


def test_missing_design_tags_are_refused(settings, basis, registry):
    model, config = make_model(0)
    with pytest.raises(RegistryError, match="data_snapshot"):
        registry.register(model, config, basis.manifest, {"lte_variant": "uniform", "lag_days": 30,
                                                          "window_days": 365}, {})
    with pytest.raises(RegistryError, match="contradicts"):
        registry.register(model, config, basis.manifest,
                          {**version_tags(settings, "s"), "basis_hash": "0" * 64}, {})


def test_promotion_needs_a_passed_gate_or_a_recorded_force(settings, basis, registry):
    v1 = register(registry, settings, basis, seed=1, gate=verdict(True, None))
    v2 = register(registry, settings, basis, seed=2)  # no verdict at all
    with pytest.raises(PromotionRefused, match="no gate verdict"):
        registry.promote(v2)
    assert registry.promote(v1).previous is None
    assert registry.alias_version("champion") == v1

    v3 = register(registry, settings, basis, seed=3, gate=verdict(False, v1))  # deliberately worse
    with pytest.raises(PromotionRefused, match="failed the NDCG gate") as refused:
        registry.promote(v3)
    assert "--force" in str(refused.value) and "FAIL" in str(refused.value)
    with pytest.raises(PromotionRefused, match="reason"):
        registry.promote(v3, force=True)
    assert registry.alias_version("champion") == v1

    forced = registry.promote(v3, force=True, who="alice", reason="hotfix for incident 42")
    assert forced.forced and forced.previous == v1
    tags = registry.get(v3).tags
    assert tags["promotion.forced"] == "true" and tags["promotion.by"] == "alice"
    assert tags["promotion.reason"] == "hotfix for incident 42"
    assert registry.alias_version("champion") == v3


def test_a_verdict_against_an_older_champion_is_stale(settings, basis, registry):
    v1 = register(registry, settings, basis, seed=1, gate=verdict(True, None))
    v2 = register(registry, settings, basis, seed=2, gate=verdict(True, None))  # also vs baseline
    registry.promote(v1)
    with pytest.raises(PromotionRefused, match="champion is now 1"):
        registry.promote(v2)
    registry.record_gate(v2, verdict(True, v1))  # re-run against the current champion
    assert registry.promote(v2).previous == v1
    # A champion on another basis cannot be scored on the challenger's items: the baseline is the
    # bar, and the verdict still names the champion of the moment, so it is not stale.
    v3 = register(registry, settings, basis, seed=3, gate=verdict(True, None))
    registry.record_gate(v3, evaluate_gate(np.full(50, 0.3), None, np.full(50, 0.1),
                                           GateSettings(n_bootstrap=20), champion_version=v2))
    assert registry.promote(v3).previous == v2


def test_rollback_moves_champion_back_one_step_at_a_time(settings, basis, registry):
    v1 = register(registry, settings, basis, seed=1, gate=verdict(True, None))
    registry.promote(v1)
    v2 = register(registry, settings, basis, seed=2, gate=verdict(True, v1))
    registry.promote(v2)
    assert registry.history() == [v1]
    back = registry.rollback(who="bob")
    assert (back.version, back.previous) == (v1, v2)
    assert registry.alias_version("champion") == v1
    assert registry.get(v2).tags["rolled_back.by"] == "bob"
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback()
    assert registry.alias_version("champion") == v1
    listed = {v.version: v.aliases for v in registry.list_versions()}
    assert listed == {v2: ["challenger"], v1: ["champion"]}


def test_registry_state_survives_a_process_restart(settings, basis, registry):
    v1 = register(registry, settings, basis, seed=1, gate=verdict(True, None))
    registry.promote(v1)
    v2 = register(registry, settings, basis, seed=2, gate=verdict(True, v1))
    registry.promote(v2)
    model, *_ = registry.load("champion")
    checksum = float(sum(t.double().sum() for t in model.state_dict().values()))

    script = (
        "import json, sys; from training.registry import Registry\n"
        "r = Registry(sys.argv[1], sys.argv[2])\n"
        "m, c, t, man = r.load('champion')\n"
        "print(json.dumps({'champion': r.alias_version('champion'), 'challenger': r.alias_version('challenger'),"
        " 'history': r.history(), 'basis': man.basis_hash,"
        " 'checksum': float(sum(x.double().sum() for x in m.state_dict().values()))}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, registry.tracking_uri, registry.model_name],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state == {"champion": v2, "challenger": v2, "history": [v1], "basis": basis.hash, "checksum": checksum}


# ---- tracking server with artifacts on S3 (moto), both on 127.0.0.1 --------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker: one process group
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def moto_s3(monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in creds.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="lte-models")
    yield endpoint, s3
    server.stop()


@pytest.fixture
def tracking_server(tmp_path, moto_s3):
    endpoint, _ = moto_s3
    port = free_port()
    env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": endpoint, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(tmp_path / "mlflow-server.log", "w")
    proc = subprocess.Popen(
        [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", "s3://lte-models/mlflow", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        log.close()


def test_tracking_server_with_s3_artifacts(settings, basis, tracking_server, moto_s3):
    _, s3 = moto_s3
    remote = settings.with_overrides(registry={"tracking_uri": tracking_server})
    registry = Registry.from_settings(remote)
    assert registry.artifact_location is None  # the server decides: proxied to S3
    v1 = register(registry, remote, basis, seed=1, gate=verdict(True, None))
    registry.promote(v1)

    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket="lte-models", Prefix="mlflow/").get("Contents", [])]
    assert any(key.endswith("state_dict.pt") for key in keys), keys
    assert any(key.endswith("basis_manifest.json") for key in keys), keys
    assert not (settings.home / "mlflow.db").exists()  # nothing went to the embedded store

    fresh = Registry.from_settings(remote)  # a new client sees the server's state
    model, config, tags, manifest = fresh.load("champion")
    assert fresh.alias_version("champion") == v1 and manifest.basis_hash == basis.hash
    expected, _ = make_model(1)
    assert all(torch.equal(t, model.state_dict()[n]) for n, t in expected.state_dict().items())


def test_embedded_registry_with_artifacts_straight_on_s3(settings, basis, tracking_db, moto_s3, monkeypatch):
    endpoint, s3 = moto_s3
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", endpoint)  # boto3 inside MLflow's S3 artifact store
    uri, _ = tracking_db
    registry = Registry(uri, "lte-direct-s3", "lte-direct-s3", "s3://lte-models/direct",
                        LocalStore(settings.artifacts_dir))
    version = register(registry, settings, basis, seed=1, gate=verdict(True, None))
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket="lte-models", Prefix="direct/").get("Contents", [])]
    assert any(key.endswith("state_dict.pt") for key in keys), keys
    model, *_ = registry.load(version)
    expected, _ = make_model(1)
    assert all(torch.equal(t, model.state_dict()[n]) for n, t in expected.state_dict().items())
