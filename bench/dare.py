"""DARE: speed of the attention part with a narrower attention table, and of a whole training step.

The attention part ("search" in the DARE paper) is what the attention table feeds: the query/key
projections and softmax(Q K^T / sqrt(hs)) over the sequence, for every layer. Shared SASRec computes
it at width d_model from the representation stream; DARE at attn_dim from its own table. Two forms:
`all queries` (training: every position attends, a T x T score matrix per head) and `last query`
(serving: only the ranking position attends over the T keys, the DARE paper's search). Rows: shared
(d_model 64) and DARE at 64, 32 and 16, at sequence lengths 50 and 200, batch 256, 2 layers, 2 heads,
1 torch thread (the training default). Timings are medians of `--repeats` rounds; each round times
every model once, in turn, so load on a shared machine hits all rows alike. A second column times a
whole training step (forward + backward, full softmax over 1,682 items).
Quality is measured by `lte ablate --dare ...` (docs/ablation.md).

    .venv/bin/python bench/dare.py [--repeats 30]

The last line is JSON: attention_speedup_16_vs_64 (all queries), search_speedup_16_vs_64 (last query),
step_speedup_16_vs_64 (all at length 200), and the rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from training.model import SASRec, SASRecConfig  # noqa: E402

BATCH, N_ITEMS, LTE_DIM, D_MODEL, N_LAYERS, N_HEADS = 256, 1682, 256, 64, 2, 2


def round_robin_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each callable; every round calls each once, in turn, after one warm-up round."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def make_model(attn_dim: int | None, max_len: int) -> SASRec:
    torch.manual_seed(0)
    config = SASRecConfig(n_items=N_ITEMS, lte_dim=LTE_DIM, d_model=D_MODEL, n_layers=N_LAYERS, n_heads=N_HEADS,
                          max_len=max_len, dropout=0.0, integration="none", dare=attn_dim is not None,
                          attn_dim=attn_dim)
    return SASRec(config, torch.randn(N_ITEMS, LTE_DIM))


@torch.no_grad()
def attention_part(model: SASRec, items: torch.Tensor, last_query: bool):
    """Queries, keys and attention probabilities of every layer, from the stream the model uses for them
    (only the last position's query when last_query)."""
    L = items.size(1)
    positions = torch.arange(model.config.max_len - L, model.config.max_len)
    if model.config.dare:
        stream = torch.nn.functional.embedding(items, model.attention_table()) + model.attn_pos_emb(positions)
    else:
        stream = torch.nn.functional.embedding(items, model.item_table()) + model.pos_emb(positions)
    mask = torch.ones(L, L, dtype=torch.bool).tril()
    for block in model.blocks:
        attn = block.attn
        if model.config.dare:
            normed, weight, bias = block.ln_a(stream), attn.qk.weight, attn.qk.bias
        else:
            normed, weight, bias = block.ln_1(stream), attn.qkv.weight, attn.qkv.bias
        width = weight.size(1)  # q and k rows of the projection: [:width] and [width:2 * width]
        k = torch.nn.functional.linear(normed, weight[width:2 * width], bias[width:2 * width])
        queries = normed[:, -1:] if last_query else normed
        q = torch.nn.functional.linear(queries, weight[:width], bias[:width])
        B, T, _ = k.shape
        q = q.view(B, q.size(1), N_HEADS, -1).transpose(1, 2)
        k = k.view(B, T, N_HEADS, -1).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / q.size(-1) ** 0.5
        if not last_query:
            scores = scores.masked_fill(~mask, float("-inf"))
        scores.softmax(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    widths = [("shared", None), ("dare-64", 64), ("dare-32", 32), ("dare-16", 16)]
    rows = []
    print(f"attention part: batch {BATCH}, {N_LAYERS} layers, {N_HEADS} heads, 1 thread; median ms")
    print(f"{'model':<9} {'len':>4} {'all queries':>12} {'vs shared':>10} {'last query':>11} {'vs shared':>10} "
          f"{'train step':>11} {'vs shared':>10}")
    for max_len in (50, 200):
        g = torch.Generator().manual_seed(0)
        items = torch.randint(1, N_ITEMS + 1, (BATCH, max_len), generator=g)
        targets = torch.randint(1, N_ITEMS + 1, (BATCH, max_len), generator=g)
        models = {name: make_model(attn_dim, max_len) for name, attn_dim in widths}
        optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-3) for name, m in models.items()}

        def step(model, optimizer, x=items, y=targets):
            optimizer.zero_grad(set_to_none=True)
            model.loss(x, y).backward()
            optimizer.step()

        for m in models.values():
            m.eval()
        every = round_robin_medians({n: (lambda m=m, x=items: attention_part(m, x, False)) for n, m in models.items()},
                                    args.repeats)
        last = round_robin_medians({n: (lambda m=m, x=items: attention_part(m, x, True)) for n, m in models.items()},
                                   args.repeats)
        for m in models.values():
            m.train()
        steps = round_robin_medians({n: (lambda m=m, o=optimizers[n]: step(m, o)) for n, m in models.items()}, max(3, args.repeats // 5))
        for name, _ in widths:
            row = {"model": name, "max_len": max_len, "attention_ms": every[name] * 1e3,
                   "last_query_ms": last[name] * 1e3, "step_ms": steps[name] * 1e3,
                   "attention_vs_shared": every[name] / every["shared"],
                   "last_query_vs_shared": last[name] / last["shared"], "step_vs_shared": steps[name] / steps["shared"]}
            rows.append(row)
            print(f"{name:<9} {max_len:>4} {row['attention_ms']:>12.2f} {row['attention_vs_shared']:>9.2f}x "
                  f"{row['last_query_ms']:>11.2f} {row['last_query_vs_shared']:>9.2f}x "
                  f"{row['step_ms']:>11.1f} {row['step_vs_shared']:>9.2f}x")

    def pick(name: str, key: str) -> float:
        return next(r[key] for r in rows if r["model"] == name and r["max_len"] == 200)

    print(json.dumps({"attention_speedup_16_vs_64": round(pick("dare-64", "attention_ms") / pick("dare-16", "attention_ms"), 3),
                      "search_speedup_16_vs_64": round(pick("dare-64", "last_query_ms") / pick("dare-16", "last_query_ms"), 3),
                      "step_speedup_16_vs_64": round(pick("dare-64", "step_ms") / pick("dare-16", "step_ms"), 3),
                      "rows": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]}))


if __name__ == "__main__":
    main()
