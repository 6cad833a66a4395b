"""The embedded index: chunk vectors and a BM25 index in one folder on disk, swapped atomically.

Layout under ``index_dir``::

    <key>/                 one complete index; <key> hashes the corpus and every setting that
      chunks.json          shapes it, so a changed corpus or setting gets a new folder
      embeddings.npy
      sentence_vectors.npy one row per sentence of each chunk, chunk after chunk
      sentence_offsets.npy chunk i's sentences are rows offsets[i]:offsets[i + 1]
      bm25/
      meta.json            written last: a folder without it is incomplete and ignored
    .tmp-<key>-<pid>/      an index being written; renamed to <key> only when complete

A crash mid-write leaves at most a ``.tmp-*`` folder behind (cleaned by the next build); the
previous index folders are untouched until a new one is complete.

Search: the dense top-50 (cosine) and the BM25 top-50, fused by weighted reciprocal rank (the
dense ranking counts three times the lexical one; see ``store.base``), ties broken by cosine.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import bm25s
import numpy as np

from ..chunking import Chunk
from ..lexical import tokenize
from .base import DENSE_WEIGHT, LEXICAL_WEIGHT, Hit, reciprocal_rank_fusion

log = logging.getLogger(__name__)

FORMAT_VERSION = "2"
CANDIDATES = 50  # per ranking, before fusion
KEEP_INDEXES = 2


class IndexUnusable(Exception):
    """An index folder is missing, incomplete or unreadable."""


class LocalStore:
    def __init__(
        self,
        chunks: list[Chunk],
        embeddings: np.ndarray,
        sentence_vectors: np.ndarray,
        sentence_offsets: np.ndarray,
        bm25: bm25s.BM25,
        path: Path | None = None,
    ):
        self.chunks = chunks
        self.embeddings = embeddings
        self.sentence_vectors = sentence_vectors
        self.sentence_offsets = sentence_offsets
        self.bm25 = bm25
        self.path = path  # the folder it was loaded from or saved to
        self._vocab = bm25.vocab_dict

    def __len__(self) -> int:
        return len(self.chunks)

    # -- search -------------------------------------------------------------------------------

    def dense_ranking(self, vector: np.ndarray, n: int) -> tuple[list[int], np.ndarray]:
        similarities = self.embeddings @ vector
        n = min(n, len(similarities))
        top = np.argpartition(-similarities, n - 1)[:n]
        return top[np.argsort(-similarities[top])].tolist(), similarities

    def lexical_scores(self, query: str) -> np.ndarray:
        """Every chunk's BM25 score for ``query`` (zeros when none of its words is indexed)."""
        tokens = [t for t in tokenize([query])[0] if t in self._vocab]
        if not tokens:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return self.bm25.get_scores(tokens)

    def lexical_ranking(self, query: str, n: int) -> list[int]:
        scores = self.lexical_scores(query)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        return [int(i) for i in top[np.argsort(-scores[top])] if scores[i] > 0]

    def search(self, query: str, vector: np.ndarray, k: int) -> list[Hit]:
        dense, similarities = self.dense_ranking(vector, CANDIDATES)
        lexical = self.lexical_ranking(query, CANDIDATES)
        return self.fuse(dense, lexical, similarities, k)

    def fuse(
        self, dense: list[int], lexical: list[int], similarities: np.ndarray, k: int
    ) -> list[Hit]:
        """The ``k`` best chunks of the two rankings, weighted rank fusion, ties by cosine."""
        fused = reciprocal_rank_fusion([dense, lexical], weights=[DENSE_WEIGHT, LEXICAL_WEIGHT])
        best = sorted(fused, key=lambda i: (-fused[i], -similarities[i]))[:k]
        return [
            Hit(
                chunk=self.chunks[i],
                score=fused[i],
                similarity=float(similarities[i]),
                sentence_vectors=np.asarray(
                    self.sentence_vectors[self.sentence_offsets[i] : self.sentence_offsets[i + 1]]
                ),
            )
            for i in best
        ]

    # -- building and persistence -------------------------------------------------------------

    @classmethod
    def build(
        cls,
        chunks: list[Chunk],
        searchable: list[str],
        embeddings: np.ndarray,
        sentence_vectors: list[np.ndarray],
    ) -> LocalStore:
        """BM25-index ``searchable`` (the normalised text of each chunk) beside its vectors."""
        bm25 = bm25s.BM25()
        bm25.index(tokenize(searchable), show_progress=False)
        offsets = np.cumsum([0] + [len(v) for v in sentence_vectors], dtype=np.int64)
        return cls(chunks, embeddings, np.vstack(sentence_vectors), offsets, bm25)

    def save(self, index_dir: Path, key: str, meta: dict, replace: bool = False) -> Path:
        """Write the index under ``index_dir/key`` atomically.

        An existing complete index with the same key holds the same content and is kept, unless
        ``replace`` (a forced rebuild) swaps the new one in.
        """
        index_dir.mkdir(parents=True, exist_ok=True)
        final = index_dir / key
        tmp = index_dir / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _write_json(
            tmp / "chunks.json", [{"text": c.text, "metadata": c.metadata} for c in self.chunks]
        )
        _write_npy(tmp / "embeddings.npy", self.embeddings)
        _write_npy(tmp / "sentence_vectors.npy", self.sentence_vectors)
        _write_npy(tmp / "sentence_offsets.npy", self.sentence_offsets)
        self.bm25.save(str(tmp / "bm25"), show_progress=False)
        _write_json(tmp / "meta.json", {**meta, "format": FORMAT_VERSION, "chunks": len(self)})
        _fsync_dir(tmp)
        if final.exists() and not replace:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            if final.exists():
                set_aside(final)
            os.rename(tmp, final)
            _fsync_dir(index_dir)
        _prune(index_dir, keep=final)
        self.path = final
        return final

    @classmethod
    def load(cls, path: Path) -> LocalStore:
        if not (path / "meta.json").is_file():
            raise IndexUnusable(f"{path}: incomplete index (no meta.json)")
        try:
            meta = json.loads((path / "meta.json").read_text())
            if meta.get("format") != FORMAT_VERSION:
                raise IndexUnusable(
                    f"{path}: index format {meta.get('format')!r}, expected {FORMAT_VERSION}"
                )
            raw = json.loads((path / "chunks.json").read_text())
            chunks = [Chunk(text=c["text"], metadata=c["metadata"]) for c in raw]
            embeddings = np.load(path / "embeddings.npy", mmap_mode="r")
            sentence_vectors = np.load(path / "sentence_vectors.npy", mmap_mode="r")
            sentence_offsets = np.load(path / "sentence_offsets.npy")
            bm25 = bm25s.BM25.load(str(path / "bm25"), mmap=True, show_progress=False)
        except IndexUnusable:
            raise
        except Exception as exc:  # any damage to the files: the caller rebuilds
            raise IndexUnusable(f"{path}: unreadable index ({type(exc).__name__}: {exc})") from exc
        if (
            embeddings.shape[0] != len(chunks)
            or meta.get("chunks") != len(chunks)
            or len(sentence_offsets) != len(chunks) + 1
            or sentence_offsets[-1] != sentence_vectors.shape[0]
        ):
            raise IndexUnusable(f"{path}: chunks and vectors disagree; the index is damaged")
        return cls(chunks, np.asarray(embeddings), sentence_vectors, sentence_offsets, bm25, path)


def set_aside(path: Path) -> None:
    """Move an index folder out of the way (pruned later) so its key can be written anew."""
    os.rename(path, path.parent / f".old-{path.name}-{os.getpid()}-{time.time_ns()}")


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())


def _write_json(path: Path, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(index_dir: Path, keep: Path) -> None:
    """Drop stale temp folders and all but the newest few complete indexes."""
    now = time.time()
    for tmp in index_dir.glob(".tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not _pid_alive(pid) or now - tmp.stat().st_mtime > 24 * 3600:
            shutil.rmtree(tmp, ignore_errors=True)
    for old in index_dir.glob(".old-*"):
        shutil.rmtree(old, ignore_errors=True)
    complete = sorted(
        (p for p in index_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in [p for p in complete if p != keep][KEEP_INDEXES - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
