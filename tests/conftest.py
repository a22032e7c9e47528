"""Shared fixtures: a temporary LTE home with tiny synthetic data and the fast hashing encoder."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Settings for a fresh home: tiny synthetic data, hashing encoder, a quick model."""
    from lte.config import load_settings

    monkeypatch.setenv("LTE_HOME", str(tmp_path / "home"))
    return load_settings(
        home=tmp_path / "home",
        data={"synthetic_size": "tiny"},
        basis={"encoder": "hashing", "hashing_dim": 64},
        model={"d_model": 32, "n_layers": 1, "n_heads": 1, "max_len": 20},
        train={"epochs": 2, "batch_size": 64},
        gate={"n_bootstrap": 200},
    )


@pytest.fixture(scope="session")
def tiny_data():
    from lte.datasets.synthetic import generate

    return generate("tiny", seed=0)


@pytest.fixture
def con(settings):
    from lte.db import connect

    connection = connect(settings.duckdb_path)
    yield connection
    connection.close()


@pytest.fixture
def loaded_con(con, tiny_data):
    """A store holding the tiny synthetic events and items."""
    from lte import catalog, events

    events.ingest_frame(con, tiny_data.events, source="synthetic:tiny")
    catalog.upsert_items(con, tiny_data.items)
    return con
