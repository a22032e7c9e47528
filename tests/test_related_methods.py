"""The related methods as options of SASRec: DARE (decoupled attention table), ENCODE's k interest
tokens as a multi-token prefix, SLSRec's gated long/short fusion with an InfoNCE term."""

from __future__ import annotations

import pytest
import torch

from training.model import INTEGRATIONS, SASRec, SASRecConfig

N_ITEMS, LTE_DIM, MAX_LEN, D = 30, 8, 6, 16


def make(integration: str = "prefix", seed: int = 0, **options) -> SASRec:
    torch.manual_seed(seed)
    config = SASRecConfig(n_items=N_ITEMS, lte_dim=LTE_DIM, d_model=D, n_layers=2, n_heads=2, max_len=MAX_LEN,
                          dropout=0.1, integration=integration, **options)
    return SASRec(config, torch.randn(N_ITEMS, LTE_DIM)).eval()


def batch(b: int = 4, k: int | None = None):
    g = torch.Generator().manual_seed(1)
    items = torch.randint(1, N_ITEMS + 1, (b, MAX_LEN), generator=g)
    items[0, :3] = 0  # a left-padded row
    if k is None:
        return items, torch.randn(b, LTE_DIM, generator=g), torch.tensor([True, True, False, True][:b])
    mask = torch.ones(b, k, dtype=torch.bool)
    mask[1, k - 1:] = False  # a user with fewer interests than k
    mask[2] = False  # a user without any LTE
    return items, torch.randn(b, k, LTE_DIM, generator=g), mask


# ---------------------------------------------------------------- DARE


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_dare_shapes_and_causality_for_every_integration(integration):
    model = make(integration, dare=True, attn_dim=8)
    items, lte, mask = batch()
    hidden, _ = model(items, lte, mask)
    assert hidden.shape == (4, MAX_LEN, D)
    changed = items.clone()
    changed[:, -1] = (changed[:, -1] % N_ITEMS) + 1
    again, _ = model(changed, lte, mask)
    torch.testing.assert_close(hidden[:, :-1], again[:, :-1])  # a later item never changes earlier positions
    assert not torch.allclose(hidden[:, -1], again[:, -1])


def test_dare_tables_are_separate_parameters_of_their_own_width():
    model = make(dare=True, attn_dim=8)
    assert model.attn_item_emb.weight.shape == (N_ITEMS + 1, 8)
    assert model.item_emb.weight.shape == (N_ITEMS + 1, D)
    assert model.attn_item_emb.weight.data_ptr() != model.item_emb.weight.data_ptr()
    names = {name for name, _ in model.named_parameters()}
    assert {"attn_item_emb.weight", "attn_content_proj.weight", "item_emb.weight", "content_proj.weight"} <= names
    with pytest.raises(ValueError, match="dare=True"):
        SASRecConfig(n_items=3, lte_dim=2, attn_dim=8)


def test_dare_attention_reads_only_the_attention_table():
    model = make(dare=True, attn_dim=8)
    items, lte, mask = batch()
    before = model.attention(items, lte, mask)
    with torch.no_grad():
        model.item_emb.weight.add_(torch.randn_like(model.item_emb.weight))  # the representation table
    after = model.attention(items, lte, mask)
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        model.attn_item_emb.weight.add_(torch.randn_like(model.attn_item_emb.weight))
    moved = model.attention(items, lte, mask)
    assert not torch.allclose(before[0], moved[0])


def test_dare_gradients_of_attention_scores_never_reach_the_representation_table():
    model = make(dare=True, attn_dim=8).train()
    model.emb_dropout.p = 0.0
    items, lte, mask = batch()
    _, attention, _ = model._encode(items, lte, mask, need_weights=True)
    (attention[0] * torch.randn_like(attention[0])).sum().backward()
    assert model.attn_item_emb.weight.grad is not None and model.attn_item_emb.weight.grad.abs().sum() > 0
    assert model.item_emb.weight.grad is None or model.item_emb.weight.grad.abs().sum() == 0
    model.zero_grad()
    model.loss(items, torch.roll(items, -1, dims=1), lte, mask).backward()  # the loss trains both tables
    assert model.item_emb.weight.grad.abs().sum() > 0 and model.attn_item_emb.weight.grad.abs().sum() > 0


def test_shared_attention_is_the_default_and_has_no_second_table():
    model = make()
    assert not hasattr(model, "attn_item_emb") and model.config.attention_width is None
    assert make(dare=True).config.attention_width == D


# ---------------------------------------------------------------- ENCODE: k interest tokens


def test_k_interest_tokens_become_k_prefix_tokens():
    model = make(lte_tokens=3)
    items, lte, mask = batch(k=3)
    hidden, _ = model(items, lte, mask)
    assert hidden.shape == (4, MAX_LEN, D)
    attention = model.attention(items, lte, mask)
    assert attention[0].shape == (4, 2, MAX_LEN + 3, MAX_LEN + 3)
    # user 1 has only 2 interests: no item query ever attends to the empty third slot
    assert attention[0][1, :, 3:, 2].abs().max() == 0
    # user 2 has none: slot 0 (the "no LTE" token) stays visible, the other two are hidden
    assert attention[0][2, :, 3:, 0].min() > 0 and attention[0][2, :, 3:, 1:3].abs().max() == 0


def test_an_empty_interest_slot_is_ignored_whatever_its_vector():
    model = make(lte_tokens=3)
    items, lte, mask = batch(k=3)
    noisy = lte.clone()
    noisy[1, 2] = 100.0  # masked slot
    noisy[2] = -7.0  # user without LTE
    torch.testing.assert_close(model.score_all(items, lte, mask), model.score_all(items, noisy, mask))
    changed = lte.clone()
    changed[0, 1] = torch.randn(LTE_DIM)  # a real interest of user 0
    assert not torch.allclose(model.score_all(items, lte, mask)[0], model.score_all(items, changed, mask)[0])


@pytest.mark.parametrize("integration", ["late_fusion", "injection", "slsrec"])
def test_other_integrations_read_the_mean_of_the_interest_tokens(integration):
    model = make(integration, lte_tokens=3)
    items, lte, mask = batch(k=3)
    assert model.score_all(items, lte, mask).shape == (4, N_ITEMS + 1)


def test_a_model_refuses_an_lte_with_the_wrong_number_of_vectors():
    items, lte, mask = batch(k=3)
    with pytest.raises(ValueError, match="3 LTE vector"):
        make(lte_tokens=3).score_all(items, lte[:, :2], mask[:, :2])


# ---------------------------------------------------------------- SLSRec


def test_slsrec_gate_is_a_weight_per_position_and_the_lte_matters():
    model = make("slsrec")
    items, lte, mask = batch()
    gate = model.long_term_gate(items, lte, mask)
    assert gate.shape == (4,) and ((gate > 0) & (gate < 1)).all()
    changed = lte.clone()
    changed[0] = torch.randn(LTE_DIM)
    assert not torch.allclose(model.score_all(items, lte, mask)[0], model.score_all(items, changed, mask)[0])


def test_slsrec_loss_adds_the_weighted_contrastive_term():
    items, lte, mask = batch()
    targets = torch.roll(items, -1, dims=1)
    model = make("slsrec", contrastive_weight=0.5)
    terms = model.loss_terms(items, targets, lte, mask)
    assert set(terms) == {"next_item", "contrastive"} and terms["contrastive"] > 0
    torch.testing.assert_close(model.loss(items, targets, lte, mask), terms["next_item"] + 0.5 * terms["contrastive"])
    # fewer than two users with an LTE: no in-batch negatives, no term
    none = torch.zeros_like(mask)
    none[0] = True
    assert model.loss_terms(items, targets, lte, none)["contrastive"] == 0


def planted_batch(n_users: int = 32, seed: int = 0):
    """Two item families; each user's long-term LTE is the content of one family (its stable taste),
    its recent items come from the other: long- and short-term interests are clearly different."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(4, LTE_DIM, generator=g)
    family = torch.arange(N_ITEMS) % 4
    content = centers[family] + 0.1 * torch.randn(N_ITEMS, LTE_DIM, generator=g)
    long_taste = torch.randint(0, 4, (n_users,), generator=g)
    short_taste = (long_taste + 1 + torch.randint(0, 3, (n_users,), generator=g)) % 4
    pools = [torch.nonzero(family == f).flatten() + 1 for f in range(4)]
    items = torch.stack([pools[int(f)][torch.randint(0, len(pools[int(f)]), (MAX_LEN,), generator=g)]
                         for f in short_taste])
    lte = centers[long_taste] + 0.05 * torch.randn(n_users, LTE_DIM, generator=g)
    return content, items, lte, torch.ones(n_users, dtype=torch.bool)


def train_planted(contrastive_weight: float, steps: int = 60):
    """(contrastive term before, after `steps` Adam steps, the model) on the planted batch."""
    content, items, lte, mask = planted_batch()
    torch.manual_seed(0)
    config = SASRecConfig(n_items=N_ITEMS, lte_dim=LTE_DIM, d_model=D, n_layers=1, n_heads=2, max_len=MAX_LEN,
                          dropout=0.0, integration="slsrec", contrastive_weight=contrastive_weight)
    model = SASRec(config, content).train()
    targets = torch.roll(items, -1, dims=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def contrastive() -> float:
        with torch.no_grad():
            return float(model.loss_terms(items, targets, lte, mask)["contrastive"])

    start = contrastive()
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss(items, targets, lte, mask).backward()
        optimizer.step()
    return start, contrastive(), model, (items, lte, mask)


def test_contrastive_loss_decreases_on_a_planted_dataset():
    start, end, model, (items, lte, mask) = train_planted(contrastive_weight=1.0)
    _, end_without, _, _ = train_planted(contrastive_weight=0.0)
    assert end < 0.7 * start, (start, end)
    assert end < 0.8 * end_without, (end, end_without)  # the decrease comes from the term, not the next-item loss
    # the separation is real: the short-term state is nearer its own recent items than the long-term taste
    model.eval()
    _, _, aux = model._encode(items, lte, mask)
    valid = (items > 0).float()[..., None]
    short_proxy = (torch.nn.functional.embedding(items, model.item_table()) * valid).sum(1) / valid.sum(1)
    long_proxy = model.content_proj(lte)
    short = aux["short"][:, -1]
    cos = torch.nn.functional.cosine_similarity
    assert (cos(short, short_proxy) > cos(short, long_proxy)).float().mean() > 0.9
