"""Data-parallel training: `torchrun --nproc_per_node=2` (gloo, CPU) against one process on the same home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pipeline_env import QUICK  # the tiny shop and a small model: a fit takes about a second

from training.train import shard_order


@pytest.mark.parametrize("n", [1, 7, 8, 699])
def test_shard_order_gives_every_rank_the_same_count_and_covers_every_example(n):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    shards = [shard_order(order, rank, 2) for rank in range(2)]
    assert len(shards[0]) == len(shards[1]) == -(-n // 2)  # equal step counts: no rank waits forever
    together = torch.cat(shards)
    assert set(together.tolist()) == set(range(n))
    assert len(together) - n == n % 2  # at most one example repeated to even out the ranks


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    """An LTE home with the tiny shop ingested, a current hashing basis and LTE snapshots."""
    from lte import catalog, events
    from lte.basis import build_basis, get_encoder, publish_basis, set_current
    from lte.config import load_settings
    from lte.datasets.synthetic import generate
    from lte.db import connect
    from lte.feature_store import FeatureStore, backfill, snapshot_cadence_times
    from lte.storage import open_store

    home = tmp_path_factory.mktemp("ddp") / "home"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**QUICK, "LTE_HOME": str(home)}.items():
            patch.setenv(key, value)
        settings = load_settings()
    data = generate("tiny", seed=0)
    con = connect(settings.duckdb_path)
    try:
        events.ingest_frame(con, data.events, source="synthetic:tiny")
        catalog.upsert_items(con, data.items)
        items = catalog.load_items(con)
        basis = build_basis(items["item_id"].to_numpy(), items["text"].tolist(), get_encoder(settings.basis))
        artifacts = open_store(None, settings.artifacts_dir)
        publish_basis(artifacts, basis)
        set_current(artifacts, basis.hash)
        backfill(con, basis, snapshot_cadence_times(con, settings.lte), settings.lte, store=FeatureStore(con))
    finally:
        con.close()
    return home


def _run(command: list[str], home: Path) -> dict:
    env = {**os.environ, **QUICK, "LTE_HOME": str(home), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    if sys.platform.startswith("linux"):
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's pairs on loopback, not on whatever the hostname resolves to
    done = subprocess.run(command, env=env, cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, f"expected one JSON line (rank 0 only), got:\n{done.stdout}"
    return json.loads(lines[0])


@pytest.mark.slow
def test_two_rank_torchrun_matches_one_process(tiny_home, tmp_path):
    bin_dir = Path(sys.executable).parent
    single = _run([sys.executable, "-m", "training.train_ddp"], tiny_home)
    checkpoint = tmp_path / "ddp.pt"
    ddp = _run([str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "training.train_ddp",
                "--checkpoint", str(checkpoint)], tiny_home)

    assert single["world_size"] == 1 and ddp["world_size"] == 2
    assert ddp["train_examples"] == single["train_examples"]
    assert ddp["train_examples_per_rank"] == -(-single["train_examples"] // 2)  # the data was split
    assert ddp["replicas_identical"], "ranks ended with different weights: gradients were not all-reduced"
    assert ddp["test_users"] == single["test_users"]

    # Same metrics within noise. The two fits differ only in batch composition and dropout masks,
    # so their gap should be smaller than the sampling noise of the test set itself: each mean lies
    # inside the other's 95% bootstrap CI over users (about +-0.04 NDCG@10 for the tiny shop's ~76
    # users). Both must also beat popularity clearly, or agreeing would mean nothing.
    a, b = single["test"]["ndcg@10"], ddp["test"]["ndcg@10"]
    assert b["lo"] <= a["mean"] <= b["hi"] and a["lo"] <= b["mean"] <= a["hi"], (a, b)
    assert min(a["mean"], b["mean"]) > 2 * single["popularity_ndcg@10"]

    # Only rank 0 wrote the checkpoint, and it holds the model rank 0 evaluated.
    from training.train import load_checkpoint

    assert ddp["checkpoint"] == str(checkpoint)
    assert load_checkpoint(checkpoint).config.integration == ddp["integration"]
    assert not list(tmp_path.glob("*.tmp"))
