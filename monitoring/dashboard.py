"""The Evidently UI workspace for LTE drift: one project, one snapshot per monitoring run, and a
dashboard that plots the drift score and the share of drifted dimensions over time.

Start the UI on it with `evidently ui --workspace <settings.evidently_workspace> --host 127.0.0.1
--port 8002` (`make ui`). Snapshots are plotted at their timestamp, which `drift_report` sets to
the monitored `as_of` of the current LTEs, so a backfill draws a proper time series.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from monitoring.drift import DIMENSIONS, EMBEDDING, SUMMARY_COLUMNS, DriftResult

if TYPE_CHECKING:
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Project, Workspace

PROJECT_NAME = "LTE drift"
PROJECT_DESCRIPTION = (
    "Distribution of live long-term embeddings (LTEs) against the snapshot the champion was trained on. "
    "One snapshot per monitoring run."
)


@dataclass(frozen=True)
class WorkspaceRun:
    """Where one monitoring run landed in the workspace."""

    workspace: str
    project_id: str
    snapshot_id: str
    n_snapshots: int  # in the project, this one included

    def to_dict(self) -> dict[str, str | int]:
        return {
            "workspace": self.workspace,
            "project_id": self.project_id,
            "snapshot_id": self.snapshot_id,
            "n_snapshots": self.n_snapshots,
        }


def open_workspace(workspace_dir: Path | str) -> Workspace:
    """The local Evidently workspace at `workspace_dir` (created if missing)."""
    from evidently.ui.workspace import Workspace

    Path(workspace_dir).mkdir(parents=True, exist_ok=True)
    return Workspace.create(str(workspace_dir))


def ensure_project(workspace: Workspace, name: str = PROJECT_NAME) -> Project:
    """The drift project, created with its dashboard the first time; later calls return it unchanged."""
    existing = workspace.search_project(name)
    if existing:
        return existing[0]
    project = workspace.create_project(name, description=PROJECT_DESCRIPTION)
    for panel, tab in _panels():
        project.dashboard.add_panel(panel, tab=tab)
    return project


def _panels():
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    def embedding(name: str, legend: str) -> PanelMetric:
        return PanelMetric(legend=legend, metric="EmbeddingsDrift", metric_labels={"embeddings_name": name})

    overview = "LTE drift"
    summary = "Summary columns"
    yield (
        counter_panel(
            "Latest LTE drift score",
            values=[embedding(EMBEDDING, "score")],
            description="Score of the configured Evidently embedding drift method on the last run",
            size="half",
            aggregation="last",
        ),
        overview,
    )
    yield (
        counter_panel(
            "Latest share of drifted dimensions",
            values=[embedding(DIMENSIONS, "share")],
            description="Evidently RatioDriftMethod over the raw LTE dimensions",
            size="half",
            aggregation="last",
        ),
        overview,
    )
    yield (
        line_plot_panel(
            "LTE embedding drift score",
            values=[embedding(EMBEDDING, "drift score")],
            description="One point per monitoring run at the as_of of the current LTEs; the verdict is in each run's report",
            size="full",
        ),
        overview,
    )
    yield (
        line_plot_panel(
            "Share of drifted LTE dimensions",
            values=[embedding(DIMENSIONS, "share of drifted dimensions")],
            description="Normed Wasserstein distance >= 0.1 per dimension",
            size="full",
        ),
        overview,
    )
    yield (
        line_plot_panel(
            "Summary columns: drift score (normed Wasserstein)",
            values=[
                PanelMetric(legend=column, metric="ValueDrift", metric_labels={"column": column})
                for column in SUMMARY_COLUMNS
            ],
            size="full",
        ),
        summary,
    )
    for column in SUMMARY_COLUMNS:
        yield (
            line_plot_panel(
                f"Mean {column} (current)",
                values=[PanelMetric(legend=column, metric="MeanValue", metric_labels={"column": column})],
                size="half",
            ),
            summary,
        )


def add_to_workspace(
    workspace_dir: Path | str, snapshot: Snapshot | DriftResult, project_name: str = PROJECT_NAME
) -> WorkspaceRun:
    """Add one monitoring run (an Evidently snapshot, or the DriftResult that carries it) to the project."""
    if isinstance(snapshot, DriftResult):
        if snapshot.snapshot is None:
            raise ValueError("this DriftResult carries no Evidently snapshot (was it loaded from JSON?)")
        snapshot = snapshot.snapshot
    workspace = open_workspace(workspace_dir)
    project = ensure_project(workspace, project_name)
    ref = workspace.add_run(project.id, snapshot, include_data=False)
    return WorkspaceRun(
        workspace=str(workspace_dir),
        project_id=str(project.id),
        snapshot_id=str(ref.id),
        n_snapshots=len(workspace.list_runs(project.id)),
    )
