"""The frozen content basis: one float32 row per catalog item, written once, verified on every load.

Why it exists: an LTE is an average of basis rows, so an LTE computed today is only comparable with
the LTEs an older model was trained on if the rows those LTEs used have not moved. Hence:

1. Freezing. A basis is `vectors (n, dim) float32` + `item_ids (n,) int64` + a manifest. Its
   `basis_hash` is sha256 over (format, encoder identity, parent hash, n, dim), the item ids
   (little-endian int64) and the vector bytes (little-endian float32, row-major). The parent hash is
   included so that the hash commits to the whole lineage (a hash chain): two bases with equal rows
   but different parents are different bases. created_at is deliberately *not* hashed, so the same
   catalog frozen twice with the same encoder gives the same hash.
2. Immutability. Files live under content-addressed keys `basis/<hash>/{vectors.npy,item_ids.npy,
   manifest.json}`, the manifest written last (its presence marks the basis complete). A published
   basis is never rewritten; publishing the same hash again is a no-op. `load_basis` re-checks the
   manifest's own digest, each file's sha256 and the basis hash, and refuses anything that differs,
   naming the file and both hashes.
3. Extension, never rebuild. New catalog items produce a child basis: the parent's rows first,
   bit-identical and in the same order, then one row per new item by ascending item_id; the child
   records `parent_hash` and `n_parent_items`. Items that leave the catalog keep their rows forever.
4. Compatibility. A model trained on basis M can be served LTEs built on basis S iff S == M or S
   descends from M with the same encoder identity: every item M knows keeps its row index and
   vector in S. A new encoder starts a new family, incompatible with every older model.

The only mutable object is the pointer `basis/CURRENT.json` (the basis the pipeline uses now),
replaced atomically. One writer at a time (the `content_basis` asset) is assumed.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

from lte.encoders import Encoder, EncoderIdentity, HashingEncoder, MiniLMEncoder, get_encoder
from lte.storage import ArtifactStore

__all__ = [
    "Basis",
    "BasisCheck",
    "BasisError",
    "BasisIntegrityError",
    "BasisManifest",
    "BasisMismatchError",
    "BasisNotFoundError",
    "Encoder",
    "EncoderIdentity",
    "HashingEncoder",
    "MiniLMEncoder",
    "build_basis",
    "compatible",
    "compute_basis_hash",
    "current_basis",
    "current_hash",
    "get_encoder",
    "is_descendant",
    "lineage",
    "list_bases",
    "load_basis",
    "load_manifest",
    "publish_basis",
    "require_compatible",
    "set_current",
    "sync_basis",
    "verify_basis",
    "verify_lineage",
]

FORMAT = "lte-basis/1"
ITEM_ORDER = "parent rows first (unchanged), then new items by ascending item_id"
CURRENT_KEY = "basis/CURRENT.json"
SyncAction = Literal["created", "extended", "unchanged"]


# --------------------------------------------------------------------------- errors


class BasisError(Exception):
    """Base class for every basis failure."""


class BasisNotFoundError(BasisError):
    pass


class BasisIntegrityError(BasisError):
    """A stored basis does not match its hash: tampered, truncated or half-written."""

    def __init__(self, message: str, *, location: str, expected_hash: str, found_hash: str | None):
        super().__init__(message)
        self.location = location
        self.expected_hash = expected_hash
        self.found_hash = found_hash


class BasisMismatchError(BasisError):
    """LTEs on `serving_hash` cannot feed a model trained on `model_hash`."""

    def __init__(self, model_hash: str, serving_hash: str, reason: str = ""):
        self.model_hash = model_hash
        self.serving_hash = serving_hash
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"basis mismatch: the model was trained on basis {model_hash} but the serving basis is "
            f"{serving_hash}, which is neither that basis nor an extension of it with the same "
            f"encoder{why}. Retrain the model on basis {serving_hash}, or serve LTEs computed on "
            f"basis {model_hash}; `lte basis lineage` shows which bases extend which."
        )


# --------------------------------------------------------------------------- manifest


def _canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class BasisManifest:
    """Everything known about one frozen basis. Rows are in `item_order`; rows [0, n_parent_items)
    are the parent's, bit-identical. `created_at` is ISO-8601 UTC and is not part of the hash."""

    basis_hash: str
    parent_hash: str | None
    encoder: dict[str, Any]  # EncoderIdentity.to_dict()
    dim: int
    n_items: int
    n_parent_items: int
    item_order: str
    created_at: str
    vectors_key: str
    item_ids_key: str
    vectors_sha256: str  # of the stored .npy file bytes (header included)
    item_ids_sha256: str
    format: str = FORMAT

    @property
    def encoder_identity(self) -> EncoderIdentity:
        return EncoderIdentity.from_dict(self.encoder)

    @property
    def manifest_key(self) -> str:
        return manifest_key(self.basis_hash)

    def digest(self) -> str:
        """sha256 of the canonical JSON of every field: catches edits the basis hash does not cover."""
        return _sha256(_canonical_json(asdict(self)).encode())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "manifest_sha256": self.digest()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BasisManifest:
        """Strict: unknown or missing fields raise ValueError; `manifest_sha256` is checked if present."""
        data = dict(data)
        stated_digest = data.pop("manifest_sha256", None)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(n for n in names - set(data) if n != "format")
        if unknown or missing:
            raise ValueError(f"basis manifest fields: unknown {unknown}, missing {missing}")
        manifest = cls(**data)
        if stated_digest is not None and stated_digest != manifest.digest():
            raise ValueError(
                f"manifest digest mismatch: stated {stated_digest}, computed {manifest.digest()}"
            )
        return manifest


def _basis_dir(basis_hash: str) -> str:
    return f"basis/{basis_hash}"


def manifest_key(basis_hash: str) -> str:
    return f"{_basis_dir(basis_hash)}/manifest.json"


# --------------------------------------------------------------------------- the basis


def compute_basis_hash(
    encoder: dict[str, Any], parent_hash: str | None, item_ids: np.ndarray, vectors: np.ndarray
) -> str:
    """sha256 over format, encoder identity, parent hash and shape, then item ids and vector bytes."""
    n, dim = vectors.shape
    header = _canonical_json(
        {"format": FORMAT, "encoder": encoder, "parent_hash": parent_hash, "n_items": n, "dim": dim}
    )
    digest = hashlib.sha256(header.encode())
    digest.update(b"\0")
    digest.update(np.ascontiguousarray(item_ids, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class Basis:
    """A frozen basis in memory. Arrays are read-only; row r holds the vector of item_ids[r]."""

    vectors: np.ndarray  # (n, dim) float32
    item_ids: np.ndarray  # (n,) int64, unique
    manifest: BasisManifest

    def __post_init__(self) -> None:
        vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        item_ids = np.ascontiguousarray(self.item_ids, dtype=np.int64)
        if vectors.ndim != 2 or item_ids.shape != (vectors.shape[0],):
            raise ValueError(
                f"basis shapes disagree: vectors {vectors.shape}, item_ids {item_ids.shape}"
            )
        if vectors.shape != (self.manifest.n_items, self.manifest.dim):
            raise ValueError(
                f"basis arrays are {vectors.shape} but the manifest says "
                f"({self.manifest.n_items}, {self.manifest.dim})"
            )
        if vectors is self.vectors:  # do not freeze an array the caller still holds writable
            vectors = vectors.copy()
        if item_ids is self.item_ids:
            item_ids = item_ids.copy()
        vectors.setflags(write=False)
        item_ids.setflags(write=False)
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "item_ids", item_ids)

    @property
    def hash(self) -> str:
        return self.manifest.basis_hash

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def n_items(self) -> int:
        return self.manifest.n_items

    @property
    def parent_hash(self) -> str | None:
        return self.manifest.parent_hash

    @cached_property
    def _lookup(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.item_ids, kind="stable")
        return self.item_ids[order], order.astype(np.int64)

    def rows(self, item_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row index of each item id (int64, same shape as the input); -1 where the basis lacks it."""
        query = np.asarray(item_ids, dtype=np.int64)
        sorted_ids, order = self._lookup
        if sorted_ids.size == 0:
            return np.full(query.shape, -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(sorted_ids, query), 0, sorted_ids.size - 1)
        return np.where(sorted_ids[pos] == query, order[pos], -1).astype(np.int64)


def _check_encoded(vectors: np.ndarray, n: int, identity: EncoderIdentity) -> np.ndarray:
    vectors = np.asarray(vectors)
    if vectors.shape != (n, identity.dim):
        raise ValueError(
            f"encoder {identity.label()} returned {vectors.shape}, expected ({n}, {identity.dim})"
        )
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise ValueError(
            f"encoder {identity.label()} returned non-finite values; refusing to freeze them"
        )
    return vectors


def build_basis(
    item_ids: Sequence[int] | np.ndarray,
    texts: Sequence[str],
    encoder: Encoder,
    parent: Basis | None = None,
    created_at: datetime | None = None,
) -> Basis:
    """A new in-memory basis (nothing written). Without `parent`: rows for `item_ids` in ascending
    id order. With `parent`: the parent's rows copied unchanged, then rows for `item_ids` (which
    must all be new) in ascending id order. The encoder must match the parent's identity."""
    ids = np.asarray(item_ids, dtype=np.int64)
    texts = list(texts)
    if ids.ndim != 1 or len(texts) != ids.size:
        raise ValueError(f"need one text per item id: {ids.size} ids, {len(texts)} texts")
    if np.unique(ids).size != ids.size:
        raise ValueError("item ids must be unique")
    identity = encoder.identity
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    texts = [texts[i] for i in order]
    new_vectors = _check_encoded(encoder.encode(texts), ids.size, identity)

    if parent is None:
        all_ids, all_vectors, parent_hash, n_parent = ids, new_vectors, None, 0
    else:
        if parent.manifest.encoder != identity.to_dict():
            raise ValueError(
                f"cannot extend basis {parent.hash} (encoder {parent.manifest.encoder_identity.label()}) "
                f"with encoder {identity.label()}: a new encoder starts a new basis family"
            )
        clash = ids[parent.rows(ids) >= 0]
        if clash.size:
            raise ValueError(f"items already in basis {parent.hash}: {clash[:10].tolist()}")
        all_ids = np.concatenate([parent.item_ids, ids])
        all_vectors = np.concatenate([parent.vectors, new_vectors], axis=0)
        parent_hash, n_parent = parent.hash, parent.n_items

    encoder_dict = identity.to_dict()
    basis_hash = compute_basis_hash(encoder_dict, parent_hash, all_ids, all_vectors)
    vectors_bytes, ids_bytes = _npy_bytes(all_vectors), _npy_bytes(all_ids)
    manifest = BasisManifest(
        basis_hash=basis_hash,
        parent_hash=parent_hash,
        encoder=encoder_dict,
        dim=identity.dim,
        n_items=int(all_ids.size),
        n_parent_items=int(n_parent),
        item_order=ITEM_ORDER,
        created_at=(created_at or datetime.now(UTC)).isoformat(),
        vectors_key=f"{_basis_dir(basis_hash)}/vectors.npy",
        item_ids_key=f"{_basis_dir(basis_hash)}/item_ids.npy",
        vectors_sha256=_sha256(vectors_bytes),
        item_ids_sha256=_sha256(ids_bytes),
    )
    return Basis(vectors=all_vectors, item_ids=all_ids, manifest=manifest)


# --------------------------------------------------------------------------- storage


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def publish_basis(store: ArtifactStore, basis: Basis) -> Basis:
    """Write `basis` under its content-addressed keys; returns the basis as stored.

    If that hash is already published it is verified and returned unchanged (the stored
    created_at wins): a published basis is never rewritten."""
    if store.exists(manifest_key(basis.hash)):
        return load_basis(store, basis.hash)
    manifest = basis.manifest
    store.put_bytes(_npy_bytes(basis.vectors), manifest.vectors_key)
    store.put_bytes(_npy_bytes(basis.item_ids), manifest.item_ids_key)
    store.put_bytes(manifest.to_json().encode(), manifest.manifest_key)  # last: marks it complete
    return basis


def _integrity_error(
    store: ArtifactStore, key: str, expected_hash: str, found_hash: str | None, what: str
) -> BasisIntegrityError:
    found = found_hash if found_hash is not None else "none (the files do not parse)"
    return BasisIntegrityError(
        f"basis {expected_hash} is corrupt and was refused: {store.uri(key)} {what}. "
        f"Expected basis hash {expected_hash}, found {found}. A published basis must never change: "
        f"restore the file from a backup or a copy of the store, or rebuild from the catalog under a "
        f"new hash (models trained on {expected_hash[:12]} then need retraining).",
        location=store.uri(key),
        expected_hash=expected_hash,
        found_hash=found_hash,
    )


def load_manifest(store: ArtifactStore, basis_hash: str) -> BasisManifest:
    """The manifest of `basis_hash`, checked byte for byte against its own digest (vectors not read)."""
    key = manifest_key(basis_hash)
    if not store.exists(key):
        raise BasisNotFoundError(
            f"no basis {basis_hash} in {store.uri('basis/')}; `lte basis lineage` lists the stored "
            "bases, and the content_basis asset creates one from the catalog"
        )
    raw = store.get_bytes(key)
    try:
        manifest = BasisManifest.from_dict(json.loads(raw.decode("utf-8")))
    except (UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise _integrity_error(
            store, key, basis_hash, None, f"is not a valid manifest ({exc})"
        ) from exc
    if raw != manifest.to_json().encode():
        raise _integrity_error(
            store, key, basis_hash, None, "differs from its canonical form (edited?)"
        )
    if manifest.basis_hash != basis_hash:
        raise _integrity_error(
            store, key, basis_hash, manifest.basis_hash, "names a different basis hash"
        )
    return manifest


def _read_array(
    store: ArtifactStore, key: str, stated_sha: str, dtype: str, shape: tuple[int, ...]
) -> tuple[np.ndarray | None, str | None]:
    """(array, None) when the file matches its recorded checksum, dtype and shape; else
    (array or None if it does not parse, what is wrong)."""
    if not store.exists(key):
        return None, "is missing"
    raw = store.get_bytes(key)
    try:
        with warnings.catch_warnings():  # a damaged header can also trip literal_eval's warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            array = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - a damaged .npy header fails in many ways (ValueError,
        # tokenize.TokenError, SyntaxError, EOFError); each is reported below as a refused file.
        array, parse_error = None, f"; it does not parse ({type(exc).__name__}: {exc}), truncated?"
    else:
        parse_error = ""
    file_sha = _sha256(raw)
    if file_sha != stated_sha:
        return (
            array,
            f"has sha256 {file_sha} ({len(raw)} bytes), the manifest records {stated_sha}{parse_error}",
        )
    if array is None or array.dtype != np.dtype(dtype) or array.shape != shape:
        held = "nothing readable" if array is None else f"{array.dtype}{array.shape}"
        return None, f"holds {held}, expected {dtype}{shape}"
    return array, None


def load_basis(store: ArtifactStore, basis_hash: str) -> Basis:
    """The basis `basis_hash`, fully verified: manifest digest, file checksums, recomputed hash.

    Raises BasisNotFoundError if absent and BasisIntegrityError (naming the file, the expected
    basis hash and the one its current bytes give) on any mismatch."""
    manifest = load_manifest(store, basis_hash)
    n, dim = manifest.n_items, manifest.dim
    item_ids, ids_problem = _read_array(
        store, manifest.item_ids_key, manifest.item_ids_sha256, "<i8", (n,)
    )
    vectors, vec_problem = _read_array(
        store, manifest.vectors_key, manifest.vectors_sha256, "<f4", (n, dim)
    )
    recomputed = None
    if item_ids is not None and vectors is not None and item_ids.shape == (vectors.shape[0],):
        recomputed = compute_basis_hash(manifest.encoder, manifest.parent_hash, item_ids, vectors)
    for key, problem in ((manifest.vectors_key, vec_problem), (manifest.item_ids_key, ids_problem)):
        if problem is not None:
            raise _integrity_error(store, key, basis_hash, recomputed, problem)
    if recomputed != basis_hash:
        raise _integrity_error(
            store,
            manifest.vectors_key,
            basis_hash,
            recomputed,
            "together with its item ids and manifest hashes to a different basis",
        )
    return Basis(vectors=vectors, item_ids=item_ids, manifest=manifest)


def set_current(store: ArtifactStore, basis_hash: str) -> None:
    """Point `basis/CURRENT.json` at a published basis (atomic replace)."""
    load_manifest(store, basis_hash)
    pointer = {"basis_hash": basis_hash, "updated_at": datetime.now(UTC).isoformat()}
    store.put_bytes((json.dumps(pointer, indent=2) + "\n").encode(), CURRENT_KEY)


def current_hash(store: ArtifactStore) -> str | None:
    if not store.exists(CURRENT_KEY):
        return None
    try:
        return str(json.loads(store.get_bytes(CURRENT_KEY))["basis_hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BasisError(
            f"{store.uri(CURRENT_KEY)} is unreadable ({exc}); point it at a stored basis again "
            "(lte.basis.set_current) or delete it to let the next sync recreate it"
        ) from exc


def current_basis(store: ArtifactStore) -> Basis | None:
    """The basis the pipeline uses now (verified), or None before the first freeze."""
    basis_hash = current_hash(store)
    return None if basis_hash is None else load_basis(store, basis_hash)


def list_bases(store: ArtifactStore) -> list[BasisManifest]:
    """Every stored basis manifest (each checked against its digest), oldest first."""
    hashes = [
        k.split("/")[1]
        for k in store.list("basis/")
        if k.endswith("/manifest.json") and k.count("/") == 2
    ]
    return sorted(
        (load_manifest(store, h) for h in hashes), key=lambda m: (m.created_at, m.n_items)
    )


def lineage(store: ArtifactStore, basis_hash: str | None = None) -> list[BasisManifest]:
    """Manifests from the family root down to `basis_hash` (default: the current basis)."""
    basis_hash = basis_hash or current_hash(store)
    if basis_hash is None:
        return []
    chain: list[BasisManifest] = []
    seen: set[str] = set()
    next_hash: str | None = basis_hash
    while next_hash is not None:
        if next_hash in seen:  # impossible for honest hashes; guards a hand-edited store
            raise BasisError(f"basis lineage loops at {next_hash} in {store.uri('basis/')}")
        seen.add(next_hash)
        manifest = load_manifest(store, next_hash)
        chain.append(manifest)
        next_hash = manifest.parent_hash
    return chain[::-1]


# --------------------------------------------------------------------------- compatibility


def _as_manifest(ref: BasisManifest | Basis | str, store: ArtifactStore) -> BasisManifest:
    if isinstance(ref, Basis):
        return ref.manifest
    if isinstance(ref, BasisManifest):
        return ref
    return load_manifest(store, ref)


def is_descendant(store: ArtifactStore, ancestor_hash: str, basis_hash: str) -> bool:
    """True iff `basis_hash` extends `ancestor_hash` (directly or through intermediate bases)."""
    return any(m.basis_hash == ancestor_hash for m in lineage(store, basis_hash)[:-1])


def _incompatibility(
    model: BasisManifest, serving: BasisManifest, store: ArtifactStore
) -> str | None:
    if model.basis_hash == serving.basis_hash:
        return None
    if model.encoder != serving.encoder:
        return f"different encoders: {model.encoder_identity.label()} vs {serving.encoder_identity.label()}"
    if not is_descendant(store, model.basis_hash, serving.basis_hash):
        return f"basis {serving.basis_hash[:12]} does not extend {model.basis_hash[:12]}"
    return None


def compatible(
    model_manifest: BasisManifest | Basis | str,
    serving_manifest: BasisManifest | Basis | str,
    store: ArtifactStore,
) -> bool:
    """True iff serving is the model's basis or a descendant with the same encoder identity.

    Descent is read from the stored manifests (parent_hash chain); missing ones raise
    BasisNotFoundError rather than guessing."""
    model = _as_manifest(model_manifest, store)
    serving = _as_manifest(serving_manifest, store)
    return _incompatibility(model, serving, store) is None


def require_compatible(
    model_manifest: BasisManifest | Basis | str,
    serving_manifest: BasisManifest | Basis | str,
    store: ArtifactStore,
) -> None:
    """Raise BasisMismatchError (naming both hashes and the fix) unless `compatible`."""
    model = _as_manifest(model_manifest, store)
    serving = _as_manifest(serving_manifest, store)
    reason = _incompatibility(model, serving, store)
    if reason is not None:
        raise BasisMismatchError(model.basis_hash, serving.basis_hash, reason)


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class BasisCheck:
    """Outcome of re-verifying one stored basis; `problems` is empty iff `ok`."""

    basis_hash: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    parent_hash: str | None = None
    rows_unchanged: bool | None = None  # parent rows bit-identical in the child; None = root

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parent_rows_problem(child: Basis, parent: Basis) -> str | None:
    n = child.manifest.n_parent_items
    if n != parent.n_items:
        return f"records {n} parent rows but parent {parent.hash} has {parent.n_items}"
    if child.manifest.encoder != parent.manifest.encoder:
        return f"uses a different encoder than its parent {parent.hash}"
    if not np.array_equal(child.item_ids[:n], parent.item_ids):
        return f"reorders or replaces item ids of parent {parent.hash}"
    # Compare bit patterns, not float values: -0.0 == 0.0 and NaN != NaN would mislead.
    if not np.array_equal(child.vectors[:n].view(np.uint32), parent.vectors.view(np.uint32)):
        return f"changes rows of parent {parent.hash}"
    return None


def verify_basis(store: ArtifactStore, basis_hash: str) -> BasisCheck:
    """Re-verify one stored basis (hash, files) and that its parent's rows are bit-identical in it."""
    try:
        basis = load_basis(store, basis_hash)
    except BasisError as exc:  # reported, not hidden: the check's job is to say what is wrong
        return BasisCheck(basis_hash=basis_hash, ok=False, problems=[str(exc)])
    if basis.parent_hash is None:
        return BasisCheck(basis_hash=basis_hash, ok=True)
    try:
        parent = load_basis(store, basis.parent_hash)
    except BasisError as exc:
        return BasisCheck(basis_hash, False, [f"parent: {exc}"], basis.parent_hash, None)
    problem = _parent_rows_problem(basis, parent)
    problems = [] if problem is None else [f"basis {basis_hash} {problem}"]
    return BasisCheck(basis_hash, problem is None, problems, basis.parent_hash, problem is None)


def verify_lineage(store: ArtifactStore, basis_hash: str | None = None) -> list[BasisCheck]:
    """verify_basis for every basis from the root to `basis_hash` (default: current), root first."""
    basis_hash = basis_hash or current_hash(store)
    if basis_hash is None:
        return []
    try:
        hashes = [m.basis_hash for m in lineage(store, basis_hash)]
    except BasisError as exc:
        return [BasisCheck(basis_hash=basis_hash, ok=False, problems=[f"lineage: {exc}"])]
    return [verify_basis(store, h) for h in hashes]


# --------------------------------------------------------------------------- sync with the catalog


def _catalog_columns(items: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    missing = {"item_id", "text"} - set(items.columns)
    if missing:
        raise ValueError(
            f"items frame lacks columns {sorted(missing)} (see lte/catalog.py load_items)"
        )
    if items["item_id"].isna().any():
        raise ValueError("items frame has null item_id values")
    ids = items["item_id"].to_numpy(dtype=np.int64)
    if np.unique(ids).size != ids.size:
        raise ValueError("items frame has duplicate item_id values; the catalog keys items by id")
    null_text = items["text"].isna().to_numpy()
    if null_text.any():
        raise ValueError(
            f"items without text (ids {ids[null_text][:10].tolist()}); text comes from content"
        )
    return ids, [str(t) for t in items["text"]]


def _family_head(store: ArtifactStore, identity: EncoderIdentity) -> Basis | None:
    family = [m for m in list_bases(store) if m.encoder == identity.to_dict()]
    return load_basis(store, family[-1].basis_hash) if family else None


def sync_basis(
    items: pd.DataFrame, encoder: Encoder, store: ArtifactStore
) -> tuple[Basis, SyncAction]:
    """Bring the stored basis up to date with the catalog `items` (columns item_id, text).

    - no basis of this encoder yet -> freeze one over all items ("created");
    - items missing from the current basis -> a child basis with rows for them ("extended");
    - otherwise the current basis ("unchanged"). Catalog items that disappeared keep their rows.
    The basis to extend is the CURRENT one; if there is none or it is another encoder's, the newest
    stored basis of this encoder's family (so switching encoders back and forth does not orphan old models).
    The result is published and becomes current."""
    ids, texts = _catalog_columns(items)
    head = current_basis(store)
    if head is None or head.manifest.encoder != encoder.identity.to_dict():
        head = _family_head(store, encoder.identity)
    if head is None:
        if ids.size == 0:
            raise ValueError("the catalog is empty: ingest items before freezing a basis")
        basis, action = publish_basis(store, build_basis(ids, texts, encoder)), "created"
    else:
        new = head.rows(ids) < 0
        if new.any():
            new_texts = [t for t, is_new in zip(texts, new, strict=True) if is_new]
            basis, action = (
                publish_basis(store, build_basis(ids[new], new_texts, encoder, parent=head)),
                "extended",
            )
        else:
            basis, action = head, "unchanged"
    if current_hash(store) != basis.hash:
        set_current(store, basis.hash)
    return basis, action
