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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server():
    """A moto S3 server on 127.0.0.1 for the session; yields its endpoint URL. Dummy credentials."""
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=0.5)
            break
        except OSError:
            time.sleep(0.1)
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(moto_server):
    """A fresh bucket on the moto server; yields (endpoint_url, bucket name)."""
    import uuid

    import boto3

    name = f"lte-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=name)
    return moto_server, name
