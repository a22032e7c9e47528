"""LTE generation speed: compute_lte over 10M events / 100k users / 20k items vs the bare matmul.

The bound is scipy's CSR @ dense product alone, on a prebuilt matrix with the same non-zeros
(every event is inside the window: the worst case), timed in the same run. "ours" is the whole
compute_lte call: DuckDB window query, canonical sort, weights, CSR build and the same product.
ratio_vs_bound = bound seconds / our seconds (1.0 = no overhead beyond the product; target >= 0.5).

    .venv/bin/python bench/lte.py            # ~2-3 minutes on 2 cores, ~3 GB peak RSS
    .venv/bin/python bench/lte.py --events 1000000 --users 10000   # quick look
Rows: uniform, recency, autoencoder (issue 10: users/s vs uniform) and multi_interest (ENCODE, k = 4
spherical k-means per user) at the first dim; uniform at the others.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

# This file is named lte.py: drop bench/ from the import path so `import lte` finds the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))
from datetime import UTC, datetime, timedelta  # noqa: E402

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from lte.autoencoder import AutoencoderConfig, LteAutoencoder, save  # noqa: E402
from lte.basis import build_basis  # noqa: E402
from lte.config import LteSettings  # noqa: E402
from lte.embeddings import compute_lte  # noqa: E402
from lte.encoders import EncoderIdentity  # noqa: E402

T = datetime(2025, 1, 1, tzinfo=UTC)
LAG_DAYS, WINDOW_DAYS = 30.0, 365.0


class RandomEncoder:
    """Stand-in for MiniLM with the same output shape: unit-norm random rows (content is irrelevant here)."""

    def __init__(self, dim: int):
        self.identity = EncoderIdentity(name="bench-random", version="1", dim=dim, normalize=True)

    def encode(self, texts):
        rows = np.random.default_rng(len(texts)).standard_normal((len(texts), self.identity.dim))
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def make_events(con: duckdb.DuckDBPyConnection, n_events: int, n_users: int, n_items: int) -> None:
    """Events spread over the year before T - lag, users and items skewed (popular ones repeat)."""
    window_us = int(WINDOW_DAYS * 86_400_000_000) - 1
    end = T - timedelta(days=LAG_DAYS)
    con.execute(f"""
        CREATE TABLE events AS SELECT
            'e' || i::VARCHAR AS event_id,
            (floor({n_users} * pow((hash(i) % 1000003) / 1000003.0, 1.3)))::BIGINT AS user_id,
            (floor({n_items} * pow((hash(i + 7919) % 1000003) / 1000003.0, 2.0)))::BIGINT AS item_id,
            $end::TIMESTAMPTZ - to_microseconds(1 + (hash(i * 31 + 1) % {window_us})::BIGINT) AS ts,
            'view' AS event_type
        FROM range({n_events}) t(i)""", {"end": end})


def bound_seconds(con, basis, repeats: int) -> tuple[float, int]:
    """Best time of the bare CSR @ dense product on the same (user, item) non-zeros."""
    pairs = con.execute("""
        SELECT dense_rank() OVER (ORDER BY user_id) - 1 AS r, item_id FROM events
        WHERE ts < $hi""", {"hi": T - timedelta(days=LAG_DAYS)}).fetchnumpy()
    rows, cols = pairs["r"].astype(np.int64), basis.rows(pairs["item_id"]).astype(np.int32)
    order = np.argsort((rows << 32) | cols)
    n_users = int(rows.max()) + 1
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    weights = np.ones(rows.size, np.float32)
    matrix = sp.csr_matrix((weights, cols[order], indptr), shape=(n_users, basis.vectors.shape[0]))
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        _ = matrix @ basis.vectors
        best = min(best, time.perf_counter() - began)
    return best, int(matrix.nnz)


def ours_seconds(con, basis, config: LteSettings, repeats: int) -> tuple[float, int]:
    best, users = float("inf"), 0
    for _ in range(repeats):
        began = time.perf_counter()
        batch = compute_lte(con, basis, T, config)
        best = min(best, time.perf_counter() - began)
        users = len(batch)
        assert np.isfinite(batch.vectors).all()
    return best, users


def _encoder_checkpoint(basis) -> str:
    """An autoencoder for this basis; untrained weights cost exactly what trained ones do."""
    import tempfile

    model = LteAutoencoder(basis.vectors, AutoencoderConfig(), temperature=0.05)
    model.basis_hash, model.basis_manifest = basis.hash, basis.manifest.to_dict()
    return str(save(model, Path(tempfile.mkdtemp()) / "encoder.pt"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 64])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    con = duckdb.connect()
    began = time.perf_counter()
    make_events(con, args.events, args.users, args.items)
    threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    print(f"generated {args.events:,} events in {time.perf_counter() - began:.1f} s (DuckDB threads: {threads})")
    item_ids = np.arange(args.items)
    results = []
    for dim in args.dims:
        basis = build_basis(item_ids, [f"item {i}" for i in item_ids], RandomEncoder(dim))
        bound, nnz = bound_seconds(con, basis, args.repeats)
        variants = ("uniform", "recency", "autoencoder", "multi_interest") if dim == args.dims[0] else ("uniform",)
        for variant in variants:
            config = LteSettings(lag_days=LAG_DAYS, window_days=WINDOW_DAYS, variant=variant,
                                 autoencoder_checkpoint=_encoder_checkpoint(basis) if variant == "autoencoder" else None)
            ours, users = ours_seconds(con, basis, config, args.repeats)
            results.append({"variant": variant, "dim": dim, "events_in_window": nnz, "users": users,
                            "ours_s": ours, "bound_s": bound, "ratio_vs_bound": bound / ours})

    header = f"{'variant':<14} {'dim':>4} {'events':>11} {'users':>8} {'ours s':>8} {'matmul s':>9} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['variant']:<14} {r['dim']:>4} {r['events_in_window']:>11,} {r['users']:>8,} "
              f"{r['ours_s']:>8.2f} {r['bound_s']:>9.2f} {r['ratio_vs_bound']:>6.2f}")
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (whole process, incl. the in-memory event table): {peak_rss_mb:.0f} MB")
    uniform, encoder = results[0], next(r for r in results if r["variant"] == "autoencoder")
    interests = next(r for r in results if r["variant"] == "multi_interest")
    print(f"users/s ({uniform['dim']}-d): uniform {uniform['users'] / uniform['ours_s']:,.0f}, autoencoder "
          f"{uniform['users'] / encoder['ours_s']:,.0f}, multi_interest {uniform['users'] / interests['ours_s']:,.0f}")
    head = results[0]
    print(json.dumps({
        "seconds": round(head["ours_s"], 3), "ratio_vs_bound": round(head["ratio_vs_bound"], 3),
        "peak_rss_mb": round(peak_rss_mb, 1), "bound_seconds": round(head["bound_s"], 3),
        "dim": head["dim"], "variant": head["variant"], "events": args.events, "users": head["users"],
        "items": args.items,
        "users_per_s_uniform": round(uniform["users"] / uniform["ours_s"], 1),
        "users_per_s_autoencoder": round(encoder["users"] / encoder["ours_s"], 1),
        "users_per_s_multi_interest": round(interests["users"] / interests["ours_s"], 1),
        "runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in results],
    }))


if __name__ == "__main__":
    main()
