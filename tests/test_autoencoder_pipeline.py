"""The autoencoder variant through the pipeline: trained point-in-time, versioned in MLflow,
applied by LTE generation, in basis space."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest

from orchestration.resources import lte_resources

pytestmark = pytest.mark.slow


def test_autoencoder_variant_end_to_end(tmp_path, monkeypatch):
    from assets import basis, ingestion, lte

    home = tmp_path / "home"
    for key, value in {
        "LTE_HOME": str(home), "LTE_DATA__SYNTHETIC_SIZE": "tiny", "LTE_BASIS__ENCODER": "hashing",
        "LTE_BASIS__HASHING_DIM": "32", "LTE_LTE__VARIANT": "autoencoder",
    }.items():
        monkeypatch.setenv(key, value)
    result = dg.materialize(
        [ingestion.events, ingestion.items, basis.content_basis, lte.lte_autoencoder, lte.lte_snapshots, lte.lte_live],
        resources=lte_resources(home=str(home)),
    )
    assert result.success
    trained = result.asset_materializations_for_node("lte_autoencoder")[0].metadata
    assert trained["trained"].value is True
    assert trained["mlflow_run_id"].value

    from lte.basis import current_basis
    from lte.config import load_settings
    from lte.db import connect
    from lte.feature_store import FeatureStore
    from lte.storage import open_store

    settings = load_settings()
    con = connect(settings.duckdb_path)
    try:
        live = FeatureStore(con).live()
    finally:
        con.close()
    assert live.variant == "autoencoder"
    basis_now = current_basis(open_store(None, settings.artifacts_dir))
    assert live.vectors.shape[1] == basis_now.dim  # stays in basis space
    filled = live.n_events > 0
    assert filled.any() and np.isfinite(live.vectors).all()
    assert np.abs(live.vectors[~filled]).sum() == 0

    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    run = mlflow.get_run(trained["mlflow_run_id"].value)
    assert run.data.tags["basis_hash"] == basis_now.hash
