"""Settings, artifact storage (local and S3) and the synthetic generator."""

from __future__ import annotations

import numpy as np
import pytest

from lte.config import Settings, load_settings
from lte.datasets.synthetic import generate
from lte.storage import LocalStore, S3Store, open_store


def test_settings_env_and_toml_precedence(tmp_path, monkeypatch):
    home = tmp_path / "h"
    home.mkdir()
    (home / "lte.toml").write_text("[lte]\nlag_days = 7\nwindow_days = 100\n[model]\nd_model = 48\n")
    monkeypatch.setenv("LTE_HOME", str(home))
    monkeypatch.setenv("LTE_MODEL__D_MODEL", "96")
    s = load_settings()
    assert s.home == home
    assert s.lte.lag_days == 7 and s.lte.window_days == 100  # from TOML
    assert s.model.d_model == 96  # env beats TOML
    assert load_settings(model={"d_model": 16}).model.d_model == 16  # code beats env


def test_settings_reject_unknown_fields(tmp_path):
    with pytest.raises(Exception, match="extra"):
        Settings(home=tmp_path, model={"d_modle": 3})


def test_with_overrides_keeps_other_fields(settings):
    changed = settings.with_overrides(model={"integration": "none"})
    assert changed.model.integration == "none"
    assert changed.model.d_model == settings.model.d_model
    assert settings.model.integration == "prefix"  # the original is untouched (frozen)


def test_local_store_roundtrip_and_escape(tmp_path):
    store = LocalStore(tmp_path / "a")
    store.put_bytes(b"abc", "x/y.bin")
    assert store.get_bytes("x/y.bin") == b"abc"
    assert store.exists("x/y.bin") and not store.exists("x/z.bin")
    assert store.list("x/") == ["x/y.bin"]
    with pytest.raises(FileNotFoundError):
        store.get_bytes("x/z.bin")
    store.delete("x/y.bin")
    store.delete("x/y.bin")  # idempotent
    assert store.list("x/") == []
    with pytest.raises(ValueError, match="escapes"):
        store.put_bytes(b"no", "../outside")


def test_s3_store_roundtrip(s3_bucket, tmp_path):
    endpoint, bucket = s3_bucket
    store = open_store(f"s3://{bucket}/prefix", tmp_path, endpoint_url=endpoint)
    assert isinstance(store, S3Store)
    store.put_bytes(b"hello", "basis/h1/manifest.json")
    local = tmp_path / "f.bin"
    local.write_bytes(b"\x00\x01")
    store.put_file(local, "basis/h1/vectors.npy")
    assert store.exists("basis/h1/manifest.json")
    assert not store.exists("basis/h2/manifest.json")
    assert store.list("basis/") == ["basis/h1/manifest.json", "basis/h1/vectors.npy"]
    assert store.get_file("basis/h1/vectors.npy", tmp_path / "g.bin").read_bytes() == b"\x00\x01"
    assert store.uri("k") == f"s3://{bucket}/prefix/k"
    with pytest.raises(FileNotFoundError, match="basis/h2"):  # a missing key reads like LocalStore's
        store.get_bytes("basis/h2/manifest.json")
    store.delete("basis/h1/vectors.npy")
    store.delete("basis/h1/vectors.npy")  # idempotent
    assert store.list("basis/") == ["basis/h1/manifest.json"]


def test_catalog_alone_equals_the_generated_catalog():
    from lte.datasets.synthetic import generate_items

    for size, seed in (("tiny", 3), ("small", 0)):
        assert generate_items(size, seed=seed).equals(generate(size, seed=seed).items)


def test_synthetic_is_deterministic_and_planted():
    a, b = generate("tiny", seed=3), generate("tiny", seed=3)
    assert a.events.equals(b.events) and a.items.equals(b.items)
    assert not generate("tiny", seed=4).events.equals(a.events)
    ev = a.events
    assert ev["ts"].is_monotonic_increasing is False  # sorted per user, not globally
    span_days = (ev["ts"].max() - ev["ts"].min()).days
    assert span_days > 600  # ~2 years of history
    # Planted taste: a user's top-3 brands cover far more of their events than for a random
    # user-event assignment with the same sizes (no taste).
    shuffled = ev.assign(user_id=np.random.default_rng(0).permutation(ev["user_id"].to_numpy()))
    assert _top3_share(ev, a.items) > _top3_share(shuffled, a.items) + 0.1


def _top3_share(events, items):
    brands = items.set_index("item_id")["text"].str.extract(r"brand (.*)$")[0]
    ev = events.assign(brand=brands.reindex(events["item_id"]).to_numpy())
    return ev.groupby("user_id")["brand"].agg(lambda s: s.value_counts(normalize=True).iloc[:3].sum()).median()


def _top_brands(events, items, k=3):
    brands = items.set_index("item_id")["text"].str.extract(r"brand (.*)$")[0]
    ev = events.assign(brand=brands.reindex(events["item_id"]).to_numpy())
    return ev.groupby("user_id")["brand"].agg(lambda s: set(s.value_counts().index[:k]))


def test_synthetic_shift_changes_taste_after_date():
    from datetime import UTC, datetime

    shift = datetime(2025, 1, 1, tzinfo=UTC)

    def stability(data):
        ev = data.events
        before = _top_brands(ev[ev["ts"] < shift], data.items)
        after = _top_brands(ev[ev["ts"] >= shift], data.items)
        users = before.index.intersection(after.index)
        return np.mean([len(before[u] & after[u]) / 3 for u in users])

    stable = stability(generate("small", seed=1))
    shifted = stability(generate("small", seed=1, shift_at=shift))
    assert shifted < stable - 0.2  # the planted shift breaks the long-term taste
