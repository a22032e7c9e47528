"""Measured behaviour of LTE drift detection: detection rate, false alarms, and cost per report.

For each seed, the synthetic shop is generated twice, with and without a taste shift
(`generate(size, seed, shift_at=start + shift_day)`: from then on every user's facets and colours are
redrawn). LTEs are uniform averages of a 384-d hashing basis over the lagged window
`[as_of - lag - window, as_of - lag)` (lte.config.LteSettings defaults: lag 30 d, window 365 d):
- reference = LTEs at as_of = start + lag + window (the first full window: what a champion trains on);
- current   = LTEs at as_of = start + 730 d (window days 335..700; with the default shift at day 520,
  about half of the current window is after the shift).
Three comparisons per seed: shifted (should drift), unshifted (same users a year later: should not),
and a resample (the reference users split at random in two halves: should not).

Why a straddling window: the shift redraws each user's taste from the *same* prior, so once the
whole window lies after the shift the population of LTEs is distributed exactly as before and no
distribution test can (or should: the model's input distribution is unchanged) see it. While the
window straddles the shift, each user's LTE mixes two tastes, which changes the population
(lower norms, different spread): that transition is what monitoring can catch.

The headline figures run `monitoring.drift.drift_report` with default `DriftSettings` (HTML + JSON
written); the table also calls the other Evidently methods directly on the same samples.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/drift.py --seeds 10
Last line: JSON with detection_rate, false_alarm_rate, seconds_per_report.
(One BLAS thread: on a busy 2-core machine OpenBLAS threads contend and a PCA/kernel call gets
10-20x slower.)

`--timeline-workspace DIR` instead writes a monthly series of drift runs over one shifted dataset
into an Evidently workspace (the dashboard screenshot in the README comes from it), then exits.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lte.config import DriftSettings, LteSettings  # noqa: E402
from lte.datasets.synthetic import SIZES, generate  # noqa: E402
from lte.encoders import HashingEncoder  # noqa: E402
from monitoring.drift import drift_report  # noqa: E402

DIM = 384  # the MiniLM basis dimension the demo uses


@dataclass
class Lte:
    vectors: np.ndarray
    n_events: np.ndarray
    as_of: object = None


def uniform_lte(events: pd.DataFrame, basis: np.ndarray, as_of, lte: LteSettings) -> Lte:
    """Mean basis vector over each user's events in [as_of - lag - window, as_of - lag); users = anyone
    with an event before as_of; an empty window gives the zero vector and n_events = 0."""
    end = pd.Timestamp(as_of) - pd.Timedelta(days=lte.lag_days)
    start = end - pd.Timedelta(days=lte.window_days)
    users = np.sort(events.loc[events.ts < pd.Timestamp(as_of), "user_id"].unique())
    window = events[(events.ts >= start) & (events.ts < end)]
    row = np.searchsorted(users, window.user_id.to_numpy())
    n_events = np.bincount(row, minlength=len(users)).astype(np.int32)
    sums = np.zeros((len(users), basis.shape[1]), np.float64)
    np.add.at(sums, row, basis[window.item_id.to_numpy() - 1])
    sums[n_events > 0] /= n_events[n_events > 0, None]
    return Lte(sums.astype(np.float32), n_events, as_of)


def scenario(size: str, seed: int, shift_at, lte: LteSettings) -> tuple[Lte, Lte]:
    spec = SIZES[size]
    data = generate(size, seed=seed, shift_at=shift_at)
    basis = HashingEncoder(dim=DIM).encode(data.items.text.tolist())  # row i = item_id i + 1
    reference_as_of = spec.start + timedelta(days=lte.lag_days + lte.window_days)
    current_as_of = spec.start + timedelta(days=spec.days)
    return (
        uniform_lte(data.events, basis, reference_as_of, lte),
        uniform_lte(data.events, basis, current_as_of, lte),
    )


def split_halves(batch: Lte, seed: int) -> tuple[Lte, Lte]:
    order = np.random.default_rng(10_000 + seed).permutation(len(batch.n_events))
    a, b = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    return (Lte(batch.vectors[a], batch.n_events[a], batch.as_of), Lte(batch.vectors[b], batch.n_events[b], batch.as_of))


def timeline(workspace_dir: Path, size: str, shift_day: float, lte: LteSettings) -> None:
    """Monthly monitoring runs (current as_of every 30 days) against the first full window."""
    from monitoring.dashboard import add_to_workspace

    spec = SIZES[size]
    data = generate(size, seed=0, shift_at=spec.start + timedelta(days=shift_day))
    basis = HashingEncoder(dim=DIM).encode(data.items.text.tolist())
    first = lte.lag_days + lte.window_days
    reference = uniform_lte(data.events, basis, spec.start + timedelta(days=first), lte)
    out_dir = workspace_dir / "reports"
    print(f"{'current as_of':<12} {'score':>9} {'drift':>6} {'dims':>6}")
    for day in np.arange(first + 30, spec.days + 1, 30):
        as_of = spec.start + timedelta(days=float(day))
        current = uniform_lte(data.events, basis, as_of, lte)
        result = drift_report(reference, current, out_dir, DriftSettings(), run_name=f"{as_of:%Y-%m-%d}")
        run = add_to_workspace(workspace_dir, result)
        print(f"{as_of:%Y-%m-%d}   {result.score:>9.3g} {str(result.drifted):>6} {result.share_drifted_dims:>6.3f}", flush=True)
    print(f"project {run.project_id}: {run.n_snapshots} runs; "
          f"evidently ui --workspace {workspace_dir} --host 127.0.0.1 --port 8002")


def candidate_methods():
    from evidently.metrics.embeddings import (
        DistanceDriftMethod,
        MMDDriftMethod,
        ModelDriftMethod,
        RatioDriftMethod,
    )

    return {
        "mmd bootstrap q=0.99 (default)": MMDDriftMethod(bootstrap=True, quantile_probability=0.99),
        "mmd bootstrap q=0.95": MMDDriftMethod(bootstrap=True, quantile_probability=0.95),
        "mmd fixed 0.015 (Evidently default)": MMDDriftMethod(),
        "model bootstrap q=0.99": ModelDriftMethod(bootstrap=True, quantile_probability=0.99),
        "model fixed 0.55 (Evidently default)": ModelDriftMethod(),
        "distance bootstrap q=0.99": DistanceDriftMethod(bootstrap=True, quantile_probability=0.99),
        "ratio fixed 0.2 (Evidently default)": RatioDriftMethod(),
    }


def sample_frame(batch: Lte, max_rows: int, seed: int) -> pd.DataFrame:
    rows = np.flatnonzero(batch.n_events > 0)
    if len(rows) > max_rows:
        rows = np.random.default_rng(seed).choice(rows, size=max_rows, replace=False)
    return pd.DataFrame(batch.vectors[rows].astype(np.float64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--size", default="demo", choices=sorted(SIZES))
    parser.add_argument("--shift-day", type=float, default=520.0, help="days after the data start")
    parser.add_argument("--timing-users", type=int, default=100_000)
    parser.add_argument("--timing-repeats", type=int, default=3)
    parser.add_argument("--no-candidates", action="store_true", help="headline only (skip the method table)")
    parser.add_argument("--timeline-workspace", type=Path, help="write a monthly drift series there and exit")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    lte = LteSettings()
    if args.timeline_workspace:
        timeline(args.timeline_workspace, args.size, args.shift_day, lte)
        return
    settings = DriftSettings()
    spec = SIZES[args.size]
    shift_at = spec.start + timedelta(days=args.shift_day)
    methods = {} if args.no_candidates else candidate_methods()
    flags: dict[str, dict[str, list[bool]]] = {name: {"shifted": [], "unshifted": [], "resample": []} for name in methods}
    headline = {"shifted": [], "unshifted": [], "resample": []}
    out_dir = Path(tempfile.mkdtemp(prefix="lte-drift-bench-"))
    timing_source = None
    print(f"size={args.size} seeds={args.seeds} shift_day={args.shift_day} dim={DIM} settings={settings.model_dump()}")
    print(f"{'seed':>4} {'case':<10} {'n_ref':>6} {'n_cur':>6} {'score':>10} {'drift':>6} {'dims':>6} {'norm ref->cur':>16} {'s':>5}")
    for seed in range(args.seeds):
        reference, current = scenario(args.size, seed, None, lte)
        shifted_reference, shifted_current = scenario(args.size, seed, shift_at, lte)
        half_a, half_b = split_halves(reference, seed)
        timing_source = timing_source or reference
        cases = {
            "shifted": (shifted_reference, shifted_current),
            "unshifted": (reference, current),
            "resample": (half_a, half_b),
        }
        for case, (ref, cur) in cases.items():
            result = drift_report(ref, cur, out_dir, settings, run_name=f"seed{seed}-{case}")
            headline[case].append(result.drifted)
            norms = result.summary["norm"]
            print(
                f"{seed:>4} {case:<10} {result.n_compared_reference:>6} {result.n_compared_current:>6} "
                f"{result.score:>10.3g} {str(result.drifted):>6} {result.share_drifted_dims:>6.3f} "
                f"{norms['reference_mean']:>7.3f}->{norms['current_mean']:<7.3f} {result.seconds:>5.1f}",
                flush=True,
            )
            ref_frame = sample_frame(ref, settings.max_rows, seed)
            cur_frame = sample_frame(cur, settings.max_rows, seed + 1)
            for name, method in methods.items():
                _, drifted, _ = method(cur_frame.copy(), ref_frame.copy())
                flags[name][case].append(bool(drifted))

    def rate(values: list[bool]) -> float:
        return float(np.mean(values)) if values else float("nan")

    print()
    print(f"{'method':<40} {'detection':>9} {'false alarm':>11} {'resample FA':>11}")
    print(f"{'drift_report (DriftSettings defaults)':<40} {rate(headline['shifted']):>9.2f} "
          f"{rate(headline['unshifted']):>11.2f} {rate(headline['resample']):>11.2f}")
    for name, by_case in flags.items():
        print(f"{name:<40} {rate(by_case['shifted']):>9.2f} {rate(by_case['unshifted']):>11.2f} {rate(by_case['resample']):>11.2f}")

    # Cost per report at scale: 100k users x 384-d (rows drawn from the real LTEs above, 5% empty).
    rng = np.random.default_rng(0)
    picks = rng.integers(len(timing_source.n_events), size=args.timing_users)
    big_vectors = timing_source.vectors[picks] + rng.normal(0, 1e-3, size=(args.timing_users, DIM)).astype(np.float32)
    big_events = timing_source.n_events[picks].copy()
    empty = rng.random(args.timing_users) < 0.05
    big_vectors[empty], big_events[empty] = 0.0, 0
    big = Lte(big_vectors, big_events)
    seconds = []
    for repeat in range(args.timing_repeats):
        started = time.perf_counter()
        drift_report(big, big, out_dir, settings, run_name=f"timing-{repeat}")
        seconds.append(time.perf_counter() - started)
    print(f"\nreport on {args.timing_users} x {DIM} per side (sampled to {settings.max_rows}): "
          + ", ".join(f"{s:.2f}s" for s in seconds) + f"; html+json in {out_dir}")
    print(json.dumps({
        "detection_rate": rate(headline["shifted"]),
        "false_alarm_rate": rate(headline["unshifted"]),
        "resample_false_alarm_rate": rate(headline["resample"]),
        "seconds_per_report": round(float(np.median(seconds)), 3),
        "seeds": args.seeds,
        "size": args.size,
        "shift_day": args.shift_day,
        "method": settings.method,
        "quantile_probability": settings.quantile_probability,
        "max_rows": settings.max_rows,
    }))


if __name__ == "__main__":
    main()
