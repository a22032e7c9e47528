"""The related methods run through the same Dagster pipeline, registry and serving path as the LTE
prefix: ENCODE's multi-interest LTE with DARE attention, and SLSRec, chosen by settings alone."""

from __future__ import annotations

import pytest
from pipeline_env import QUICK

pytestmark = pytest.mark.slow

CASES = {
    "encode_dare": {"LTE_LTE__VARIANT": "multi_interest", "LTE_LTE__INTERESTS": "3",
                    "LTE_MODEL__INTEGRATION": "prefix", "LTE_MODEL__DARE": "true", "LTE_MODEL__ATTN_DIM": "16"},
    "slsrec": {"LTE_LTE__VARIANT": "uniform", "LTE_MODEL__INTEGRATION": "slsrec"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_method_runs_through_pipeline_registry_and_serving(case, tmp_path, monkeypatch):
    for key, value in {**QUICK, **CASES[case], "LTE_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    from lte.basis import current_basis
    from lte.config import load_settings
    from lte.db import connect
    from lte.feature_store import FeatureStore
    from lte.storage import open_store
    from orchestration.run import run_full_pipeline
    from training.registry import Registry
    from training.serve import Recommender

    settings = load_settings()
    _, figures = run_full_pipeline(settings)
    for asset in ("lte_snapshots", "lte_live", "trained_model", "offline_evaluation", "registered_model"):
        assert asset in figures, f"{asset} was not materialized"

    # The registered version says what it is and which basis its LTEs must be on.
    registry = Registry.from_settings(settings)
    version = str(figures["registered_model"]["version"])
    bundle = registry.load_bundle(version)
    basis = current_basis(open_store(None, settings.artifacts_dir))
    assert bundle.tags["basis_hash"] == basis.hash
    assert bundle.tags["lte_variant"] == settings.lte.variant
    assert bundle.config.integration == settings.model.integration
    assert bundle.config.dare == settings.model.dare and bundle.config.attn_dim == settings.model.attn_dim

    # What the feature store serves stays in basis space: k basis-dim vectors per user, tagged with the hash.
    con = connect(settings.duckdb_path, read_only=True)
    try:
        live = FeatureStore(con).live()
        expected_tokens = settings.lte.interests if settings.lte.variant == "multi_interest" else 1
        assert live.tokens == bundle.config.lte_tokens == expected_tokens
        assert live.vectors.shape[1] == expected_tokens * basis.dim and live.basis_hash == basis.hash
        user = int(live.user_ids[0])
        recommender = Recommender(settings, alias=version, registry=registry)
        (recommendation,) = recommender.recommend(con, [user], k=5)
    finally:
        con.close()
    assert len(recommendation.items) == 5 and recommendation.model_basis_hash == basis.hash
