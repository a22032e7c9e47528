"""Autoencoder LTE cost: encoding throughput vs the uniform average, and training time.

Part 1 (apply): a random unit-row basis (--items x --dim) and --users windows of ~--mean-items
items (Poisson) with ages; users/s of `encode_users` (autoencoder) vs the uniform average computed
through the same batched path, and vs a plain numpy mean (np.add.reduceat) for reference.
Part 2 (train): synthetic --size data, hashing basis of --dim, training cutoff at day 600,
`train_autoencoder` with the default config; wall-clock seconds, and the fixed-decoder fit of
autoencoder vs uniform LTE on held-out users after the cutoff.

    .venv/bin/python bench/lte_autoencoder.py            # 100k users, 20k items, 384-d, demo
    .venv/bin/python bench/lte_autoencoder.py --users 20000 --size small   # quicker

Last line: JSON with users_per_s_autoencoder, users_per_s_uniform, train_seconds (+ details).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

# bench/ holds a script named lte.py: drop bench/ from the path so `import lte` finds the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lte import autoencoder as ae  # noqa: E402


def bench_apply(n_users: int, n_items: int, dim: int, mean_items: float, batch_size: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n_items, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    lengths = rng.poisson(mean_items, size=n_users)
    flat_rows = rng.integers(n_items, size=int(lengths.sum()))
    flat_ages = rng.uniform(30, 395, size=int(lengths.sum())).astype(np.float32)
    cuts = np.cumsum(lengths)[:-1]
    rows, ages = np.split(flat_rows, cuts), np.split(flat_ages, cuts)

    model = ae.LteAutoencoder(vectors, ae.AutoencoderConfig(), temperature=0.05)
    with torch.no_grad():  # trained-looking weights (zeros would not change the cost, but be honest)
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    model.eval()

    timings = {}
    t0 = time.perf_counter()
    z = ae.encode_users(model, rows, ages, batch_size=batch_size)
    timings["autoencoder"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    u = ae.encode_uniform(model, rows, batch_size=batch_size)
    timings["uniform (same batched path)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    u_np = np.zeros((n_users, dim), dtype=np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for lo in range(0, n_users, batch_size):  # chunks: the gathered (events, dim) block stays small
        hi = min(lo + batch_size, n_users)
        chunk_lengths = lengths[lo:hi]
        nonempty = np.flatnonzero(chunk_lengths > 0)
        if nonempty.size:
            gathered = vectors[flat_rows[offsets[lo] : offsets[hi]]]
            starts = (offsets[lo:hi] - offsets[lo])[nonempty]
            u_np[lo + nonempty] = np.add.reduceat(gathered, starts, axis=0) / chunk_lengths[nonempty, None]
    timings["uniform (numpy reduceat)"] = time.perf_counter() - t0
    assert z.shape == (n_users, dim) and np.allclose(u, u_np, atol=1e-5)
    return {name: n_users / seconds for name, seconds in timings.items()} | {
        "_seconds": timings,
        "_events": int(lengths.sum()),
    }


def bench_train(size: str, dim: int, seed: int) -> dict:
    from lte.basis import build_basis
    from lte.config import LteSettings
    from lte.datasets.synthetic import generate
    from lte.encoders import HashingEncoder

    data = generate(size, seed=seed)
    basis = build_basis(data.items.item_id.to_numpy(), data.items.text.tolist(), HashingEncoder(dim=dim))
    config, lte = ae.AutoencoderConfig(), LteSettings()
    as_of = data.spec.start + timedelta(days=600)
    users = np.unique(data.events.user_id)
    held_out = np.random.default_rng(1).permutation(users)[: len(users) // 5]
    horizon, every = timedelta(days=config.horizon_days), timedelta(days=config.anchor_every_days)
    anchors = [as_of - horizon - k * every for k in range(config.n_anchors)]
    t0 = time.perf_counter()
    examples = ae.examples_from_frame(data.events, basis, as_of, anchors, lte, config)
    examples = examples.subset(np.flatnonzero(~np.isin(examples.user_ids, held_out)))
    prep_s = time.perf_counter() - t0
    model, history = ae.train_autoencoder(examples, basis, config, seed=seed)
    # Held-out users, LTE times after the cutoff, scored on what they do in the next 30 days.
    next_period = replace(config, target="next_period", horizon_days=30.0)
    test = ae.examples_from_frame(
        data.events, basis, as_of + timedelta(days=120), [as_of + timedelta(days=d) for d in (30, 60, 90)],
        lte, next_period,
    )
    test = test.subset(np.flatnonzero(np.isin(test.user_ids, held_out)))
    return {
        "train_seconds": history.seconds,
        "prep_seconds": prep_s,
        "epochs": len(history.epochs),
        "best_epoch": history.best_epoch,
        "n_train_examples": history.n_train,
        "temperature": history.temperature,
        "held_out": ae.likelihood_report(model, test, k=100),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--mean-items", type=float, default=50.0)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--size", default="demo", help="synthetic size for the training part")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    apply = bench_apply(args.users, args.items, args.dim, args.mean_items, args.batch_size, args.seed)
    print(f"apply: {args.users} users, ~{args.mean_items:.0f} window items ({apply['_events']} events), "
          f"{args.items} items x {args.dim}-d, batch {args.batch_size}, {args.threads} threads")
    print(f"{'method':<30}{'seconds':>10}{'users/s':>12}")
    for name, seconds in apply["_seconds"].items():
        print(f"{name:<30}{seconds:>10.2f}{apply[name]:>12.0f}")

    train = None if args.skip_train else bench_train(args.size, args.dim, args.seed)
    if train:
        held = train["held_out"]
        print(f"\ntrain: synthetic {args.size}, hashing basis {args.dim}-d, {train['n_train_examples']} examples, "
              f"{train['epochs']} epochs (best {train['best_epoch']}), {train['train_seconds']:.1f} s "
              f"(+ {train['prep_seconds']:.1f} s examples)")
        print(f"{'held-out users, next 30 days':<30}{'NLL':>10}{'NDCG@100':>12}")
        for name in ("uniform", "autoencoder"):
            print(f"{name:<30}{held['nll_' + name]:>10.3f}{held['ndcg@100_' + name]:>12.4f}")

    print(json.dumps({
        "users_per_s_autoencoder": round(apply["autoencoder"], 1),
        "users_per_s_uniform": round(apply["uniform (same batched path)"], 1),
        "users_per_s_uniform_numpy": round(apply["uniform (numpy reduceat)"], 1),
        "train_seconds": round(train["train_seconds"], 1) if train else None,
        "train_epochs": train["epochs"] if train else None,
        "held_out_nll_autoencoder": round(train["held_out"]["nll_autoencoder"], 4) if train else None,
        "held_out_nll_uniform": round(train["held_out"]["nll_uniform"], 4) if train else None,
        "held_out_ndcg100_autoencoder": round(train["held_out"]["ndcg@100_autoencoder"], 4) if train else None,
        "held_out_ndcg100_uniform": round(train["held_out"]["ndcg@100_uniform"], 4) if train else None,
        "users": args.users, "items": args.items, "dim": args.dim, "size": args.size,
    }))


if __name__ == "__main__":
    main()
