"""The frozen basis: hashing, immutability, append-only extension, compatibility, stores, CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from lte.basis import (
    Basis,
    BasisIntegrityError,
    BasisMismatchError,
    BasisNotFoundError,
    build_basis,
    compatible,
    compute_basis_hash,
    current_basis,
    current_hash,
    lineage,
    load_basis,
    load_manifest,
    publish_basis,
    require_compatible,
    sync_basis,
    verify_basis,
    verify_lineage,
)
from lte.encoders import HashingEncoder
from lte.storage import LocalStore, S3Store

WORDS = ["red", "navy", "wool", "silk", "boots", "scarf", "formal", "casual", "Kestrel", "Pike"]


class MemoryStore:
    """The ArtifactStore interface over a dict: fast enough for hypothesis to run many examples."""

    def __init__(self):
        self.blobs: dict[str, bytes] = {}

    def put_bytes(self, data: bytes, key: str) -> str:
        self.blobs[key] = bytes(data)
        return self.uri(key)

    def put_file(self, local_path: Path, key: str) -> str:
        return self.put_bytes(Path(local_path).read_bytes(), key)

    def get_bytes(self, key: str) -> bytes:
        return self.blobs[key]

    def get_file(self, key: str, local_path: Path) -> Path:
        Path(local_path).write_bytes(self.blobs[key])
        return Path(local_path)

    def exists(self, key: str) -> bool:
        return key in self.blobs

    def list(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self.blobs if k.startswith(prefix))

    def uri(self, key: str) -> str:
        return f"mem://{key}"


def catalog(ids, salt: str = "") -> pd.DataFrame:
    """Items with deterministic text made from their id (content only)."""
    ids = [int(i) for i in ids]
    texts = [
        f"{WORDS[i % 10]} {WORDS[(i // 10) % 10]} {WORDS[(i * 7) % 10]} {salt}{i}" for i in ids
    ]
    return pd.DataFrame(
        {"item_id": ids, "text": texts, "attributes": ["{}"] * len(ids), "first_seen": pd.NaT}
    )


def bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).view(np.uint32)


ENC = HashingEncoder(dim=32)


# --------------------------------------------------------------------------- freezing and loading


def test_freeze_load_roundtrip_on_local_store(tmp_path):
    store = LocalStore(tmp_path)
    items = catalog([5, 3, 9, 1])
    basis, action = sync_basis(items, ENC, store)
    assert action == "created" and basis.parent_hash is None
    assert basis.item_ids.tolist() == [1, 3, 5, 9]  # a fresh basis orders items by id
    assert basis.vectors.shape == (4, 32) and basis.vectors.dtype == np.float32
    assert basis.dim == 32 and basis.n_items == 4
    expected = ENC.encode(items.sort_values("item_id")["text"].tolist())
    assert np.array_equal(bits(basis.vectors), bits(expected))
    assert basis.hash == compute_basis_hash(
        ENC.identity.to_dict(), None, basis.item_ids, basis.vectors
    )

    loaded = load_basis(store, basis.hash)
    assert loaded.manifest == basis.manifest
    assert np.array_equal(bits(loaded.vectors), bits(basis.vectors))
    assert current_basis(store).hash == basis.hash
    assert sorted(p.name for p in (tmp_path / "basis" / basis.hash).iterdir()) == [
        "item_ids.npy",
        "manifest.json",
        "vectors.npy",
    ]
    with pytest.raises(ValueError):
        loaded.vectors[0, 0] = 1.0  # frozen in memory too


def test_rows_maps_ids_to_row_indices_and_minus_one_when_absent():
    basis = build_basis([30, 10, 20], ["a b", "c d", "e f"], ENC)
    assert basis.rows([10, 20, 30, 99, -5]).tolist() == [0, 1, 2, -1, -1]
    assert basis.rows(np.array([[30], [7]])).tolist() == [[2], [-1]]
    assert basis.rows([]).dtype == np.int64


def test_same_catalog_and_encoder_give_the_same_hash_in_another_process(tmp_path):
    items = catalog(range(40))
    items.to_json(tmp_path / "items.json", orient="records")
    mine, _ = sync_basis(items, ENC, LocalStore(tmp_path / "a"))
    script = (
        "import sys, pandas as pd\n"
        "from lte.basis import sync_basis\n"
        "from lte.encoders import HashingEncoder\n"
        "from lte.storage import LocalStore\n"
        "items = pd.read_json(sys.argv[1], orient='records')\n"
        "print(sync_basis(items, HashingEncoder(dim=32), LocalStore(sys.argv[2]))[0].hash)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "items.json"), str(tmp_path / "b")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == mine.hash
    # created_at differs between the two freezes and is deliberately outside the hash.
    assert (
        load_manifest(LocalStore(tmp_path / "b"), mine.hash).created_at != mine.manifest.created_at
    )


def test_publishing_a_published_basis_never_rewrites_it(tmp_path):
    store = LocalStore(tmp_path)
    first, _ = sync_basis(catalog([1, 2, 3]), ENC, store)
    files = {p: p.read_bytes() for p in (tmp_path / "basis" / first.hash).iterdir()}
    again = publish_basis(store, build_basis([1, 2, 3], catalog([1, 2, 3])["text"].tolist(), ENC))
    assert again.hash == first.hash and again.manifest.created_at == first.manifest.created_at
    assert {p: p.read_bytes() for p in files} == files


def test_empty_catalog_and_bad_frames_are_refused():
    store = MemoryStore()
    with pytest.raises(ValueError, match="catalog is empty"):
        sync_basis(catalog([]), ENC, store)
    with pytest.raises(ValueError, match="duplicate item_id"):
        sync_basis(catalog([1, 1]), ENC, store)
    missing_text = catalog([1, 2]).assign(text=["x", None])
    with pytest.raises(ValueError, match=r"items without text \(ids \[2\]\)"):
        sync_basis(missing_text, ENC, store)


# --------------------------------------------------------------------------- extension


ITEM_IDS = st.integers(min_value=0, max_value=10_000)


@hyp_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.lists(ITEM_IDS, min_size=1, max_size=12, unique=True),
    later=st.lists(st.lists(ITEM_IDS, max_size=12, unique=True), max_size=4),
    dropped=st.sets(ITEM_IDS, max_size=5),
)
def test_extension_keeps_parent_rows_bit_identical_and_chains_hashes(first, later, dropped):
    """The catalog grows in batches and loses `dropped` items after the first freeze."""
    store = MemoryStore()
    root, action = sync_basis(catalog(first), ENC, store)
    assert action == "created" and root.parent_hash is None
    seen, history = set(first), [root]
    for batch in later:
        seen |= set(batch)
        parent = history[-1]
        basis, action = sync_basis(catalog(sorted(seen - dropped)), ENC, store)
        new_ids = sorted(seen - dropped - set(parent.item_ids.tolist()))
        if not new_ids:
            assert action == "unchanged" and basis.hash == parent.hash
            continue
        assert action == "extended"
        n = parent.n_items
        # 1. parent rows bit-identical and in the same order; new rows appended by ascending id
        assert np.array_equal(basis.item_ids[:n], parent.item_ids)
        assert np.array_equal(bits(basis.vectors[:n]), bits(parent.vectors))
        assert basis.item_ids[n:].tolist() == new_ids
        # 2. hash chain: the child records its parent and its hash commits to it
        assert basis.parent_hash == parent.hash and basis.manifest.n_parent_items == n
        assert basis.hash == compute_basis_hash(
            basis.manifest.encoder, parent.hash, basis.item_ids, basis.vectors
        )
        assert basis.hash != compute_basis_hash(
            basis.manifest.encoder, None, basis.item_ids, basis.vectors
        )
        history.append(basis)
    head = current_basis(store)
    # 3. every item ever seen keeps a row, dropped ones included
    assert sorted(head.item_ids.tolist()) == sorted(set(first) | (seen - dropped) | set(first))
    assert [m.basis_hash for m in lineage(store)] == [b.hash for b in history]
    assert all(check.ok and check.rows_unchanged is not False for check in verify_lineage(store))
    assert all(compatible(older.manifest, head.manifest, store) for older in history)


def test_removed_items_keep_their_rows():
    store = MemoryStore()
    first, _ = sync_basis(catalog([1, 2, 3]), ENC, store)
    same, action = sync_basis(catalog([1, 3]), ENC, store)
    assert action == "unchanged" and same.hash == first.hash and same.rows([2]).tolist() == [1]
    grown, action = sync_basis(catalog([1, 3, 4]), ENC, store)
    assert action == "extended" and grown.item_ids.tolist() == [1, 2, 3, 4]


def test_changed_text_of_a_frozen_item_does_not_move_its_row():
    store = MemoryStore()
    first, _ = sync_basis(catalog([1, 2]), ENC, store)
    again, action = sync_basis(catalog([1, 2], salt="edited "), ENC, store)
    assert action == "unchanged" and np.array_equal(bits(again.vectors), bits(first.vectors))


def test_a_new_encoder_starts_a_new_family_and_switching_back_extends_the_old_one():
    store = MemoryStore()
    small, big = HashingEncoder(dim=16), HashingEncoder(dim=32)
    family_a, _ = sync_basis(catalog([1, 2]), small, store)
    family_b, action = sync_basis(catalog([1, 2, 3]), big, store)
    assert (
        action == "created"
        and family_b.parent_hash is None
        and current_hash(store) == family_b.hash
    )
    assert not compatible(family_a.manifest, family_b.manifest, store)
    back, action = sync_basis(catalog([1, 2, 3]), small, store)
    assert (
        action == "extended"
        and back.parent_hash == family_a.hash
        and current_hash(store) == back.hash
    )
    with pytest.raises(ValueError, match="new basis family"):
        build_basis([9], ["x"], big, parent=family_a)


# --------------------------------------------------------------------------- tamper detection


def _tampered_load(store, basis_hash, key, position_fraction, mask):
    raw = bytearray(store.blobs[key])
    raw[int(position_fraction * (len(raw) - 1))] ^= mask
    store.blobs[key] = bytes(raw)
    return load_basis(store, basis_hash)


@hyp_settings(max_examples=60, deadline=None)
@given(
    which=st.sampled_from(["vectors", "item_ids", "manifest"]),
    position_fraction=st.floats(min_value=0.0, max_value=1.0),
    mask=st.integers(min_value=1, max_value=255),
)
def test_flipping_any_bits_of_any_byte_is_refused(which, position_fraction, mask):
    store = MemoryStore()
    basis, _ = sync_basis(catalog(range(8)), ENC, store)
    key = {
        "vectors": basis.manifest.vectors_key,
        "item_ids": basis.manifest.item_ids_key,
        "manifest": basis.manifest.manifest_key,
    }[which]
    with pytest.raises(BasisIntegrityError) as info:
        _tampered_load(store, basis.hash, key, position_fraction, mask)
    message = str(info.value)
    assert basis.hash in message and f"mem://{key}" in message
    assert info.value.expected_hash == basis.hash


def test_refusal_names_the_file_and_both_hashes(tmp_path):
    store = LocalStore(tmp_path)
    basis, _ = sync_basis(catalog(range(20)), ENC, store)
    path = store.local_path(basis.manifest.vectors_key)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01  # one bit of one float
    path.write_bytes(bytes(raw))
    with pytest.raises(BasisIntegrityError) as info:
        load_basis(store, basis.hash)
    err = info.value
    assert err.found_hash is not None and err.found_hash != basis.hash
    assert str(path) in str(err) and basis.hash in str(err) and err.found_hash in str(err)
    check = verify_basis(store, basis.hash)
    assert not check.ok and "vectors.npy" in check.problems[0]


def test_truncated_file_is_refused(tmp_path):
    store = LocalStore(tmp_path)
    basis, _ = sync_basis(catalog(range(20)), ENC, store)
    path = store.local_path(basis.manifest.vectors_key)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(BasisIntegrityError, match="does not parse"):
        load_basis(store, basis.hash)
    with pytest.raises(BasisIntegrityError, match="vectors.npy"):
        current_basis(store)


def test_a_child_that_rewrote_parent_rows_fails_verification():
    """A forged child whose own hash is consistent but whose parent rows differ."""
    store = MemoryStore()
    parent, _ = sync_basis(catalog([1, 2]), ENC, store)
    honest = build_basis([3], ["new"], ENC, parent=parent)
    forged_vectors = honest.vectors.copy()
    forged_vectors[0] = -forged_vectors[0]
    forged_hash = compute_basis_hash(
        honest.manifest.encoder, parent.hash, honest.item_ids, forged_vectors
    )
    from dataclasses import replace

    from lte.basis import _npy_bytes, _sha256

    forged = Basis(
        vectors=forged_vectors,
        item_ids=honest.item_ids,
        manifest=replace(
            honest.manifest,
            basis_hash=forged_hash,
            vectors_key=f"basis/{forged_hash}/vectors.npy",
            item_ids_key=f"basis/{forged_hash}/item_ids.npy",
            vectors_sha256=_sha256(_npy_bytes(forged_vectors)),
        ),
    )
    publish_basis(store, forged)
    check = verify_basis(store, forged_hash)
    assert (
        not check.ok
        and check.rows_unchanged is False
        and "changes rows of parent" in check.problems[0]
    )


def test_unknown_hash_is_not_found():
    with pytest.raises(BasisNotFoundError, match="no basis deadbeef"):
        load_basis(MemoryStore(), "deadbeef")


# --------------------------------------------------------------------------- compatibility


def test_compatibility_is_same_or_descendant_with_the_same_encoder():
    store = MemoryStore()
    root, _ = sync_basis(catalog([1, 2]), ENC, store)
    child, _ = sync_basis(catalog([1, 2, 3]), ENC, store)
    grandchild, _ = sync_basis(catalog([1, 2, 3, 4]), ENC, store)
    sibling = publish_basis(store, build_basis([5], ["other"], ENC, parent=root))
    assert compatible(root.manifest, root.manifest, store)
    assert compatible(root.manifest, child.manifest, store)
    assert compatible(root, grandchild, store)  # Basis objects and hashes are accepted too
    assert compatible(root.hash, grandchild.hash, store)
    assert not compatible(
        child.manifest, root.manifest, store
    )  # a model knows items the root lacks
    assert not compatible(child.manifest, sibling.manifest, store)
    assert not compatible(sibling.manifest, grandchild.manifest, store)
    other_family, _ = sync_basis(catalog([1, 2]), HashingEncoder(dim=16), store)
    assert not compatible(root.manifest, other_family.manifest, store)

    require_compatible(root.manifest, grandchild.manifest, store)
    with pytest.raises(BasisMismatchError) as info:
        require_compatible(child.manifest, sibling.manifest, store)
    message = str(info.value)
    assert child.hash in message and sibling.hash in message and "Retrain" in message
    with pytest.raises(BasisMismatchError, match="different encoders"):
        require_compatible(root.manifest, other_family.manifest, store)


# --------------------------------------------------------------------------- S3 (moto server)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def moto_endpoint(monkeypatch, tmp_path):
    moto_server = Path(sys.executable).parent / "moto_server"
    if not moto_server.exists():
        pytest.skip(f"{moto_server} not installed (pip install 'moto[server]')")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    port = _free_port()
    log = (tmp_path / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(moto_server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto_server did not start; see {tmp_path / 'moto.log'}"
                    ) from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_s3_store_round_trip_and_tamper_detection(moto_endpoint):
    import boto3

    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket="lte-basis-test")
    store = S3Store("s3://lte-basis-test/run1/artifacts", endpoint_url=moto_endpoint)
    root, _ = sync_basis(catalog([1, 2, 3]), ENC, store)
    child, action = sync_basis(catalog([1, 2, 3, 4]), ENC, store)
    assert action == "extended"
    assert (
        store.uri(child.manifest.vectors_key)
        == f"s3://lte-basis-test/run1/artifacts/basis/{child.hash}/vectors.npy"
    )
    loaded = current_basis(store)
    assert loaded.hash == child.hash and np.array_equal(bits(loaded.vectors), bits(child.vectors))
    assert compatible(root.manifest, loaded.manifest, store)
    assert [m.basis_hash for m in lineage(store)] == [root.hash, child.hash]

    raw = bytearray(store.get_bytes(child.manifest.item_ids_key))
    raw[-1] ^= 0x10
    store.put_bytes(bytes(raw), child.manifest.item_ids_key)
    with pytest.raises(BasisIntegrityError) as info:
        load_basis(store, child.hash)
    assert store.uri(child.manifest.item_ids_key) in str(info.value)


# --------------------------------------------------------------------------- CLI


def test_cli_show_verify_lineage(settings):
    from typer.testing import CliRunner

    import lte.cli.basis  # noqa: F401  registers `lte basis ...`
    from lte.cli.app import app
    from lte.storage import open_store

    store = open_store(settings.storage.uri, settings.artifacts_dir)
    runner = CliRunner()
    assert runner.invoke(app, ["basis", "show"]).exit_code == 1  # nothing frozen yet

    root, _ = sync_basis(catalog([1, 2, 3]), ENC, store)
    child, _ = sync_basis(catalog([1, 2, 3, 4, 5]), ENC, store)

    shown = runner.invoke(app, ["basis", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["basis_hash"] == child.hash and info["parent_hash"] == root.hash and info["current"]
    assert np.load(info["vectors_path"]).shape == (5, 32)
    assert info["vectors_uri"].endswith(f"basis/{child.hash}/vectors.npy")

    lineage_out = runner.invoke(app, ["basis", "lineage", "--json"])
    assert [e["basis_hash"] for e in json.loads(lineage_out.stdout)["lineage"]] == [
        root.hash,
        child.hash,
    ]

    ok = runner.invoke(app, ["basis", "verify", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["checked"] == 2

    # Corrupt the *parent*: verifying the current basis walks its lineage and must catch it.
    root_vectors = store.local_path(root.manifest.vectors_key)
    raw = bytearray(root_vectors.read_bytes())
    raw[len(raw) // 2] ^= 0x80
    root_vectors.write_bytes(bytes(raw))
    bad = runner.invoke(app, ["basis", "verify"])
    assert bad.exit_code == 1 and "FAIL" in bad.stdout and root_vectors.name in bad.stdout
    bad_json = runner.invoke(app, ["basis", "verify", "--all", "--json"])
    assert bad_json.exit_code == 1 and json.loads(bad_json.stdout)["ok"] is False
