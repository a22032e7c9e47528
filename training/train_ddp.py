"""Train and test SASRec(+LTE) on the LTE home named by the environment, one process or data-parallel.

    torchrun --standalone --nproc_per_node=2 -m training.train_ddp     # 2 CPU ranks, gloo
    python -m training.train_ddp                                        # the same fit, one process

Settings come from the environment as everywhere else (LTE_HOME, LTE_TRAIN__EPOCHS, ...). The home
must already hold events, a current basis and LTE snapshots (`make demo` or the pipeline's assets).
Every rank reads the store read-only and builds the same sequences; `training.train.train` shards
the training examples. Rank 0 alone evaluates on test, writes the checkpoint (with --checkpoint)
and prints one JSON line: test metrics with bootstrap CIs, epochs, s/epoch, world size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch.distributed as dist


def _replicas_identical(model, ddp) -> bool:
    """Whether every rank ended with bit-identical weights: what DDP's gradient all-reduce promises."""
    import torch

    if not ddp.enabled:
        return True
    fingerprint = torch.cat([p.detach().flatten().double() for p in model.state_dict().values()])
    fingerprints: list = [None] * ddp.world_size
    dist.all_gather_object(fingerprints, fingerprint)
    return all(torch.equal(fingerprints[0], other) for other in fingerprints[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train_ddp", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="where rank 0 writes the best model")
    parser.add_argument("--progress", action="store_true", help="show the per-epoch progress bar (rank 0)")
    args = parser.parse_args(argv)

    from lte.basis import current_basis
    from lte.config import load_settings
    from lte.db import connect
    from lte.feature_store import FeatureStore
    from lte.storage import open_store
    from training.data import build_dataset
    from training.evaluate import evaluate_model
    from training.train import init_distributed, train

    settings = load_settings()
    ddp = init_distributed()
    basis = current_basis(open_store(settings.storage.uri, settings.artifacts_dir, settings.storage.s3_endpoint_url))
    if basis is None:
        raise SystemExit(f"no current basis under {settings.home}: materialise content_basis and "
                         "lte_snapshots first (make demo)")
    variant = None if settings.model.integration == "none" else settings.lte.variant
    con = connect(settings.duckdb_path, read_only=True)  # every rank reads; DuckDB allows many readers
    try:
        dataset = build_dataset(con, FeatureStore(con), basis, settings, variant=variant)
    finally:
        con.close()
    try:
        result = train(settings, dataset, checkpoint_path=args.checkpoint, progress=args.progress)
        replicas_identical = _replicas_identical(result.model, ddp)
        if ddp.is_main:
            evaluation = evaluate_model(result.model, dataset.test, dataset.item_counts,
                                        name=result.config.integration, n_bootstrap=settings.gate.n_bootstrap,
                                        seed=settings.train.seed)
            metrics = {m: evaluation.summary[m] for m in ("ndcg@10", "ndcg@100", "recall@10", "mrr")}
            print(json.dumps({
                "world_size": ddp.world_size, "replicas_identical": replicas_identical,
                "integration": result.config.integration, "train_examples": len(dataset.train),
                "train_examples_per_rank": -(-len(dataset.train) // ddp.world_size),
                "test_users": evaluation.summary["n_users"],
                "best_epoch": result.best_epoch, "epochs_run": len(result.history),
                "s_per_epoch": round(result.s_per_epoch, 3), "seconds": round(result.seconds, 2),
                "val_ndcg@10": [round(h["val_ndcg@10"], 5) for h in result.history],
                "test": metrics, "popularity_ndcg@10": evaluation.baseline.mean("ndcg@10"),
                "checkpoint": str(result.checkpoint) if result.checkpoint else None,
            }), flush=True)
    finally:
        if ddp.enabled:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
