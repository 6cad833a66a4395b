"""The embedding backends: ONNX against torch, one vector per text whatever the batch, own keys."""

from __future__ import annotations

import numpy as np
import pytest

from karpathy_gpt.config import Settings
from karpathy_gpt.embedding import BACKENDS, Embedder, model_name
from karpathy_gpt.index.build import index_key
from karpathy_gpt.onnx_export import ExportError, onnx_model

TEXTS = [
    "What is makemore?",
    "What is micrograd?",
    "The loss goes down.",
    "The loss went up.",
    "Why do we use batch normalization, and what does it do at test time?",
    "so the gradient flows backward through the tanh and we get the derivative of the loss",
    "  hi  ",
    "The attention weights are a softmax over the dot products of the queries with the keys, "
    "scaled by one over the square root of the head size, and masked so that a token never "
    "looks at the tokens after it. " * 3,
]


@pytest.fixture(scope="module")
def embedders() -> dict[str, Embedder]:
    return {backend: Embedder(backend=backend) for backend in BACKENDS}


@pytest.fixture(scope="module")
def vectors(embedders) -> dict[str, np.ndarray]:
    return {backend: embedder.embed(TEXTS) for backend, embedder in embedders.items()}


def test_onnx_float32_reproduces_the_torch_vectors(vectors):
    cosines = (vectors["onnx"] * vectors["torch"]).sum(axis=1)
    assert cosines.min() > 0.9999, cosines


def test_int8_vectors_stay_close_to_the_float_ones(vectors):
    cosines = (vectors["onnx-int8"] * vectors["onnx"]).sum(axis=1)
    assert cosines.min() > 0.98 and cosines.mean() > 0.99, cosines
    for backend in BACKENDS:
        assert np.allclose(np.linalg.norm(vectors[backend], axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_a_text_gets_the_same_vector_alone_or_in_any_batch(embedders, backend):
    """float32 runs texts of one length together, int8 one at a time (its activations are scaled
    per input tensor): either way a vector never follows its company."""
    embedder = embedders[backend]
    lengths = [len(ids) for ids in embedder._engine.word_pieces(TEXTS)]
    assert len(set(lengths)) < len(lengths)  # some texts share a pass in float32
    alone = np.vstack([embedder.embed_one(t) for t in TEXTS])
    reordered = embedder.embed(TEXTS[::-1], batch_size=2)[::-1]
    with embedder.threads(2):
        parallel = embedder.embed(TEXTS * 3, batch_size=1)[: len(TEXTS)]
    together = embedder.embed(TEXTS * 4, batch_size=64)
    assert np.array_equal(alone, reordered)
    assert np.array_equal(alone, parallel)
    assert np.array_equal(np.vstack([alone] * 4), together)


def test_each_backend_has_its_own_model_name_and_index_key():
    names = {model_name(b) for b in BACKENDS}
    assert len(names) == len(BACKENDS)
    assert model_name("torch") == "sentence-transformers/all-MiniLM-L6-v2"  # older indexes stay
    keys = {index_key("corpus", Settings(embedding_backend=b)) for b in BACKENDS}
    assert len(keys) == len(BACKENDS)


def test_an_unknown_backend_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="onnx, onnx-int8, torch"):
        Embedder(backend="tensorflow")


def test_a_failed_export_says_what_to_do(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the export folder should go")
    with pytest.raises(ExportError, match="KGPT_EMBEDDING_BACKEND=torch"):
        onnx_model(blocked, quantized=True)
