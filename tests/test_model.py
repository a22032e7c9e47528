"""SASRec + LTE integrations: shapes, causality, padding, the "no LTE" token, attention weights."""

from __future__ import annotations

import pytest
import torch

from training.model import INTEGRATIONS, SASRec, SASRecConfig

N_ITEMS, LTE_DIM, MAX_LEN = 30, 8, 6


def make(integration: str, content: bool = True, seed: int = 0) -> SASRec:
    torch.manual_seed(seed)
    config = SASRecConfig(n_items=N_ITEMS, lte_dim=LTE_DIM, d_model=16, n_layers=2, n_heads=2, max_len=MAX_LEN,
                          dropout=0.1, integration=integration, content_items=content)
    return SASRec(config, torch.randn(N_ITEMS, LTE_DIM) if content else None).eval()


def batch(b: int = 4):
    g = torch.Generator().manual_seed(1)
    items = torch.randint(1, N_ITEMS + 1, (b, MAX_LEN), generator=g)
    items[0, :3] = 0  # a left-padded row
    return items, torch.randn(b, LTE_DIM, generator=g), torch.tensor([True, True, False, True][:b])


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_shapes_and_padding_index_never_ranked(integration):
    model = make(integration)
    items, lte, mask = batch()
    hidden, attention = model(items, lte, mask)
    assert hidden.shape == (4, MAX_LEN, 16) and attention is None
    scores = model.score_all(items, lte, mask)
    assert scores.shape == (4, N_ITEMS + 1)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    loss = model.train().loss(items, torch.roll(items, -1, dims=1), lte, mask)
    assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_causal_a_later_item_never_changes_earlier_positions(integration):
    model = make(integration)
    items, lte, mask = batch()
    changed = items.clone()
    changed[:, -1] = (changed[:, -1] % N_ITEMS) + 1
    before, _ = model(items, lte, mask)
    after, _ = model(changed, lte, mask)
    assert torch.allclose(before[:, :-1], after[:, :-1], atol=1e-6)
    assert not torch.allclose(before[:, -1], after[:, -1])


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_left_padding_is_invisible(integration):
    model = make(integration)
    short = torch.tensor([[5, 9, 2]])
    padded = torch.tensor([[0, 0, 0, 5, 9, 2]])
    lte, mask = torch.randn(1, LTE_DIM), torch.tensor([True])
    assert torch.allclose(model.score_all(short, lte, mask)[:, 1:], model.score_all(padded, lte, mask)[:, 1:],
                          atol=1e-5)


@pytest.mark.parametrize("integration", ["prefix", "late_fusion", "injection"])
def test_lte_is_used_and_no_lte_token_ignores_the_vector(integration):
    model = make(integration)
    items, lte, _ = batch()
    on, off = torch.ones(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)
    other = torch.randn_like(lte)
    assert not torch.allclose(model.score_all(items, lte, on)[:, 1:], model.score_all(items, other, on)[:, 1:])
    # Without an LTE the learned "no LTE" vector stands in, whatever the vector holds.
    assert torch.equal(model.score_all(items, lte, off), model.score_all(items, other, off))


def test_none_ignores_lte_entirely():
    model = make("none")
    items, lte, mask = batch()
    assert torch.equal(model.score_all(items, lte, mask), model.score_all(items, None, None))


def test_integrations_other_than_none_need_an_lte():
    with pytest.raises(ValueError, match="needs lte"):
        make("prefix")(batch()[0])
    with pytest.raises(ValueError, match="integration must be one of"):
        SASRecConfig(n_items=3, lte_dim=2, integration="concat")


def test_attention_weights_are_causal_distributions_and_prefix_is_visible():
    model = make("prefix")
    items, lte, mask = batch()
    weights = model.attention(items, lte, mask)
    assert len(weights) == 2
    w = weights[0]
    assert w.shape == (4, 2, MAX_LEN + 1, MAX_LEN + 1)
    assert torch.allclose(w.sum(-1), torch.ones(4, 2, MAX_LEN + 1), atol=1e-5)
    future = torch.ones(MAX_LEN + 1, MAX_LEN + 1, dtype=torch.bool).triu(1)
    assert (w[:, :, future] == 0).all()
    # Row 0 has 3 padded items (token indices 1..3): real queries give them no weight ...
    assert (w[0, :, 4:, 1:4] == 0).all()
    # ... and every real query puts some weight on the LTE prefix (index 0).
    assert (w[:, :, -1, 0] > 0).all()


def test_fused_and_explicit_attention_paths_agree():
    model = make("prefix")
    items, lte, mask = batch()
    fused, _ = model(items, lte, mask)
    explicit, _ = model(items, lte, mask, need_weights=True)
    assert torch.allclose(fused, explicit, atol=1e-5)


def test_content_items_tie_input_and_output_to_the_basis():
    model = make("none")
    table = model.item_table()
    assert table.shape == (N_ITEMS + 1, 16)
    assert torch.equal(table[0], torch.zeros(16))  # padding stays zero
    with pytest.raises(ValueError, match="item_content must be"):
        SASRec(SASRecConfig(n_items=N_ITEMS, lte_dim=LTE_DIM), torch.zeros(N_ITEMS - 1, LTE_DIM))


def test_overfits_a_tiny_batch():
    model = make("prefix").train()
    items, lte, mask = batch()
    targets = torch.roll(items, -1, dims=1)
    targets[:, -1] = 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = float(model.loss(items, targets, lte, mask))
    for _ in range(60):
        loss = model.loss(items, targets, lte, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < first / 3
