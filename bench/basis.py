"""Basis benchmark: encoder throughput (items/s) and freeze / extend / verified-load times.

    .venv/bin/python bench/basis.py [--size demo] [--threads 2] [--encoders hashing,minilm]

Items are the synthetic catalog of the chosen size (texts like "black leather boots, casual,
brand Kestrel"). Encoding is timed after a warm-up call, so MiniLM's model load (reported
separately) is not in items/s. Freeze = encode + hash + write to a local store; extend = a child
with 10% new items; load = read + full verification. items_per_cpu_s divides by process CPU time
(all threads), which a busy shared machine distorts less. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _cpu_timed(fn):
    """Wall and process CPU seconds (all threads): CPU time is less sensitive to a shared machine."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench_encoder(name: str, items, threads: int) -> dict:
    from lte.basis import load_basis, sync_basis
    from lte.encoders import HashingEncoder, MiniLMEncoder
    from lte.storage import LocalStore

    encoder = HashingEncoder(dim=256) if name == "hashing" else MiniLMEncoder(batch_size=64)
    texts = items["text"].tolist()
    load_s = 0.0
    if name == "minilm":
        import torch

        torch.set_num_threads(threads)
        _, load_s = _timed(lambda: encoder.encode(texts[:8]))  # loads the model
    else:
        encoder.encode(texts[:8])
    # Fresh encoder state for hashing would re-fill its feature cache; the warm figure is what a
    # long-running pipeline sees, so both encoders are measured warm.
    _, encode_s, encode_cpu_s = _cpu_timed(lambda: encoder.encode(texts))

    n_old = int(len(items) * 0.9)
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        (parent, _), freeze_s = _timed(lambda: sync_basis(items.iloc[:n_old], encoder, store))
        (child, action), extend_s = _timed(lambda: sync_basis(items, encoder, store))
        assert action == "extended" and child.parent_hash == parent.hash
        _, load_verify_s = _timed(lambda: load_basis(store, child.hash))
    return {
        "encoder": name,
        "dim": encoder.identity.dim,
        "n_items": len(items),
        "model_load_s": round(load_s, 3),
        "encode_s": round(encode_s, 3),
        "items_per_s": round(len(items) / encode_s, 1),
        "items_per_cpu_s": round(len(items) / encode_cpu_s, 1),
        "freeze_s": round(freeze_s, 3),
        "extend_s": round(extend_s, 3),
        "load_verify_s": round(load_verify_s, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="demo", choices=["tiny", "small", "demo", "large"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoders", default="hashing,minilm")
    args = parser.parse_args()

    from lte.datasets.synthetic import generate

    items = generate(args.size, seed=0).items
    rows = [bench_encoder(name, items, args.threads) for name in args.encoders.split(",")]

    header = [
        "encoder",
        "dim",
        "n_items",
        "items_per_s",
        "items_per_cpu_s",
        "encode_s",
        "model_load_s",
        "freeze_s",
        "extend_s",
        "load_verify_s",
    ]
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
    load_avg = round(os.getloadavg()[0], 2)  # the machine is shared: a high load slows MiniLM a lot
    print(
        f"basis benchmark: synthetic '{args.size}' catalog, {args.threads} torch threads, "
        f"cpu count {os.cpu_count()}, 1-min load average at the end {load_avg}"
    )
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[h]).rjust(w) for h, w in zip(header, widths, strict=True)))
    summary = {
        "size": args.size,
        "threads": args.threads,
        "n_items": len(items),
        "load_avg_1m": load_avg,
    }
    for r in rows:
        summary[f"{r['encoder']}_items_per_s"] = r["items_per_s"]
        summary[f"{r['encoder']}_items_per_cpu_s"] = r["items_per_cpu_s"]
        summary[f"{r['encoder']}_freeze_s"] = r["freeze_s"]
        summary[f"{r['encoder']}_load_verify_s"] = r["load_verify_s"]
    if any(r["encoder"] == "minilm" for r in rows):
        summary["minilm_model_load_s"] = next(
            r["model_load_s"] for r in rows if r["encoder"] == "minilm"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
