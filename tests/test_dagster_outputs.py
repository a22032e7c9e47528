"""What the pipeline leaves behind: charts in the materialization metadata (inline PNG + file), and
nothing at all from a step that fails midway."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from pipeline_env import QUICK

from orchestration.definitions import defs
from orchestration.resources import lte_resources

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_URI = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")
CHARTS = {
    "trained_model": "training_curve",
    "baseline_model": "training_curve",
    "offline_evaluation": "ndcg_comparison",
    "lte_live": "lte_norms",
    "lte_drift_report": "drift_dimensions",
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """`full_pipeline` once on the tiny shop (quick settings), in process on an ephemeral instance."""
    home = tmp_path_factory.mktemp("outputs") / "home"
    with pytest.MonkeyPatch.context() as env:
        for key, value in {**QUICK, "LTE_HOME": str(home), "LTE_TRAIN__EPOCHS": "4"}.items():
            env.setenv(key, value)
        # Step outputs pickled to files, so a later test can load the trained models again.
        resources = {**lte_resources(home=str(home)),
                     "io_manager": dg.FilesystemIOManager(base_dir=str(home.parent / "step-outputs"))}
        result = defs.resolve_job_def("full_pipeline").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), resources=resources, raise_on_error=False)
        yield home, resources, result


def _metadata(result, asset: str) -> dict:
    (materialization,) = result.asset_materializations_for_node(asset)
    return materialization.metadata


def _decoded_image(markdown: str) -> bytes:
    match = DATA_URI.fullmatch(markdown)
    assert match, f"not one inline PNG image: {markdown[:80]}..."
    return base64.b64decode(match.group(1))


@pytest.mark.parametrize("asset", sorted(CHARTS))
def test_each_chart_is_an_inline_png_and_the_same_file_beside_the_run(pipeline, asset):
    import matplotlib.image

    home, _, result = pipeline
    assert result.success
    name = CHARTS[asset]
    metadata = _metadata(result, asset)
    png = _decoded_image(metadata[name].value)
    assert png.startswith(PNG_SIGNATURE)
    saved = Path(metadata[f"{name}_png"].value)
    assert home.resolve() in saved.resolve().parents
    assert saved.read_bytes() == png
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert pixels[..., :3].std() > 0.05, "the image is blank"


def test_charts_sit_next_to_the_artifacts_of_their_run(pipeline):
    _, _, result = pipeline
    checkpoint = Path(_metadata(result, "trained_model")["checkpoint"].value)
    assert Path(_metadata(result, "trained_model")["training_curve_png"].value).parent == checkpoint.parent
    report = Path(_metadata(result, "offline_evaluation")["report"].value)
    assert Path(_metadata(result, "offline_evaluation")["ndcg_comparison_png"].value).parent == report.parent
    drift_html = Path(_metadata(result, "lte_drift_report")["report"].value)
    assert Path(_metadata(result, "lte_drift_report")["drift_dimensions_png"].value).parent == drift_html.parent


def test_renderers_draw_what_they_are_given():
    """Different inputs give different images; the same input the same bytes."""
    from assets import plots

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) * rng.uniform(1.2, 3.0, size=(200, 1))
    events = rng.integers(0, 5, size=200)
    first = plots.norm_histogram(vectors, events, "a")
    assert plots.norm_histogram(vectors, events, "a").png == first.png
    assert plots.norm_histogram(vectors * 0.5, events, "a").png != first.png
    history = [{"epoch": e, "loss": 5.0 / e, "val_ndcg@10": 0.1 * e} for e in range(1, 6)]
    assert plots.training_curve(history, 5, "t").png != plots.training_curve(history, 2, "t").png


# --------------------------------------------------------------------------- failure midway


def _files(root: Path) -> set[str]:
    """Every file and directory under root, hidden staging directories included."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")} if root.exists() else set()


def _failure_message(result, asset: str) -> str:
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == asset
    return str(failure.step_failure_data.error)


def _table_state(settings) -> list:
    from lte.db import connect

    con = connect(settings.duckdb_path, read_only=True)
    try:
        return [con.execute(f"SELECT count(*), max(as_of), max(written_at) FROM {table}").fetchall()
                for table in ("lte_snapshots", "lte_live")]
    finally:
        con.close()


def test_lte_live_failing_inside_the_swap_leaves_both_tables_as_they_were(pipeline, monkeypatch):
    from assets.lte import lte_live
    from lte.feature_store import FeatureStore

    home, resources, result = pipeline
    assert result.success
    settings = resources["lte_settings"].settings()
    monkeypatch.setenv("LTE_LTE__VARIANT", "recency")  # a snapshot key not stored yet: new rows to insert
    before = _table_state(settings)

    def swap_fails(self, *args, **kwargs):
        raise RuntimeError("disk full during the live swap")

    monkeypatch.setattr(FeatureStore, "_swap_live", swap_fails)
    failed = dg.materialize([lte_live], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    assert "disk full" in _failure_message(failed, "lte_live")
    assert _table_state(settings) == before
    monkeypatch.undo()
    monkeypatch.setenv("LTE_LTE__VARIANT", "recency")
    assert dg.materialize([lte_live], resources=resources, instance=dg.DagsterInstance.ephemeral()).success
    assert _table_state(settings) != before  # the same step, not failing, does write


def test_trained_model_failing_after_its_checkpoint_leaves_no_checkpoint(pipeline, monkeypatch):
    from assets.training import trained_model

    _, resources, _ = pipeline
    checkpoints = resources["lte_settings"].settings().artifacts_dir / "checkpoints"
    before = _files(checkpoints)

    def mlflow_refuses(*args, **kwargs):
        assert any(p.name == "model.pt" for p in checkpoints.rglob("*")), "fails after the checkpoint exists"
        raise PermissionError("MLflow refused the run")

    monkeypatch.setattr("training.registry.log_training_run", mlflow_refuses)
    failed = dg.materialize([trained_model], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    assert "MLflow refused" in _failure_message(failed, "trained_model")
    assert _files(checkpoints) == before


def test_offline_evaluation_failing_between_its_files_leaves_neither(pipeline, monkeypatch):
    from assets.training import baseline_model, offline_evaluation, trained_model

    _, resources, _ = pipeline
    evaluation = resources["lte_settings"].settings().artifacts_dir / "evaluation"
    before = _files(evaluation)
    real_write_bytes = Path.write_bytes

    def png_write_fails(path, data):
        if path.suffix == ".png":
            assert any(p.name == "evaluation.md" for p in evaluation.rglob("*")), "fails after the report exists"
            raise OSError("no space left on device")
        return real_write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", png_write_fails)
    failed = dg.materialize(  # the two models come from the pipeline run's stored outputs
        [trained_model, baseline_model, offline_evaluation], selection=["offline_evaluation"],
        resources=resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert "no space left" in _failure_message(failed, "offline_evaluation")
    assert _files(evaluation) == before
