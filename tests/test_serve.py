"""Serving from the registry: recommendations, rollback, basis refusal, the CLI and `mlflow models serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from test_registry import free_port, stop, wait_http  # tests/ is on sys.path (rootdir conftest)
from typer.testing import CliRunner

from lte.basis import BasisMismatchError, HashingEncoder, sync_basis
from lte.config import GateSettings
from lte.storage import LocalStore
from training.gate import evaluate_gate
from training.model import SASRec, SASRecConfig
from training.registry import Registry, version_tags
from training.serve import (
    Ranker,
    Recommender,
    ServingBasisError,
    UnknownUserError,
    list_users,
    recommend,
)

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def publish_lte(settings, basis) -> None:
    """LTEs of every user at the last event time on `basis`, made live."""
    from lte.db import connect
    from lte.embeddings import compute_lte
    from lte.feature_store import FeatureStore

    con = connect(settings.duckdb_path)
    try:
        as_of = con.execute("SELECT max(ts) FROM events").fetchall()[0][0]
        FeatureStore(con).publish_live(compute_lte(con, basis, as_of, settings.lte))
    finally:
        con.close()


@pytest.fixture(scope="module")
def migrated_mlflow_db(tmp_path_factory) -> Path:
    """An empty MLflow sqlite store, created once: MLflow's migrations take seconds per new file."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(settings):
    return LocalStore(settings.artifacts_dir)


@pytest.fixture
def home(settings, tiny_data, store, migrated_mlflow_db):
    """Tiny synthetic events and items, a frozen hashing basis, live LTEs on it, an empty registry."""
    import shutil

    from lte import catalog, events
    from lte.basis import get_encoder
    from lte.db import connect

    shutil.copyfile(migrated_mlflow_db, settings.home / "mlflow.db")

    con = connect(settings.duckdb_path)
    try:
        events.ingest_frame(con, tiny_data.events, source="synthetic:tiny")
        catalog.upsert_items(con, tiny_data.items)
        basis, _ = sync_basis(catalog.load_items(con), get_encoder(settings.basis), store)
    finally:
        con.close()
    publish_lte(settings, basis)
    return basis


def register(registry, settings, basis, seed: int, champion_version: str | None) -> str:
    config = SASRecConfig(n_items=basis.n_items, lte_dim=basis.dim, d_model=16, n_layers=1, n_heads=1,
                          max_len=settings.model.max_len, dropout=0.1, integration="prefix")
    torch.manual_seed(seed)
    model = SASRec(config).eval()
    ndcg = np.random.default_rng(seed).beta(2, 8, 200)
    verdict = evaluate_gate(ndcg * 1.3, None if champion_version is None else ndcg, ndcg * 0.5,
                            GateSettings(n_bootstrap=50), champion_version=champion_version)
    tags = version_tags(settings, data_snapshot="synthetic:tiny")
    return registry.register(model, config, basis.manifest, tags, {"ndcg@100": float(ndcg.mean())}, verdict=verdict)


def cli(*args: str):
    import lte.cli.models  # noqa: F401  (registers the commands on the app)
    from lte.cli.app import app

    result = CliRunner().invoke(app, list(args))
    return result


def recommendations_of(settings, users: list[int]) -> list[tuple[list[int], list[float]]]:
    from lte.db import connect

    con = connect(settings.duckdb_path, read_only=True)
    try:
        recs = Recommender(settings).recommend(con, users, k=10)
    finally:
        con.close()
    return [([i.item_id for i in r.items], [i.score for i in r.items]) for r in recs]


def test_rollback_restores_bit_identical_recommendations(settings, home):
    registry = Registry.from_settings(settings)
    v1 = register(registry, settings, home, seed=1, champion_version=None)
    result = cli("promote", v1, "--json")
    assert result.exit_code == 0, result.output
    users = [row["user_id"] for row in list_users(settings, limit=12)]
    before = recommendations_of(settings, users)

    v2 = register(registry, settings, home, seed=2, champion_version=v1)
    assert cli("promote", v2).exit_code == 0
    during = recommendations_of(settings, users)
    assert during != before  # another model really is serving

    result = cli("rollback", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["version"] == v1
    after = recommendations_of(settings, users)
    assert after == before  # same item ids and bit-identical float scores

    # The CLI serves the same thing, with titles, and lists versions and users for scripts.
    shown = json.loads(cli("recommend", str(users[0]), "--k", "10", "--json").output)
    assert [i["item_id"] for i in shown["items"]] == before[0][0]
    assert shown["model_version"] == v1 and shown["model_basis_hash"] == home.hash
    assert shown["lte_basis_hash"] == home.hash and all(i["title"] for i in shown["items"])
    versions = json.loads(cli("models", "--json").output)["versions"]
    assert {v["version"]: v["aliases"] for v in versions} == {v2: ["challenger"], v1: ["champion"]}
    listed = json.loads(cli("users", "--limit", "3", "--json").output)
    assert len(listed) == 3 and set(listed[0]) == {"user_id", "events", "lte_events"}
    assert listed[0]["events"] >= listed[1]["events"] and listed[0]["lte_events"] is not None


def test_recommendations_exclude_padding_and_respect_k(settings, home):
    registry = Registry.from_settings(settings)
    registry.promote(register(registry, settings, home, seed=3, champion_version=None))
    user = list_users(settings, limit=1)[0]["user_id"]
    result = recommend(settings, user, k=25)
    ids = [i.item_id for i in result.items]
    assert len(ids) == 25 == len(set(ids))
    assert set(ids) <= set(home.item_ids.tolist())  # real items only: index 0 never comes out
    assert [i.score for i in result.items] == sorted((i.score for i in result.items), reverse=True)
    assert 0 < result.history_length <= settings.model.max_len
    with pytest.raises(UnknownUserError, match="lte users"):
        recommend(settings, 987654321, k=5)


def test_incompatible_basis_is_refused_and_an_extension_is_served(settings, home, store, tiny_data):
    from lte import catalog
    from lte.basis import build_basis, publish_basis
    from lte.db import connect

    registry = Registry.from_settings(settings)
    version = register(registry, settings, home, seed=4, champion_version=None)
    registry.promote(version)
    user = list_users(settings, limit=1)[0]["user_id"]

    # A basis of another family (another encoder): the live LTEs are in a different space.
    other = publish_basis(store, build_basis(tiny_data.items["item_id"], tiny_data.items["text"],
                                             HashingEncoder(dim=home.dim, ngram_range=(2, 3))))
    publish_lte(settings, other)
    with pytest.raises(ServingBasisError) as refused:
        recommend(settings, user)
    message = str(refused.value)
    assert isinstance(refused.value, BasisMismatchError)
    assert home.hash in message and other.hash in message and "Retrain" in message
    assert "No registered version fits" in message
    result = cli("recommend", str(user))
    assert result.exit_code == 1 and other.hash in result.output

    # New catalog items extend the model's basis: still the same space, so it is served.
    new_items = tiny_data.items.head(3).assign(item_id=lambda f: f["item_id"] + 100_000,
                                               text=lambda f: f["text"] + " limited edition")
    con = connect(settings.duckdb_path)
    try:
        catalog.upsert_items(con, new_items)
        child, action = sync_basis(catalog.load_items(con), HashingEncoder(dim=home.dim), store)
    finally:
        con.close()
    assert action == "extended" and child.parent_hash == home.hash
    publish_lte(settings, child)
    served = recommend(settings, user)
    assert served.lte_basis_hash == child.hash and served.model_basis_hash == home.hash


def test_pyfunc_answers_mlflow_models_serve(settings, home, tmp_path):
    registry = Registry.from_settings(settings)
    version = register(registry, settings, home, seed=5, champion_version=None)
    bundle = registry.load_bundle(version)
    history = home.item_ids[:5].tolist()
    lte = np.linspace(-0.1, 0.1, home.dim).astype(np.float32)
    expected, _ = Ranker(bundle.model, bundle.item_ids).rank([np.asarray(history)], lte[None], np.array([True]), 5)

    port = free_port()
    # The scoring server execs `uvicorn` by name: the venv's bin must be on PATH.
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
           "PATH": f"{Path(MLFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(tmp_path / "models-serve.log", "w")
    proc = subprocess.Popen(
        [MLFLOW, "models", "serve", "-m", f"models:/{registry.model_name}/{version}", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc)
        body = {"dataframe_records": [{"item_ids": history, "lte": lte.tolist(), "lte_events": 7}],
                "params": {"k": 5}}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    finally:
        stop(proc)
        log.close()
    predictions = answer["predictions"]
    assert predictions[0]["item_ids"] == expected[0].tolist()
