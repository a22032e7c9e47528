"""Dagster resources: one per service, each a thin wrapper over `lte/` code.

| key | resource | run config | what it hands out |
|---|---|---|---|
| `lte_settings` | `LteSettingsResource` | `home`, `dataset`, `synthetic_size`, `encoder` | the typed `Settings` (defaults < lte.toml < LTE_* env < this config) |
| `duckdb` | `DuckDBStoreResource` | none | connections to the event + feature store (`$LTE_HOME/lte.duckdb`) |
| `artifact_store` | `ArtifactStoreResource` | `uri` (directory or s3://bucket/prefix), `endpoint_url` (MinIO/moto) | the `ArtifactStore` (basis, shards, LTE exports) |
| `mlflow` | `MlflowResource` | `tracking_uri`, `artifact_location`, `http_request_*` (MLflow's HTTP retries) | the `Registry` and the settings MLflow-logging code takes |

`duckdb`, `artifact_store` and `mlflow` depend on `lte_settings` (the MLflow registry also reads basis
item ids from the artifact store), so one run config on `lte_settings` moves every service to
another home. Unset fields fall back to the settings, so `LTE_STORAGE__URI` / `LTE_REGISTRY__TRACKING_URI`
keep working. Switching embedded -> real is run config, e.g.

    resources:
      artifact_store: {config: {uri: s3://lte-prod/artifacts}}
      mlflow: {config: {tracking_uri: http://127.0.0.1:5000}}
"""


import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from lte.config import Settings, load_settings
from lte.db import connect
from lte.storage import ArtifactStore, open_store

# MLflow reads these on every HTTP request (mlflow.environment_variables); None in the resource
# config keeps an already exported value, else these defaults: 5 retries with backoff factor 2
# wait about 1 minute in total, then the asset's Dagster RetryPolicy takes over.
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": 5,
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 2,
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": 1.0,
    "MLFLOW_HTTP_REQUEST_TIMEOUT": 120,
}


class LteSettingsResource(dg.ConfigurableResource):
    """The LTE home and the dataset/encoder choice; everything else comes from `$LTE_HOME/lte.toml`
    and LTE_* environment variables (lte/config.py)."""

    home: str = dg.EnvVar("LTE_HOME").get_value() or ".lte"
    dataset: str | None = None  # synthetic | ml-100k | ml-latest-small (None = settings)
    synthetic_size: str | None = None
    encoder: str | None = None  # minilm | hashing

    def settings(self) -> Settings:
        os.environ.setdefault("LTE_HOME", self.home)
        data, basis = {}, {}
        if self.dataset:
            data["dataset"] = self.dataset
        if self.synthetic_size:
            data["synthetic_size"] = self.synthetic_size
        if self.encoder:
            basis["encoder"] = self.encoder
        return load_settings(home=self.home).with_overrides(data=data, basis=basis)


class DuckDBStoreResource(dg.ConfigurableResource):
    """The DuckDB file holding events, items and the LTE feature store (one writer at a time)."""

    lte_settings: dg.ResourceDependency[LteSettingsResource]

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator:
        con = connect(self.lte_settings.settings().duckdb_path, read_only=read_only)
        try:
            yield con
        finally:
            con.close()


class ArtifactStoreResource(dg.ConfigurableResource):
    """Artifact storage: a local directory (default `$LTE_HOME/artifacts`) or an S3 prefix."""

    lte_settings: dg.ResourceDependency[LteSettingsResource]
    uri: str | None = None  # s3://bucket/prefix or a directory; None = storage.uri of the settings
    endpoint_url: str | None = None  # S3-compatible endpoint (MinIO, moto); None = storage.s3_endpoint_url

    def settings(self) -> Settings:
        """The LTE settings with this store's location in `storage`."""
        storage = {key: value for key, value in (("uri", self.uri), ("s3_endpoint_url", self.endpoint_url)) if value}
        return self.lte_settings.settings().with_overrides(storage=storage)

    def store(self) -> ArtifactStore:
        s = self.settings()
        return open_store(s.storage.uri, s.artifacts_dir, s.storage.s3_endpoint_url)

    def is_s3(self) -> bool:
        return (self.settings().storage.uri or "").startswith("s3://")


class MlflowResource(dg.ConfigurableResource):
    """The MLflow tracking server + model registry (default: sqlite under `$LTE_HOME`), with
    MLflow's own HTTP retries set for every request the run makes."""

    artifact_store: dg.ResourceDependency[ArtifactStoreResource]
    tracking_uri: str | None = None  # http://host:5000; None = registry.tracking_uri of the settings
    artifact_location: str | None = None  # e.g. s3://bucket/mlflow for new experiments
    http_request_max_retries: int | None = None
    http_request_backoff_factor: int | None = None
    http_request_backoff_jitter: float | None = None
    http_request_timeout: int | None = None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        os.environ.update(self.http_environment())

    def http_environment(self) -> dict[str, str]:
        """MLflow's HTTP retry variables as this resource sets them."""
        configured = {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": self.http_request_max_retries,
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": self.http_request_backoff_factor,
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": self.http_request_backoff_jitter,
            "MLFLOW_HTTP_REQUEST_TIMEOUT": self.http_request_timeout,
        }
        return {
            name: str(value if value is not None else os.environ.get(name, MLFLOW_HTTP_DEFAULTS[name]))
            for name, value in configured.items()
        }

    def settings(self) -> Settings:
        """The settings that MLflow-logging code (training/registry.py) takes: the artifact store's
        location plus this tracking URI and artifact location."""
        registry = {key: value for key, value in
                    (("tracking_uri", self.tracking_uri), ("artifact_location", self.artifact_location)) if value}
        return self.artifact_store.settings().with_overrides(registry=registry)

    def registry(self):
        from training.registry import Registry

        return Registry.from_settings(self.settings())


def lte_resources(**settings_config) -> dict[str, dg.ConfigurableResource]:
    """Fully built resources for tests and scripts: `lte_resources(home=..., encoder="hashing")`;
    `artifact_uri`/`endpoint_url` and `tracking_uri` configure the store and MLflow."""
    artifact_config = {"uri": settings_config.pop("artifact_uri", None),
                       "endpoint_url": settings_config.pop("endpoint_url", None)}
    tracking_uri = settings_config.pop("tracking_uri", None)
    lte_settings = LteSettingsResource(**settings_config)
    artifact_store = ArtifactStoreResource(lte_settings=lte_settings, **artifact_config)
    return {
        "lte_settings": lte_settings,
        "duckdb": DuckDBStoreResource(lte_settings=lte_settings),
        "artifact_store": artifact_store,
        "mlflow": MlflowResource(artifact_store=artifact_store, tracking_uri=tracking_uri),
    }


def definitions_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources of the Definitions: configured at launch, so run config on `lte_settings`
    reaches the services that depend on it, and run config on `artifact_store` reaches `mlflow`."""
    lte_settings = LteSettingsResource.configure_at_launch()
    artifact_store = ArtifactStoreResource.configure_at_launch(lte_settings=lte_settings)
    return {
        "lte_settings": lte_settings,
        "duckdb": DuckDBStoreResource.configure_at_launch(lte_settings=lte_settings),
        "artifact_store": artifact_store,
        "mlflow": MlflowResource.configure_at_launch(artifact_store=artifact_store),
    }
