"""Sequences, splits, point-in-time LTE (no leakage), deterministic training, checkpoints, the pipeline call."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data import US_PER_DAY, _train_chunks, build_dataset
from training.evaluate import EvalResult
from training.train import fit_and_evaluate, load_checkpoint, train


@pytest.fixture
def pipeline(loaded_con, settings):
    """Events + items (tiny shop), a hashing basis, uniform LTE snapshots on the 30-day cadence."""
    from lte import catalog
    from lte.basis import build_basis
    from lte.encoders import get_encoder
    from lte.feature_store import FeatureStore, backfill, snapshot_cadence_times

    items = catalog.load_items(loaded_con)
    basis = build_basis(items["item_id"].to_numpy(), items["text"].tolist(), get_encoder(settings.basis))
    store = FeatureStore(loaded_con)
    backfill(loaded_con, basis, snapshot_cadence_times(loaded_con, settings.lte), settings.lte, store=store)
    return loaded_con, store, basis


def test_train_chunks_are_right_aligned_and_cover_every_target_once():
    user = np.array([1, 1, 1, 1, 1, 2, 2])
    token = np.array([11, 12, 13, 14, 15, 21, 22])
    t_us = np.arange(7) * 10
    items, targets, users, first = _train_chunks(user, token, t_us, max_len=2)
    # user 1: targets 12..15 in two chunks (newest chunk first); user 2: one target, left-padded.
    assert items.tolist() == [[13, 14], [11, 12], [0, 21]]
    assert targets.tolist() == [[14, 15], [12, 13], [0, 22]]
    assert users.tolist() == [1, 1, 2]
    assert first.tolist() == [20, 0, 50]  # time of the first INPUT item of each chunk


def test_temporal_split_bounds_and_lte_never_overlaps_the_sequence(pipeline, settings):
    con, store, basis = pipeline
    settings = settings.with_overrides(train={"train_days": None})  # all history: early chunks lack an LTE
    ds = build_dataset(con, store, basis, settings)
    t_val = np.datetime64(ds.cutoffs["t_val"][:19]).astype("datetime64[us]").astype(np.int64)
    t_test = np.datetime64(ds.cutoffs["t_test"][:19]).astype("datetime64[us]").astype(np.int64)
    assert (ds.val.target_us >= t_val).all() and (ds.val.target_us < t_test).all()
    assert (ds.test.target_us >= t_test).all()
    assert (ds.train.input_start_us < t_val).all()
    assert ds.train.items.shape[1] == settings.model.max_len and len(ds.val) > 0 and len(ds.test) > 0
    assert 0 < float(ds.train.lte_mask.float().mean()) < 1  # early chunks have no LTE yet, later ones do

    lag_us = settings.lte.lag_days * US_PER_DAY
    window_us = settings.lte.window_days * US_PER_DAY
    events = con.execute("SELECT user_id, item_id, epoch_us(ts) FROM events").fetchnumpy()
    ev_user, ev_item, ev_t = events["user_id"], events["item_id"], events["epoch_us(ts)"]
    for part in (ds.train, ds.val, ds.test):
        users, starts = part.user_ids.numpy(), part.input_start_us
        read = store.as_of(users, starts, "uniform", basis)
        snap = np.array([np.datetime64(s.replace(tzinfo=None), "us").astype(np.int64) if s else -1
                         for s in read.snapshot_as_of])
        # The snapshot was available when the first input item happened, and its window ended a lag earlier.
        assert (snap <= starts).all()
        # Brute force on a few examples: the LTE is the mean basis vector of the user's events in
        # [as_of - lag - window, as_of - lag), and every one of those events precedes the sequence.
        for i in np.flatnonzero(part.lte_mask.numpy())[:5]:
            in_window = (ev_user == users[i]) & (ev_t >= snap[i] - lag_us - window_us) & (ev_t < snap[i] - lag_us)
            assert (ev_t[in_window] < starts[i]).all()
            expected = basis.vectors[basis.rows(ev_item[in_window])].mean(0)
            np.testing.assert_allclose(part.lte[i].numpy(), expected, atol=1e-5)


def test_leave_one_out_holds_out_the_last_two_events(pipeline, settings):
    con, store, basis = pipeline
    ds = build_dataset(con, store, basis, settings.with_overrides(train={"split": "leave_one_out"}))
    last = con.execute(
        "SELECT user_id, arg_max(item_id, (ts, item_id, event_id)), count(*) FROM events GROUP BY user_id"
    ).fetchnumpy()
    rows = basis.rows(last[list(last)[1]]) + 1
    expected = dict(zip(last["user_id"].tolist(), rows.tolist(), strict=True))
    assert len(ds.test) == len(np.unique(ds.test.user_ids.numpy()))  # one test target per user
    for user, target in zip(ds.test.user_ids.tolist(), ds.test.targets.tolist(), strict=True):
        assert target == expected[user]
    # The validation target is the input's last item of the test example.
    val_by_user = dict(zip(ds.val.user_ids.tolist(), ds.val.targets.tolist(), strict=True))
    for user, items in zip(ds.test.user_ids.tolist(), ds.test.items.tolist(), strict=True):
        assert items[-1] == val_by_user[user]


def test_training_is_deterministic_and_checkpoint_round_trips(pipeline, settings, tmp_path):
    con, store, basis = pipeline
    ds = build_dataset(con, store, basis, settings)
    first = train(settings, ds, checkpoint_path=tmp_path / "a.pt", progress=False)
    second = train(settings, ds, checkpoint_path=tmp_path / "b.pt", progress=False)
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]
    assert first.history[0]["loss"] > first.history[-1]["loss"]  # it learns
    loaded = load_checkpoint(tmp_path / "a.pt", expect=first.config)
    sample = ds.test.items[:8], ds.test.lte[:8], ds.test.lte_mask[:8]
    assert torch.equal(loaded.score_all(*sample), first.model.score_all(*sample))
    other = first.config.__class__(**{**first.config.to_dict(), "d_model": 16})
    with pytest.raises(ValueError, match="was built for"):
        load_checkpoint(tmp_path / "a.pt", expect=other)


def test_fit_and_evaluate_returns_per_user_arrays_and_the_popularity_baseline(pipeline, settings):
    con, store, basis = pipeline
    result, evaluation = fit_and_evaluate(con, store, basis, settings, progress=False)
    assert isinstance(evaluation, EvalResult)
    assert result.config.integration == "prefix" and 1 <= result.best_epoch <= len(result.history)
    n_users = len(evaluation.user_ids)
    assert all(len(v) == n_users for v in evaluation.per_user.values())
    stat = evaluation.summary["ndcg@100"]
    assert 0 <= stat["lo"] <= stat["mean"] <= stat["hi"] <= 1
    assert evaluation.baseline is not None and evaluation.baseline.name == "popularity"
    assert np.array_equal(evaluation.baseline.user_ids, evaluation.user_ids)
    assert evaluation.attention_ratio is not None and evaluation.attention_ratio > 0


def test_ablation_table_on_the_tiny_shop(settings, tmp_path):
    from typer.testing import CliRunner

    import lte.cli.ablate  # noqa: F401  (registers the command)
    from lte.cli.app import app

    out = tmp_path / "ablation"
    run = CliRunner().invoke(app, ["ablate", "--dataset", "synthetic", "--size", "tiny", "--epochs", "1",
                                   "--out-dir", str(out), "--json"])
    assert run.exit_code == 0, run.output
    import json

    result = json.loads(run.output)
    cells = {(r["lte"], r["integration"]) for r in result["rows"]}
    assert cells == {("none", "none")} | {(v, i) for v in ("uniform", "recency", "autoencoder")
                                          for i in ("prefix", "late_fusion", "injection")}
    assert all(set(r["vs_none"]) == {"ndcg@10", "ndcg@100", "ndcg@500"} for r in result["rows"][1:])
    table = (out / "ablation-synthetic-tiny.md").read_text()
    assert "uniform | prefix" in table and "autoencoder | injection" in table
    assert "uniform | prefix" in table


def test_related_methods_are_settings_of_the_same_pipeline_call(pipeline, settings, tmp_path):
    """DARE and SLSRec selected by settings alone go through fit_and_evaluate and a checkpoint round trip."""
    con, store, basis = pipeline
    chosen = settings.with_overrides(model={"integration": "slsrec", "dare": True, "attn_dim": 8,
                                            "contrastive_weight": 0.3}, train={"epochs": 2})
    result, evaluation = fit_and_evaluate(con, store, basis, chosen, checkpoint_path=tmp_path / "m.pt", progress=False)
    config = result.config
    assert (config.integration, config.dare, config.attn_dim, config.contrastive_weight) == ("slsrec", True, 8, 0.3)
    assert all(row["contrastive"] > 0 for row in result.history)
    assert evaluation.summary["ndcg@100"]["mean"] > 0
    loaded = load_checkpoint(tmp_path / "m.pt", expect=config)
    ds = build_dataset(con, store, basis, chosen)
    sample = ds.test.items[:8], ds.test.lte[:8], ds.test.lte_mask[:8]
    assert torch.equal(loaded.score_all(*sample), result.model.score_all(*sample))
