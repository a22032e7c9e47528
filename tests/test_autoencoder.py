"""The autoencoder LTE: fixed basis decoder, uniform at init, learns on planted data, versioned."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import torch

from lte import autoencoder as ae
from lte.basis import BasisMismatchError, build_basis, publish_basis
from lte.config import LteSettings
from lte.datasets.synthetic import generate
from lte.encoders import HashingEncoder

QUICK = ae.AutoencoderConfig(
    n_anchors=3, max_window_items=128, key_dim=16, epochs=3, batch_size=128, patience=2, threads=1
)


def _basis(data, dim=64, items=None):
    items = data.items if items is None else items
    return build_basis(items.item_id.to_numpy(), items.text.tolist(), HashingEncoder(dim=dim))


def _examples(data, basis, config, as_of_days=600, anchors_days=None):
    as_of = data.spec.start + timedelta(days=as_of_days)
    if anchors_days is None:
        horizon = timedelta(days=config.horizon_days)
        anchors = [as_of - horizon - k * timedelta(days=config.anchor_every_days) for k in range(config.n_anchors)]
    else:
        anchors = [data.spec.start + timedelta(days=d) for d in anchors_days]
    return ae.examples_from_frame(data.events, basis, as_of, anchors, LteSettings(), config)


@pytest.fixture(scope="module")
def tiny():
    data = generate("tiny", seed=0)
    basis = _basis(data)
    return data, basis, _examples(data, basis, QUICK)


def test_decoder_is_the_frozen_basis_and_never_trains(tiny):
    data, basis, examples = tiny
    model, history = ae.train_autoencoder(examples, basis, QUICK, seed=0)
    assert history.epochs, "training ran no epoch"
    parameter_names = {name for name, _ in model.named_parameters()}
    assert not any("basis" in name or "temperature" in name for name in parameter_names)
    basis_ptr = model.basis.data_ptr()
    assert all(p.data_ptr() != basis_ptr for p in model.parameters())
    # Bit-identical to the frozen basis after training (plus the zero padding row).
    assert torch.equal(model.basis[:-1], torch.from_numpy(np.array(basis.vectors)))
    assert torch.count_nonzero(model.basis[-1]) == 0
    assert float(model.temperature) == history.temperature
    assert "basis" not in model.state_dict()  # the decoder is the basis, never a saved weight
    # Something did train: the encoder moved away from its zero initialisation.
    assert float(model.mix.weight.abs().sum()) > 0


def test_untrained_encoder_is_the_uniform_average_in_basis_space(tiny):
    data, basis, examples = tiny
    model = ae.LteAutoencoder(basis.vectors, replace(QUICK, max_window_items=10_000), temperature=0.1)
    windows = examples.window_rows[:20] + [np.zeros(0, dtype=np.int64)]
    ages = examples.window_ages[:20] + [np.zeros(0, dtype=np.float32)]
    z = ae.encode_users(model, windows, ages, batch_size=7)
    assert z.shape == (21, basis.dim) and z.dtype == np.float32
    expected = np.stack([basis.vectors[w].mean(axis=0) for w in windows[:20]])
    np.testing.assert_allclose(z[:20], expected, atol=1e-6)
    assert not z[20].any(), "an empty window must give the zero vector"


def test_encode_users_batches_and_order_do_not_change_results(tiny):
    data, basis, examples = tiny
    model, _ = ae.train_autoencoder(examples, basis, replace(QUICK, epochs=1, use_recency=True), seed=0)
    windows, ages = examples.window_rows[:50], examples.window_ages[:50]
    whole = ae.encode_users(model, windows, ages, batch_size=4096)
    pieces = ae.encode_users(model, windows, ages, batch_size=5)
    np.testing.assert_allclose(whole, pieces, atol=1e-5)
    with pytest.raises(ValueError, match="recency"):
        ae.encode_users(model, windows)  # trained with recency: ages are required


def test_same_seed_same_weights(tiny):
    data, basis, examples = tiny
    first, _ = ae.train_autoencoder(examples, basis, QUICK, seed=3)
    second, _ = ae.train_autoencoder(examples, basis, QUICK, seed=3)
    other, _ = ae.train_autoencoder(examples, basis, QUICK, seed=4)
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_beats_uniform_on_held_out_users_of_planted_data():
    """Planted long-term facets: the fixed decoder ranks a held-out user's next-period items better
    from the autoencoder LTE than from the uniform average (likelihood and NDCG@100)."""
    data = generate("small", seed=0)
    basis = _basis(data, dim=64)
    config = replace(QUICK, epochs=5, n_anchors=2, max_window_items=64, batch_size=256, threads=2)
    users = np.unique(data.events.user_id)
    held_out = np.random.default_rng(1).permutation(users)[: len(users) // 4]
    train = _examples(data, basis, config)
    train = train.subset(np.flatnonzero(~np.isin(train.user_ids, held_out)))
    model, history = ae.train_autoencoder(train, basis, config, seed=0)
    # LTE times after the training cutoff, on users the encoder never saw.
    test = _examples(data, basis, config, as_of_days=700, anchors_days=[630, 660])
    test = test.subset(np.flatnonzero(np.isin(test.user_ids, held_out)))
    assert len(test) > 100
    report = ae.likelihood_report(model, test, k=100)
    assert report["nll_autoencoder"] < report["nll_uniform"] - 0.05, report
    assert report["ndcg@100_autoencoder"] > report["ndcg@100_uniform"], report
    assert history.epochs[history.best_epoch - 1]["val_nll"] < history.val_nll_uniform


def test_save_load_round_trip_and_basis_refusal(tiny, tmp_path):
    from lte.storage import LocalStore

    data, basis, examples = tiny
    model, _ = ae.train_autoencoder(examples, basis, replace(QUICK, epochs=1), seed=0)
    path = ae.save(model, tmp_path / "ae.pt")
    loaded = ae.load(path, basis)
    windows, ages = examples.window_rows[:30], examples.window_ages[:30]
    np.testing.assert_array_equal(ae.encode_users(model, windows, ages), ae.encode_users(loaded, windows, ages))
    assert loaded.basis_hash == basis.hash

    other_family = _basis(data, dim=32)  # another encoder: different dim and family
    with pytest.raises(BasisMismatchError) as refused:
        ae.load(path, other_family)
    assert basis.hash in str(refused.value) and other_family.hash in str(refused.value)
    relabelled = build_basis(  # same dim, same encoder, different texts: a different basis
        data.items.item_id.to_numpy(), [t + " x" for t in data.items.text], HashingEncoder(dim=64)
    )
    with pytest.raises(BasisMismatchError, match=relabelled.hash):
        ae.load(path, relabelled)

    # An extension (new items appended, same encoder) is accepted through lte.basis.compatible.
    store = LocalStore(tmp_path / "store")
    new_items = pd.DataFrame({"item_id": [10_001, 10_002], "text": ["red wool scarf", "grey cap"]})
    child = build_basis(new_items.item_id.to_numpy(), new_items.text.tolist(), HashingEncoder(dim=64), parent=basis)
    publish_basis(store, basis)
    publish_basis(store, child)
    with pytest.raises(BasisMismatchError):
        ae.load(path, child)  # without the store, lineage cannot be checked: refuse
    extended = ae.load(path, child, store=store)
    assert extended.n_items == basis.n_items + 2 and extended.basis_hash == basis.hash
    np.testing.assert_allclose(
        ae.encode_users(extended, windows, ages), ae.encode_users(model, windows, ages), atol=1e-6
    )
    publish_basis(store, relabelled)
    with pytest.raises(BasisMismatchError):
        ae.load(path, relabelled, store=store)  # same encoder, but not a descendant


def test_load_examples_reads_only_events_before_as_of(loaded_con, tiny_data, settings):
    from lte import events

    data, basis = tiny_data, _basis(tiny_data)
    as_of = data.spec.start + timedelta(days=500)
    lte_settings = settings.lte
    config = replace(QUICK, n_anchors=2, target="next_period")  # targets end right at as_of
    before = ae.load_examples(loaded_con, basis, as_of, lte_settings, config)
    assert len(before) > 0
    # Events at and after as_of (one exactly at the cutoff) must not change anything.
    users = before.user_ids[:10]
    future = pd.DataFrame({
        "user_id": np.repeat(users, 3),
        "item_id": np.tile([1, 2, 3], users.size),
        "ts": np.tile(pd.to_datetime([as_of, as_of + timedelta(seconds=1), as_of + timedelta(days=3)]), users.size),
    })
    events.ingest_frame(loaded_con, future, source="future")
    after = ae.load_examples(loaded_con, basis, as_of, lte_settings, config)
    assert np.array_equal(after.user_ids, before.user_ids)
    assert all(np.array_equal(a, b) for a, b in zip(after.target_rows, before.target_rows, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(after.window_rows, before.window_rows, strict=True))
    # The frame path applies the same cutoff to a frame that holds the future too.
    stored = loaded_con.execute("SELECT user_id, item_id, ts, event_id FROM events").df()
    horizon = timedelta(days=config.horizon_days)
    anchors = [as_of - horizon - k * timedelta(days=config.anchor_every_days) for k in range(2)]
    again = ae.examples_from_frame(stored, basis, as_of, anchors, lte_settings, config)
    assert np.array_equal(again.user_ids, before.user_ids)
    assert all(np.array_equal(a, b) for a, b in zip(again.target_rows, before.target_rows, strict=True))
    # Window = [t - lag - window, t - lag): every age (days before t) lies in [lag, lag + window).
    ages = np.concatenate(before.window_ages)
    assert ages.min() >= lte_settings.lag_days
    assert ages.max() < lte_settings.lag_days + lte_settings.window_days
    # load_windows at an anchor gives the same window rows as the examples for that anchor.
    at_first = [j for j in range(len(before)) if before.anchors[j] == anchors[0]][:5]
    windows = ae.load_windows(loaded_con, basis, anchors[0], lte_settings, users=before.user_ids[at_first])
    for k, j in enumerate(at_first):
        assert np.array_equal(windows.rows[k], before.window_rows[j])


def test_load_windows_keeps_requested_users_with_empty_windows(loaded_con, tiny_data, settings):
    basis = _basis(tiny_data)
    as_of = tiny_data.spec.start + timedelta(days=45)  # before most users' first lagged event
    windows = ae.load_windows(loaded_con, basis, as_of, settings.lte, users=[1, 2, 999_999])
    assert windows.user_ids.tolist() == [1, 2, 999_999]
    assert len(windows.rows[2]) == 0 and len(windows.ages_days[2]) == 0
    assert windows.window_end == as_of - timedelta(days=settings.lte.lag_days)
