"""Training throughput of SASRec on MovieLens 100K: samples/s and s/epoch on this machine's CPU.

Standard size: hidden 64, 2 layers, 2 heads, max len 50, batch 128, leave-one-out split (every
user's last two ratings held out), full-softmax loss over all 1682 items. A "sample" is one
next-item training target (one prefix of a user's history). s/epoch includes the validation
ranking that early stopping needs. Rows for `none` and `prefix` (uniform LTE), at 1 and 2 torch
threads. The last line is JSON with the headline (prefix at the default thread count).

    .venv/bin/python bench/train.py [--data-dir ../shared/data] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if not (Path(args.data_dir) / "ml-100k" / "u.data").exists():
        sys.exit(f"MovieLens 100K not found under {args.data_dir}/ml-100k: pass --data-dir")

    import torch  # noqa: F401  (imported before timing)

    from lte.config import Settings
    from training.ablate import _prepare_store
    from training.data import build_dataset
    from training.train import train

    settings = Settings(
        home=Path("/tmp/lte-bench-train"),
        data={"dataset": "ml-100k", "data_dir": Path(args.data_dir)},
        basis={"encoder": "hashing", "hashing_dim": 256},
        model={"d_model": 64, "n_layers": 2, "n_heads": 2, "max_len": 50},
        # patience > epochs: every configuration runs exactly `epochs` epochs
        train={"split": "leave_one_out", "epochs": args.epochs, "patience": args.epochs + 1, "batch_size": 128},
    )
    started = time.perf_counter()
    con, basis, store, _, _ = _prepare_store(settings, ("uniform",), settings.home)
    dataset = build_dataset(con, store, basis, settings, variant="uniform")
    prep_s = time.perf_counter() - started
    stats = dataset.stats()
    print(f"ml-100k: {stats['train']['targets']} training targets in {stats['train']['examples']} sequences, "
          f"{stats['val']['examples']} validation users, {dataset.n_items} items; data + LTE prep {prep_s:.1f} s")
    print(f"{'integration':<12} {'threads':>7} {'samples/s':>10} {'s/epoch':>8} {'train s/epoch':>13}")
    rows = []
    for threads in (1, 2):
        for integration in ("none", "prefix"):
            run = settings.with_overrides(train={"threads": threads})
            result = train(run, dataset, integration=integration, progress=False)
            epochs = result.history[1:] or result.history  # the first epoch pays one-off warm-up
            samples = sum(h["samples_per_s"] for h in epochs) / len(epochs)
            per_epoch = sum(h["seconds"] for h in epochs) / len(epochs)
            train_only = stats["train"]["targets"] / samples
            rows.append({"integration": integration, "threads": threads, "samples_per_s": samples,
                         "s_per_epoch": per_epoch})
            print(f"{integration:<12} {threads:>7} {samples:>10.0f} {per_epoch:>8.2f} {train_only:>13.2f}")
    default_threads = Settings().train.threads
    head = next(r for r in rows if r["integration"] == "prefix" and r["threads"] == default_threads)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"samples_per_s": round(head["samples_per_s"]), "s_per_epoch": round(head["s_per_epoch"], 2),
                      "peak_rss_mb": round(peak_rss_mb), "threads": default_threads, "integration": "prefix",
                      "rows": rows}))


if __name__ == "__main__":
    main()
