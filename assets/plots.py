"""Charts in materialization metadata: matplotlib -> PNG, shown inline by the Dagster UI (markdown
image with a base64 data URI) and saved as a file beside the run's other artifacts.

Each renderer takes plain values and returns a `Chart` (PNG bytes in memory), so an asset renders
before it writes anything and saves the file with its other outputs. matplotlib is imported only
when a chart is drawn (loading the definitions stays quick), through `Figure`, not pyplot: no GUI
backend and no global state shared between runs.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np

DPI = 96
SIZE = (7.0, 3.4)  # inches: about 670 x 330 px, readable in the asset's metadata panel


@dataclass(frozen=True)
class Chart:
    name: str  # metadata key and file stem
    title: str
    png: bytes

    @property
    def file_name(self) -> str:
        return f"{self.name}.png"

    def markdown(self) -> str:
        return f"![{self.title}](data:image/png;base64,{base64.b64encode(self.png).decode('ascii')})"

    def metadata(self, saved_at: Path) -> dict[str, dg.MetadataValue]:
        """The image inline, plus the path of the saved file."""
        return {self.name: dg.MetadataValue.md(self.markdown()),
                f"{self.name}_png": dg.MetadataValue.path(str(saved_at))}


def _figure(ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _chart(fig, name: str, title: str) -> Chart:
    fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return Chart(name=name, title=title, png=buffer.getvalue())


def training_curve(history: Sequence[dict], best_epoch: int, title: str) -> Chart:
    """Training loss and validation NDCG@10 per epoch; the kept (best) epoch marked."""
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, ndcg_ax) = _figure(ncols=2)
    loss_ax.plot(epochs, [row["loss"] for row in history], marker="o", color="tab:blue")
    loss_ax.set(xlabel="epoch", ylabel="training loss")
    ndcg_ax.plot(epochs, [row["val_ndcg@10"] for row in history], marker="o", color="tab:green")
    ndcg_ax.set(xlabel="epoch", ylabel="validation NDCG@10")
    for ax in (loss_ax, ndcg_ax):
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch {best_epoch}")
        ax.grid(alpha=0.3)
    ndcg_ax.legend(fontsize=8)
    return _chart(fig, "training_curve", title)


def ndcg_comparison(table: Sequence[dict], metrics: Sequence[str] = ("ndcg@10", "ndcg@100")) -> Chart:
    """Mean NDCG per scorer with its 95% bootstrap CI, one bar group per metric. Rows are
    {"scorer", metric, f"{metric}_ci": (lo, hi)}, as `assets.training._row` makes them."""
    fig, (ax,) = _figure()
    width = 0.8 / len(table)
    positions = np.arange(len(metrics))
    for i, row in enumerate(table):
        means = np.array([row[m] for m in metrics])
        lo = means - np.array([row[f"{m}_ci"][0] for m in metrics])
        hi = np.array([row[f"{m}_ci"][1] for m in metrics]) - means
        ax.bar(positions + i * width, means, width, yerr=[lo, hi], capsize=3, label=row["scorer"])
    ax.set_xticks(positions + width * (len(table) - 1) / 2, [m.upper() for m in metrics])
    ax.set_ylabel("mean over test users")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _chart(fig, "ndcg_comparison", "Offline NDCG with 95% CI (full ranking, held-out period)")


def _norms(vectors: np.ndarray, n_events: np.ndarray) -> np.ndarray:
    filled = n_events > 0
    return np.linalg.norm(vectors[filled], axis=1) if filled.any() else np.zeros(0)


def norm_histogram(vectors: np.ndarray, n_events: np.ndarray, title: str) -> Chart:
    """Distribution of the L2 norm of the non-empty LTEs (a mean of unit basis rows: in (0, 1])."""
    norms = _norms(vectors, n_events)
    fig, (ax,) = _figure()
    ax.hist(norms, bins=40, range=(0.0, 1.0), color="tab:blue")
    empty = int((n_events == 0).sum())
    ax.set(xlabel="LTE norm (non-empty users)", ylabel="users",
           title=f"{len(norms):,} users with an LTE, {empty:,} without")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    return _chart(fig, "lte_norms", title)


def drift_dimensions(reference: np.ndarray, current: np.ndarray, ref_events: np.ndarray,
                     cur_events: np.ndarray, title: str) -> Chart:
    """Left: norm distributions of reference and current LTEs. Right: per basis dimension, the
    shift of the current mean from the reference mean in reference standard deviations."""
    ref = reference[ref_events > 0]
    cur = current[cur_events > 0]
    fig, (norm_ax, dim_ax) = _figure(ncols=2)
    for label, rows, events in (("reference", reference, ref_events), ("current", current, cur_events)):
        norm_ax.hist(_norms(rows, events), bins=30, range=(0.0, 1.0), alpha=0.5, density=True, label=label)
    norm_ax.set(xlabel="LTE norm", ylabel="density")
    norm_ax.legend(fontsize=8)
    if len(ref) and len(cur):
        spread = ref.std(axis=0)
        gap = np.abs(cur.mean(axis=0) - ref.mean(axis=0))
        shift = np.divide(gap, spread, out=np.zeros_like(gap), where=spread > 0)
        dim_ax.bar(np.arange(shift.size), shift, width=1.0, color="tab:red")
    dim_ax.set(xlabel="basis dimension", ylabel="|mean shift| / reference std")
    for ax in (norm_ax, dim_ax):
        ax.grid(alpha=0.3)
    return _chart(fig, "drift_dimensions", title)
