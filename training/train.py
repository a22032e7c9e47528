"""Seeded, deterministic CPU training of SASRec(+LTE) with early stopping on validation NDCG@10.

Choices made for 2-core CPUs:
- `torch.set_num_threads(settings.train.threads)`: one intra-op thread per core; more threads than
  cores only adds contention.
- Whole batches are sliced from pre-padded tensors (no DataLoader, no per-example Python, no
  collate); the loss computes logits only at positions that have a target.
- The model is selected on validation, never on test; test is evaluated once, at the end.

Data-parallel training (DDP): under `torchrun --nproc_per_node=N` (RANK/WORLD_SIZE in the
environment) `train` joins a gloo process group and wraps the model in DistributedDataParallel.
Every rank draws the same seeded permutation and takes every N-th example of it, with the per-rank
batch `ceil(batch_size / N)`, so each optimizer step sees about one single-process batch in total,
split across ranks. Validation is sharded and gathered, so every rank computes the same score and
takes the same early-stopping decision; only rank 0 writes the checkpoint. `python -m
training.train_ddp` is the entry point. Without those variables nothing changes: one process.

Checkpoints hold {"config": SASRecConfig dict, "state_dict": ...} and are read back with
`torch.load(weights_only=True)`, so loading never unpickles code.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from training.data import SequenceDataset, SequencePart, build_dataset
from training.evaluate import EvalResult, evaluate_model, metrics_from_ranks, model_ranks
from training.model import SASRec, SASRecConfig


@dataclass
class TrainResult:
    model: SASRec  # the best model (by validation NDCG@10), in eval mode
    config: SASRecConfig
    history: list[dict]  # one row per epoch: epoch, loss, val_ndcg@10, seconds, samples_per_s
    best_epoch: int
    seconds: float  # wall-clock of the whole fit
    checkpoint: Path | None = None

    @property
    def s_per_epoch(self) -> float:
        return float(np.mean([row["seconds"] for row in self.history]))

    def params(self) -> dict:
        return {**self.config.to_dict(), "best_epoch": self.best_epoch, "epochs_run": len(self.history),
                "seconds": round(self.seconds, 2), "s_per_epoch": round(self.s_per_epoch, 3)}


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel run; rank 0 of world 1 = a plain single process."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Distributed:
    """Join the torchrun process group (gloo: CPU tensors) when WORLD_SIZE > 1 is set; else one process.

    torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT for each worker. A group that is
    already initialised (by the caller) is reused as it is.
    """
    if dist.is_available() and dist.is_initialized():
        return Distributed(dist.get_rank(), dist.get_world_size())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    if "RANK" not in os.environ:
        raise RuntimeError("WORLD_SIZE > 1 but RANK is not set: start data-parallel training with torchrun")
    dist.init_process_group(backend="gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


def shard_order(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's examples of a permutation: every world_size-th one, starting at `rank`.

    The permutation is first padded with its own head to a multiple of world_size (as
    DistributedSampler does), so all ranks get the same count, run the same number of steps, and
    never wait for a rank that has no batch left (DDP's all-reduce would hang).
    """
    padded_len = -(-len(order) // world_size) * world_size
    padded = torch.cat([order, order[:padded_len - len(order)]])
    return padded[rank::world_size]


class _TrainingLoss(torch.nn.Module):
    """Routes `SASRec.loss` through `forward`, the call DDP hooks to synchronise gradients."""

    def __init__(self, model: SASRec):
        super().__init__()
        self.model = model

    def forward(self, items, targets, lte, lte_mask, terms_out=None) -> torch.Tensor:
        return self.model.loss(items, targets, lte, lte_mask, terms_out)


def model_config(settings, dataset: SequenceDataset, integration: str | None = None) -> SASRecConfig:
    m = settings.model
    return SASRecConfig(n_items=dataset.n_items, lte_dim=dataset.lte_dim, d_model=m.d_model, n_layers=m.n_layers,
                        n_heads=m.n_heads, max_len=dataset.max_len, dropout=m.dropout,
                        integration=integration or m.integration, lte_tokens=dataset.lte_tokens,
                        dare=m.dare, attn_dim=m.attn_dim, contrastive_weight=m.contrastive_weight,
                        contrastive_temperature=m.contrastive_temperature)


def save_checkpoint(model: SASRec, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, tmp)
    tmp.replace(path)  # atomic: a crash never leaves half a checkpoint
    return path


def load_checkpoint(path: Path, expect: SASRecConfig | None = None) -> SASRec:
    """Rebuild the model from a checkpoint; refuses one whose architecture differs from `expect`."""
    saved = torch.load(Path(path), weights_only=True)
    config = SASRecConfig(**saved["config"])
    if expect is not None and config != expect:
        raise ValueError(f"checkpoint {path} was built for {config}, not {expect}: retrain or load the matching config")
    model = SASRec(config)
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def _gathered_ranks(model: SASRec, part: SequencePart, ddp: Distributed) -> np.ndarray:
    """model_ranks over the whole part; under DDP each rank ranks one contiguous slice and all gather."""
    if not ddp.enabled:
        return model_ranks(model, part)
    bounds = np.linspace(0, len(part), ddp.world_size + 1).astype(int)
    lo, hi = bounds[ddp.rank], bounds[ddp.rank + 1]
    mine = model_ranks(model, SequencePart(part.items[lo:hi], part.targets[lo:hi], part.lte[lo:hi],
                                           part.lte_mask[lo:hi], part.user_ids[lo:hi], part.input_start_us[lo:hi]))
    slices: list = [None] * ddp.world_size
    dist.all_gather_object(slices, mine)
    return np.concatenate(slices)


def validation_ndcg10(model: SASRec, dataset: SequenceDataset, ddp: Distributed = Distributed()) -> float:
    """Mean over users of per-user mean NDCG@10 on the validation part (the selection criterion).

    Under DDP every rank returns the same value (computed from the same gathered ranks).
    """
    ranks = _gathered_ranks(model, dataset.val, ddp)
    users = dataset.val.user_ids.numpy()
    _, inverse, counts = np.unique(users, return_inverse=True, return_counts=True)
    return float((np.bincount(inverse, weights=metrics_from_ranks(ranks)["ndcg@10"]) / counts).mean())


def train(settings, dataset: SequenceDataset, integration: str | None = None,
          checkpoint_path: Path | None = None, progress: bool = True) -> TrainResult:
    """Fit one model; `integration` overrides settings.model.integration (for the ablation).

    Under torchrun (WORLD_SIZE > 1) this is one rank of a data-parallel fit: see the module docstring.
    Every rank returns the same best model; only rank 0's result carries the checkpoint path.
    """
    t = settings.train
    ddp = init_distributed()
    torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    config = model_config(settings, dataset, integration)
    if config.integration != "none" and dataset.variant is None:
        raise ValueError(f"integration {config.integration!r} needs a dataset built with an LTE variant")
    model = SASRec(config, torch.tensor(dataset.item_content))  # a copy: basis vectors are read-only
    step_loss, batch_size = model.loss, t.batch_size
    if ddp.enabled:
        torch.manual_seed(t.seed + ddp.rank)  # same initial weights above, different dropout masks per rank
        # The only buffer is the frozen item_content basis: identical on every rank, never re-broadcast.
        step_loss = torch.nn.parallel.DistributedDataParallel(_TrainingLoss(model), forward_sync_buffers=False)
        batch_size = -(-t.batch_size // ddp.world_size)
    checkpoint_path = checkpoint_path if ddp.is_main else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    order_rng = torch.Generator().manual_seed(t.seed)
    part = dataset.train
    if len(dataset.val) == 0:
        raise ValueError("the validation part is empty: increase train.val_days or use split=leave_one_out")

    history: list[dict] = []
    best_score, best_epoch, best_state, stale = -1.0, 0, None, 0
    started = time.perf_counter()
    for epoch in range(1, t.epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        order = torch.randperm(len(part), generator=order_rng)  # the same on every rank: same seed
        if ddp.enabled:
            order = shard_order(order, ddp.rank, ddp.world_size)
        batches = range(0, len(order), batch_size)
        bar = tqdm(batches, desc=f"{config.integration} epoch {epoch}", disable=not (progress and ddp.is_main),
                   leave=False, mininterval=1.0)
        loss_sum, n_targets, contrastive_sum, n_batches = 0.0, 0, 0.0, 0
        for start in bar:
            idx = order[start:start + batch_size]
            targets = part.targets[idx]
            terms: dict = {}
            loss = step_loss(part.items[idx], targets, part.lte[idx], part.lte_mask[idx], terms)
            contrastive_sum += terms.get("contrastive", 0.0)
            n_batches += 1
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            batch_targets = int((targets > 0).sum())
            loss_sum += loss.item() * batch_targets
            n_targets += batch_targets
            bar.set_postfix(loss=f"{loss_sum / n_targets:.3f}",
                            samples_s=f"{n_targets / (time.perf_counter() - epoch_start):.0f}", refresh=False)
        train_seconds = time.perf_counter() - epoch_start
        if ddp.enabled:  # loss and throughput of the whole step, all ranks together
            totals = torch.tensor([loss_sum, float(n_targets)], dtype=torch.float64)
            dist.all_reduce(totals)
            loss_sum, n_targets = float(totals[0]), int(totals[1])
        score = validation_ndcg10(model, dataset, ddp)
        history.append({"epoch": epoch, "loss": loss_sum / max(n_targets, 1), "val_ndcg@10": score,
                        "seconds": time.perf_counter() - epoch_start,
                        "samples_per_s": n_targets / train_seconds})
        if config.integration == "slsrec":  # mean InfoNCE per batch (this rank); "loss" includes weight x it
            history[-1]["contrastive"] = contrastive_sum / max(n_batches, 1)
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            if checkpoint_path is not None:
                save_checkpoint(model, checkpoint_path)
        else:
            stale += 1
            if stale >= t.patience:
                break
    if checkpoint_path is not None:
        model = load_checkpoint(checkpoint_path, expect=config)
    else:
        model.load_state_dict(best_state)
        model.eval()
    return TrainResult(model, config, history, best_epoch, time.perf_counter() - started, checkpoint_path)


def fit_and_evaluate(con, feature_store, basis, settings, checkpoint_path: Path | None = None,
                     progress: bool = True) -> tuple[TrainResult, EvalResult]:
    """The pipeline's one call: build sequences with point-in-time LTE, train, evaluate on test.

    The EvalResult holds per-user arrays (for the gate's paired bootstrap), the summary with CIs,
    the attention ratio and, as `.baseline`, the popularity scorer on the same test examples.
    """
    variant = None if settings.model.integration == "none" else settings.lte.variant
    dataset = build_dataset(con, feature_store, basis, settings, variant=variant)
    result = train(settings, dataset, checkpoint_path=checkpoint_path, progress=progress)
    evaluation = evaluate_model(result.model, dataset.test, dataset.item_counts, name=result.config.integration,
                                n_bootstrap=settings.gate.n_bootstrap, seed=settings.train.seed)
    return result, evaluation
