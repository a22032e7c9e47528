"""LTE coverage on real MovieLens data: how many users get a non-empty LTE for each window choice.

Two evaluation points per dataset:
- "last event": each user's own T = the time of their last rating (predicting it, leave-one-out);
- "temporal": one global T = last rating in the data - 30 days (the temporal test split), over the
  users who rate at or after T.
Windows come from the real window code (lte.embeddings.window_event_counts), in days and as a
fraction of each user's history (span = T - first rating before T). Skips datasets that are absent.

    .venv/bin/python bench/lte_coverage.py [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lte.config import LteSettings  # noqa: E402
from lte.embeddings import US_PER_DAY, window_event_counts  # noqa: E402

CHOICES = [
    ("days", dict(lag_days=0, window_days=365)),
    ("days", dict(lag_days=1, window_days=365)),
    ("days", dict(lag_days=7, window_days=365)),
    ("days", dict(lag_days=30, window_days=365)),
    ("days", dict(lag_days=30, window_days=3650)),
    ("history_fraction", dict(lag_fraction=0.1, window_fraction=0.9)),
    ("history_fraction", dict(lag_fraction=0.2, window_fraction=0.8)),
    ("history_fraction", dict(lag_fraction=0.5, window_fraction=0.5)),
]


def load(data_dir: Path, name: str) -> pd.DataFrame | None:
    if name == "ml-100k":
        path = data_dir / "ml-100k" / "u.data"
        if not path.exists():
            return None
        frame = pd.read_csv(path, sep="\t", names=["user_id", "item_id", "rating", "ts"])
    else:
        path = data_dir / "ml-latest-small" / "ratings.csv"
        if not path.exists():
            return None
        frame = pd.read_csv(path).rename(columns={"userId": "user_id", "movieId": "item_id", "timestamp": "ts"})
    return frame[["user_id", "item_id", "ts"]]


def label(unit: str, params: dict) -> str:
    if unit == "days":
        return f"lag {params['lag_days']:g} d, window {params['window_days']:g} d"
    return f"lag {params['lag_fraction']:.0%}, window {params['window_fraction']:.0%} of history"


def coverage(frame: pd.DataFrame) -> dict[str, list]:
    con = duckdb.connect()
    events = frame.assign(event_id=np.arange(len(frame)).astype(str), event_type="rating",  # noqa: F841 (read by DuckDB)
                          ts=pd.to_datetime(frame["ts"], unit="s", utc=True))
    con.execute("CREATE TABLE events AS SELECT event_id, user_id::BIGINT AS user_id, item_id::BIGINT AS item_id, "
                "ts, event_type FROM events")
    per_user = frame.groupby("user_id")["ts"].agg(["min", "max"])
    users = per_user.index.to_numpy(np.int64)
    last_us = per_user["max"].to_numpy(np.int64) * 1_000_000
    split_us = int(frame["ts"].max()) * 1_000_000 - 30 * US_PER_DAY
    test_users = users[last_us >= split_us]
    rows = []
    for unit, params in CHOICES:
        config = LteSettings(window_unit=unit, **params)
        loo = window_event_counts(con, users, last_us, config)
        temporal = window_event_counts(con, test_users, np.full(test_users.size, split_us), config)
        rows.append({
            "choice": label(unit, params), "unit": unit, **params,
            "users": int(users.size), "nonempty_last_event": int((loo > 0).sum()),
            "median_events_last_event": float(np.median(loo[loo > 0])) if (loo > 0).any() else 0.0,
            "test_users": int(test_users.size), "nonempty_temporal": int((temporal > 0).sum()),
        })
    span_days = (per_user["max"] - per_user["min"]) / 86_400
    return {"rows": rows, "median_span_days": float(span_days.median()),
            "users_span_over_1y": int((span_days > 365).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=_HERE.parent.parent / "shared" / "data")
    args = parser.parse_args()
    summary = {}
    for name in ("ml-100k", "ml-latest-small"):
        frame = load(args.data_dir, name)
        if frame is None:
            print(f"skipping {name}: not found under {args.data_dir} (see ../shared/data/README.md)")
            continue
        result = coverage(frame)
        summary[name] = result
        print(f"\n{name}: {len(frame):,} ratings, {result['rows'][0]['users']} users, median span "
              f"{result['median_span_days']:.2f} days, {result['users_span_over_1y']} users span > 1 year")
        print(f"{'window choice':<38} {'T = user last event':>22} {'med ev':>7} {'T = end - 30 d (test users)':>28}")
        for r in result["rows"]:
            loo = f"{r['nonempty_last_event']}/{r['users']} ({r['nonempty_last_event'] / r['users']:.0%})"
            tmp = (f"{r['nonempty_temporal']}/{r['test_users']} "
                   f"({r['nonempty_temporal'] / max(r['test_users'], 1):.0%})")
            print(f"{r['choice']:<38} {loo:>22} {r['median_events_last_event']:>7.0f} {tmp:>28}")
    if not summary:
        print("no MovieLens data found: nothing measured")
    best = {name: max(res["rows"], key=lambda r: r["nonempty_last_event"])["choice"] for name, res in summary.items()}
    print(json.dumps({"best_choice_last_event": best, "datasets": summary}, default=str))


if __name__ == "__main__":
    main()
