"""Drift monitoring: planted shift detected, resample not; empty LTEs handled; files, workspace, decision."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import pytest

from lte.config import DriftSettings

DIM = 32


@dataclass
class Batch:
    """The part of lte.embeddings.LteBatch that drift_report reads."""

    vectors: np.ndarray
    n_events: np.ndarray
    as_of: datetime | None = None


def taste_batch(n: int, seed: int, weights=(0.5, 0.3, 0.2), empty_share: float = 0.0, as_of=None) -> Batch:
    """LTE-like vectors: each user mixes a few of 3 'taste' directions (weights = how common each
    taste is in the population), plus per-user noise. Changing `weights` plants a population shift."""
    rng = np.random.default_rng(seed)
    tastes = np.random.default_rng(12345).normal(size=(3, DIM))  # the same tastes for every batch
    tastes /= np.linalg.norm(tastes, axis=1, keepdims=True)
    main = rng.choice(3, size=n, p=np.asarray(weights) / np.sum(weights))
    vectors = 0.6 * tastes[main] + rng.normal(0, 0.15, size=(n, DIM))
    n_events = rng.integers(1, 60, size=n).astype(np.int32)
    empty = rng.random(n) < empty_share
    vectors[empty], n_events[empty] = 0.0, 0
    return Batch(vectors.astype(np.float32), n_events, as_of)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    from monitoring.drift import drift_report

    out = tmp_path_factory.mktemp("drift")
    settings = DriftSettings()
    reference = taste_batch(800, seed=1, as_of=datetime(2025, 1, 1, tzinfo=UTC))
    resample = taste_batch(800, seed=2, as_of=datetime(2025, 2, 1, tzinfo=UTC))
    shifted = taste_batch(800, seed=3, weights=(0.3, 0.3, 0.4), as_of=datetime(2025, 3, 1, tzinfo=UTC))
    return {
        "out": out,
        "reference": reference,
        "resample": drift_report(reference, resample, out, settings, run_name="resample"),
        "shifted": drift_report(reference, shifted, out, settings, run_name="shifted"),
    }


def test_planted_shift_is_detected(reports):
    result = reports["shifted"]
    assert result.drifted
    assert result.method == "mmd" and result.threshold is None and result.quantile_probability == 0.99
    assert result.score > reports["resample"].score


def test_resample_of_the_same_population_is_not_drift(reports):
    result = reports["resample"]
    assert not result.drifted
    assert result.n_compared_reference == result.n_compared_current == 800


def test_report_files_exist_and_parse(reports):
    result = reports["shifted"]
    html = result.html_path.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<html") or "<html" in html[:2000].lower()
    assert "Drift in embeddings" in html
    document = json.loads(result.json_path.read_text())
    assert document["verdict"] == json.loads(json.dumps(result.to_dict(), default=str))
    metric_types = {m["config"]["type"].rsplit(":", 1)[-1] for m in document["evidently"]["metrics"]}
    assert {"EmbeddingsDrift", "ValueDrift", "MeanValue"} <= metric_types
    assert set(result.summary) == {"norm", "n_events", "cosine_to_reference_mean"}
    assert result.current_as_of.startswith("2025-03-01")


def test_empty_ltes_are_excluded_and_their_share_reported(tmp_path, reports):
    from monitoring.drift import drift_report

    # Same population as the reference, but 30% of users have no LTE: zero vectors must not count
    # as a shift (included, they would be a dense cluster at the origin that MMD flags at once).
    current = taste_batch(1000, seed=4, empty_share=0.3)
    result = drift_report(reports["reference"], current, tmp_path, DriftSettings())
    non_empty = int((current.n_events > 0).sum())
    assert result.n_current == 1000 and result.n_compared_current == non_empty
    assert result.empty_share_current == pytest.approx(1 - non_empty / 1000)
    assert result.empty_share_reference == 0.0
    assert not result.drifted


def test_sampling_is_capped_and_seeded(tmp_path, reports):
    from monitoring.drift import drift_report

    settings = DriftSettings(max_rows=300)
    current = taste_batch(800, seed=2)
    first = drift_report(reports["reference"], current, tmp_path, settings, run_name="a")
    second = drift_report(reports["reference"], current, tmp_path, settings, run_name="b")
    assert first.n_compared_reference == first.n_compared_current == 300
    assert first.score == second.score and first.share_drifted_dims == second.share_drifted_dims


def test_fixed_threshold_and_other_methods(tmp_path, reports):
    from monitoring.drift import drift_report

    shifted = taste_batch(800, seed=3, weights=(0.3, 0.3, 0.4))
    # A fixed threshold far above the score: the same shift is then (by construction) not flagged.
    high = drift_report(reports["reference"], shifted, tmp_path, DriftSettings(threshold=10.0), run_name="fixed")
    assert high.threshold == 10.0 and high.quantile_probability is None and not high.drifted
    model = drift_report(reports["reference"], shifted, tmp_path, DriftSettings(method="model"), run_name="model")
    assert model.method == "model" and 0.0 <= model.score <= 1.0


def test_bad_inputs_say_what_to_do(tmp_path):
    from monitoring.drift import drift_report

    with pytest.raises(ValueError, match="same dimension"):
        drift_report(taste_batch(50, 1), Batch(np.zeros((50, 8), np.float32), np.ones(50, np.int32)),
                     tmp_path, DriftSettings())
    empty = taste_batch(50, 1, empty_share=1.0)
    with pytest.raises(ValueError, match="non-empty LTE"):
        drift_report(taste_batch(50, 1), empty, tmp_path, DriftSettings())


def test_workspace_accumulates_one_snapshot_per_run(tmp_path, reports):
    from evidently.ui.workspace import Workspace

    from monitoring.dashboard import PROJECT_NAME, add_to_workspace

    workspace_dir = tmp_path / "evidently"
    first = add_to_workspace(workspace_dir, reports["resample"])
    second = add_to_workspace(workspace_dir, reports["shifted"].snapshot)
    assert (first.n_snapshots, second.n_snapshots) == (1, 2)
    assert first.project_id == second.project_id

    workspace = Workspace(str(workspace_dir))
    projects = workspace.search_project(PROJECT_NAME)
    assert len(projects) == 1
    assert len(workspace.list_runs(projects[0].id)) == 2
    dashboard = workspace.get_dashboard(projects[0].id)
    titles = {panel.title for panel in dashboard.panels}
    assert {"LTE embedding drift score", "Share of drifted LTE dimensions"} <= titles
    labels = [value.metric_labels for panel in dashboard.panels for value in panel.values]
    assert {"embeddings_name": "lte"} in labels and {"embeddings_name": "lte_dimensions"} in labels


def test_should_retrain_only_when_enabled_drifted_and_big_enough(reports):
    from monitoring.drift import should_retrain

    drifted, calm = reports["shifted"], reports["resample"]
    on = DriftSettings(retrain_on_drift=True)
    assert should_retrain(drifted, on)
    assert not should_retrain(calm, on)
    assert not should_retrain(drifted, DriftSettings())  # off by default
    too_few = replace(drifted, n_compared_current=on.min_rows - 1)
    assert not should_retrain(too_few, on)


def test_cli_drift_reads_the_feature_store_and_prints_json(settings, con, reports):
    from typer.testing import CliRunner

    import lte.cli.drift  # noqa: F401  (registers `lte drift`)
    from lte.cli.app import app
    from lte.embeddings import LteBatch
    from lte.feature_store import FeatureStore

    def stored(batch: Batch, as_of: datetime) -> LteBatch:
        n = len(batch.n_events)
        return LteBatch(np.arange(1, n + 1, dtype=np.int64), batch.vectors, batch.n_events, as_of,
                        None, None, "basis-test", "uniform")

    store = FeatureStore(con)
    reference_time, live_time = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC)
    store.write_snapshot(stored(reports["reference"], reference_time))
    store.publish_live(stored(taste_batch(800, seed=3, weights=(0.3, 0.3, 0.4)), live_time))
    con.close()  # the CLI opens the DuckDB file itself

    result = CliRunner().invoke(app, ["drift", "--reference-as-of", reference_time.isoformat(), "--json"])
    assert result.exit_code == 0, result.output
    output = json.loads(result.output[result.output.index("{"):])
    assert output["drifted"] is True and output["retrain"] is False  # retraining is off by default
    assert output["reference_source"] == "--reference-as-of"
    assert output["reference_as_of"].startswith("2025-01-01") and output["current_as_of"].startswith("2025-06-01")
    assert output["workspace"]["n_snapshots"] == 1
    assert (settings.drift_dir / f"{output['run_name']}.html").exists()
