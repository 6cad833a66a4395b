"""Saving and loading the embedded index: one folder per index key, swapped in atomically.

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
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import bm25s
import numpy as np

from ..chunking import Chunk
from ..errors import KgptError
from ..storage import writing
from .built import BuiltIndex

FORMAT_VERSION = "4"
KEEP_INDEXES = 2


class IndexUnusable(KgptError):
    """An index folder is missing, incomplete or unreadable."""


def save(index: BuiltIndex, index_dir: Path, key: str, meta: dict, replace: bool = False) -> Path:
    """Write ``index`` under ``index_dir/key`` atomically; returns that folder.

    An existing complete index with the same key holds the same content and is kept, unless
    ``replace`` (a forced rebuild, or a damaged folder) swaps the new one in.
    """
    final = index_dir / key
    tmp = index_dir / f".tmp-{key}-{os.getpid()}"
    with writing(index_dir, "the index", "KGPT_INDEX_DIR", needed=size_of(index)):
        index_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            chunks = [{"text": c.text, "metadata": c.metadata} for c in index.chunks]
            _write_json(tmp / "chunks.json", chunks)
            _write_npy(tmp / "embeddings.npy", index.embeddings)
            _write_npy(tmp / "sentence_vectors.npy", index.sentence_vectors)
            _write_npy(tmp / "sentence_offsets.npy", index.sentence_offsets)
            index.bm25.save(str(tmp / "bm25"), show_progress=False)
            meta = {**meta, "format": FORMAT_VERSION, "chunks": len(index)}
            meta["names"] = sorted(index.names)
            _write_json(tmp / "meta.json", meta)
            _fsync_dir(tmp)
            if final.exists() and not replace:
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                if final.exists():
                    set_aside(final)
                os.rename(tmp, final)
                _fsync_dir(index_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written is left behind
            raise
    _prune(index_dir, keep=final)
    return final


def size_of(index: BuiltIndex) -> int:
    """About what ``save`` writes: the arrays, the texts and the BM25 matrix."""
    text = sum(len(c.text) + 200 for c in index.chunks)  # with its metadata as JSON
    arrays = index.embeddings.nbytes + index.sentence_vectors.nbytes
    bm25 = sum(np.asarray(part).nbytes for part in index.bm25.scores.values())
    return arrays + text + bm25


def load(path: Path) -> BuiltIndex:
    """The index saved in ``path``, its arrays memory-mapped; IndexUnusable if it cannot be."""
    if not (path / "meta.json").is_file():
        raise IndexUnusable(f"{path}: incomplete index (no meta.json)")
    try:
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise IndexUnusable(
                f"{path}: index format {meta.get('format')!r}, expected {FORMAT_VERSION}"
            )
        raw = json.loads((path / "chunks.json").read_text())
        index = BuiltIndex(
            chunks=[Chunk(text=c["text"], metadata=c["metadata"]) for c in raw],
            embeddings=np.asarray(np.load(path / "embeddings.npy", mmap_mode="r")),
            sentence_vectors=np.load(path / "sentence_vectors.npy", mmap_mode="r"),
            sentence_offsets=np.load(path / "sentence_offsets.npy"),
            bm25=bm25s.BM25.load(str(path / "bm25"), mmap=True, show_progress=False),
            names=frozenset(meta["names"]),
        )
    except IndexUnusable:
        raise
    except Exception as exc:  # any damage to the files: the caller rebuilds
        raise IndexUnusable(f"{path}: unreadable index ({type(exc).__name__}: {exc})") from exc
    if meta.get("chunks") != len(index) or not index.is_consistent():
        raise IndexUnusable(f"{path}: chunks and vectors disagree; the index is damaged")
    return index


def read_meta(path: Path) -> dict:
    """What ``meta.json`` of the index saved in ``path`` records."""
    return json.loads((path / "meta.json").read_text())


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
    for old in [p for p in complete(index_dir) if p != keep][KEEP_INDEXES - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def complete(index_dir: Path) -> list[Path]:
    """The index folders under ``index_dir`` (not temporary or set aside), newest first."""
    if not index_dir.is_dir():
        return []
    folders = [p for p in index_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(folders, key=lambda p: p.stat().st_mtime, reverse=True)


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
