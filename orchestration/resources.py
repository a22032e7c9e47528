"""Dagster resources: one place that turns run config into the settings, stores and registry.

Switching embedded <-> real services is run config on these resources (or LTE_* env vars):
`home`, `storage_uri` (s3://bucket/prefix), `mlflow_tracking_uri` (http://127.0.0.1:5000).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from lte.config import Settings, load_settings
from lte.db import connect
from lte.storage import ArtifactStore, open_store


class LteResource(dg.ConfigurableResource):
    """The system's settings plus handles on its stores, all under one LTE home."""

    home: str = dg.EnvVar("LTE_HOME").get_value() or ".lte"
    dataset: str | None = None  # synthetic | ml-100k | ml-latest-small (None = settings)
    synthetic_size: str | None = None
    encoder: str | None = None  # minilm | hashing
    storage_uri: str | None = None
    mlflow_tracking_uri: str | None = None

    def settings(self) -> Settings:
        os.environ.setdefault("LTE_HOME", self.home)
        base = load_settings(home=self.home)
        data, basis, storage, registry = {}, {}, {}, {}
        if self.dataset:
            data["dataset"] = self.dataset
        if self.synthetic_size:
            data["synthetic_size"] = self.synthetic_size
        if self.encoder:
            basis["encoder"] = self.encoder
        if self.storage_uri:
            storage["uri"] = self.storage_uri
        if self.mlflow_tracking_uri:
            registry["tracking_uri"] = self.mlflow_tracking_uri
        return base.with_overrides(data=data, basis=basis, storage=storage, registry=registry)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator:
        con = connect(self.settings().duckdb_path, read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    def store(self) -> ArtifactStore:
        s = self.settings()
        return open_store(s.storage.uri, s.artifacts_dir, s.storage.s3_endpoint_url)
