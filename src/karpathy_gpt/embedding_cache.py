"""Vectors already computed, by content hash: unchanged chunks and sentences are never re-embedded.

One file per model beside the indexes, ``<index_dir>/embedding-cache-<hash of the model's
name>.npz``, so models used in turn (the adapted one, the packaged one of the baselines) never
evict each other: the SHA-256 of (model, text) of every cached text, its vector, and the build
that last used it. It is rewritten whole to a
temporary file and renamed over the old one, so a crash leaves either the old or the new cache;
an unreadable cache is logged and started afresh (it only saves time, it decides nothing). Texts
no build has used lately are dropped, so the file follows the corpus instead of growing forever.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .storage import writing

log = logging.getLogger(__name__)

MIN_KEPT = 20_000  # entries kept whatever their age (~30 MB of 384-d vectors)
KEPT_PER_USED = 4  # and up to this many times what the latest build used


def file_name(model: str) -> str:
    return f"embedding-cache-{hashlib.sha256(model.encode()).hexdigest()[:10]}.npz"


class EmbeddingCache:
    def __init__(
        self,
        path: Path,
        model: str,
        keys: np.ndarray | None = None,
        vectors: np.ndarray | None = None,
        generations: np.ndarray | None = None,
    ):
        self.path = path
        self.model = model
        self._row: dict[bytes, int] = {}
        self._vectors: list[np.ndarray] = []
        self._generations: list[int] = []
        if keys is not None and vectors is not None and generations is not None:
            self._row = {k.tobytes(): i for i, k in enumerate(keys)}
            self._vectors = list(vectors)
            self._generations = [int(g) for g in generations]
        self.generation = max(self._generations, default=0) + 1
        self.used: set[bytes] = set()

    @classmethod
    def empty(cls, model: str) -> EmbeddingCache:
        """A cache in memory only, for a one-off build (never saved)."""
        return cls(Path(os.devnull), model)

    @classmethod
    def load(cls, index_dir: Path, model: str) -> EmbeddingCache:
        path = index_dir / file_name(model)
        if not path.is_file():
            return cls(path, model)
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["model"]) != model:
                    log.info("embedding cache %s is for another model; starting afresh", path)
                    return cls(path, model)
                keys, vectors, generations = data["keys"], data["vectors"], data["generations"]
                if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != 32:
                    raise ValueError(f"keys of shape {keys.shape} and type {keys.dtype}")
                if not len(keys) == len(vectors) == len(generations):
                    raise ValueError("keys, vectors and generations differ in length")
                return cls(path, model, keys, vectors, generations)
        except Exception as exc:  # damage of any kind: the cache is only an optimisation
            log.warning("embedding cache %s unreadable (%s); starting afresh", path, exc)
            return cls(path, model)

    def __len__(self) -> int:
        return len(self._row)

    def _key(self, text: str) -> bytes:
        return hashlib.sha256(f"{self.model}\0{text}".encode()).digest()

    def missing(self, texts: Iterable[str], refresh: bool = False) -> list[str]:
        """The distinct ``texts`` with no cached vector (all of them when ``refresh``)."""
        unique = dict.fromkeys(texts)
        if refresh:
            return list(unique)
        return [t for t in unique if self._key(t) not in self._row]

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        for text, vector in zip(texts, vectors, strict=True):
            key = self._key(text)
            row = self._row.get(key)
            if row is None:
                self._row[key] = len(self._vectors)
                self._vectors.append(np.asarray(vector, dtype=np.float32))
                self._generations.append(self.generation)
            else:
                self._vectors[row] = np.asarray(vector, dtype=np.float32)

    def get(self, texts: Sequence[str], dimensions: int) -> np.ndarray:
        """The vectors of ``texts`` (all must be cached), marked as used by this build."""
        out = np.empty((len(texts), dimensions), dtype=np.float32)
        for i, text in enumerate(texts):
            key = self._key(text)
            row = self._row[key]
            out[i] = self._vectors[row]
            self._generations[row] = self.generation
            self.used.add(key)
        return out

    def save(self) -> None:
        """Write the cache atomically, keeping what recent builds used."""
        if not self._row:
            return
        keep = max(MIN_KEPT, KEPT_PER_USED * len(self.used))
        rows = sorted(self._row.items(), key=lambda kv: -self._generations[kv[1]])[:keep]
        # Raw digest bytes as uint8 rows: numpy's fixed-width bytes type would drop trailing NULs.
        keys = np.frombuffer(b"".join(k for k, _ in rows), dtype=np.uint8).reshape(-1, 32)
        vectors = np.stack([self._vectors[r] for _, r in rows]).astype(np.float32)
        generations = np.array([self._generations[r] for _, r in rows], dtype=np.int64)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        needed = keys.nbytes + vectors.nbytes + generations.nbytes
        with writing(self.path.parent, "the embedding cache", "KGPT_INDEX_DIR", needed):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(tmp, "wb") as f:
                    np.savez(
                        f,
                        model=np.array(self.model),
                        keys=keys,
                        vectors=vectors,
                        generations=generations,
                    )
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
