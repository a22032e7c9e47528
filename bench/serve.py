"""Serving benchmark: batch throughput (users/s) and single-request latency (p50/p99) of `lte recommend`.

Default: a throwaway home with synthetic data, a hashing basis (384-d, as MiniLM), live LTEs and one
registered, promoted SASRec (random weights: scoring cost does not depend on training). With
`--home PATH` it measures the champion of an existing home instead (e.g. after `lte demo`).

    .venv/bin/python bench/serve.py                  # synthetic "demo" size
    .venv/bin/python bench/serve.py --size small --requests 100
    .venv/bin/python bench/serve.py --home .lte      # the real champion

Measured inside one process with the model loaded once (a `Recommender`), as a server would run;
`model_load_s` is the one-off cost a fresh `lte recommend` process also pays (plus imports).
The last line is JSON with the headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_home(home: Path, size: str, dim: int):
    """Synthetic events + items, a hashing basis, live LTEs, a promoted random-weight model."""
    import torch

    from lte import catalog, events
    from lte.basis import get_encoder, sync_basis
    from lte.config import load_settings
    from lte.datasets.synthetic import generate
    from lte.db import connect
    from lte.embeddings import compute_lte
    from lte.feature_store import FeatureStore
    from lte.storage import open_store
    from training.model import SASRec, SASRecConfig
    from training.registry import Registry, version_tags

    os.environ["LTE_HOME"] = str(home)
    settings = load_settings(home=home, basis={"encoder": "hashing", "hashing_dim": dim})
    data = generate(size, seed=0)
    store = open_store(settings.storage.uri, settings.artifacts_dir, settings.storage.s3_endpoint_url)
    con = connect(settings.duckdb_path)
    try:
        events.ingest_frame(con, data.events, source=f"synthetic:{size}")
        catalog.upsert_items(con, data.items)
        basis, _ = sync_basis(catalog.load_items(con), get_encoder(settings.basis), store)
        as_of = con.execute("SELECT max(ts) FROM events").fetchall()[0][0]
        FeatureStore(con).publish_live(compute_lte(con, basis, as_of, settings.lte))
    finally:
        con.close()
    m = settings.model
    config = SASRecConfig(n_items=basis.n_items, lte_dim=basis.dim, d_model=m.d_model, n_layers=m.n_layers,
                          n_heads=m.n_heads, max_len=m.max_len or 50, dropout=m.dropout, integration=m.integration)
    torch.manual_seed(0)
    registry = Registry.from_settings(settings)
    version = registry.register(SASRec(config).eval(), config, basis.manifest,
                                version_tags(settings, data_snapshot=f"synthetic:{size}"), {})
    registry.promote(version, force=True, who="bench/serve.py", reason="benchmark model (random weights)")
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="measure this home's champion instead of a synthetic one")
    parser.add_argument("--size", default="demo", choices=["tiny", "small", "demo", "large"])
    parser.add_argument("--dim", type=int, default=384, help="hashing basis dimension (synthetic home)")
    parser.add_argument("--batch", type=int, default=256, help="users per batch request")
    parser.add_argument("--requests", type=int, default=300, help="single-user requests to time")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("LTE_TRAIN__THREADS", "2")))
    from lte.config import load_settings
    from lte.db import connect
    from training.serve import Recommender, list_users

    tmp = None
    started = time.perf_counter()
    if args.home:
        os.environ["LTE_HOME"] = str(args.home)
        settings = load_settings(home=args.home)
        source = str(args.home)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="lte-bench-serve-")
        settings = build_home(Path(tmp.name) / "home", args.size, args.dim)
        source = f"synthetic {args.size}, hashing {args.dim}-d, random-weight model"
    setup_s = time.perf_counter() - started

    started = time.perf_counter()
    recommender = Recommender(settings)
    load_s = time.perf_counter() - started
    users = [row["user_id"] for row in list_users(settings, limit=None)]
    con = connect(settings.duckdb_path, read_only=True)
    try:
        recommender.recommend(con, users[:8], args.k)  # warm-up: first-call allocations, basis check

        started = time.perf_counter()
        for start in range(0, len(users), args.batch):
            recommender.recommend(con, users[start:start + args.batch], args.k)
        batch_s = time.perf_counter() - started

        rng = np.random.default_rng(0)
        latencies = []
        for user in rng.choice(users, size=args.requests):
            t0 = time.perf_counter()
            recommender.recommend(con, [int(user)], args.k)
            latencies.append(time.perf_counter() - t0)
    finally:
        con.close()
        if tmp is not None:
            tmp.cleanup()

    ms = np.asarray(latencies) * 1000
    figures = {
        "batch_users_per_s": round(len(users) / batch_s, 1),
        "single_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "single_p99_ms": round(float(np.percentile(ms, 99)), 2),
        "model_load_s": round(load_s, 2),
        "users": len(users),
        "items": int(recommender.bundle.config.n_items),
        "batch": args.batch,
        "requests": args.requests,
        "k": args.k,
        "torch_threads": torch.get_num_threads(),
    }
    print(f"serving benchmark: {source}; model v{recommender.version} "
          f"({recommender.bundle.config.integration}, d_model {recommender.bundle.config.d_model}, "
          f"max_len {recommender.bundle.config.max_len}); setup {setup_s:.1f} s")
    print(f"{'measure':<34}{'value':>12}")
    print(f"{'model load (registry -> eval)':<34}{load_s:>10.2f} s")
    print(f"{'batch throughput':<34}{figures['batch_users_per_s']:>8.1f} users/s  "
          f"({len(users)} users, batches of {args.batch})")
    print(f"{'single request p50':<34}{figures['single_p50_ms']:>9.2f} ms")
    print(f"{'single request p99':<34}{figures['single_p99_ms']:>9.2f} ms  ({args.requests} requests)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
