"""The two designs every retrieval figure is measured against, built in the same process from
the same corpus and the packaged model:

- **seed design**: the original karpathy-gpt-api: LangChain's RecursiveCharacterTextSplitter at
  1,500 / 150 characters, MiniLM vectors, the dense top k;
- **plain RRF**: LangChain's splitter at 800 / 100, bm25s (this project's tokens) and MiniLM,
  fused by equal-weight reciprocal rank (k = 60): the plainest hybrid search.

Their vectors come from the embedding cache, so only the first run embeds their chunks.
LangChain's splitter is in the ``bench`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass

import bm25s
import numpy as np

from ..config import Settings
from ..corpus import Lecture
from ..embedding import DIMENSIONS, Embedder
from ..embedding_cache import EmbeddingCache
from ..lexical import tokenize
from ..store.base import reciprocal_rank_fusion
from ..text import normalise


@dataclass
class Baseline:
    name: str
    lectures: list[str]  # each chunk's lecture id
    texts: list[str]
    vectors: np.ndarray
    lexical: bm25s.BM25 | None  # None: dense only

    def passages(self, question: str, vector: np.ndarray, k: int = 10) -> list[tuple[str, str]]:
        similarities = self.vectors @ vector
        dense = [int(i) for i in np.argsort(-similarities, kind="stable")[:50]]
        if self.lexical is None:
            best = dense[:k]
        else:
            vocab = self.lexical.vocab_dict
            terms = [t for t in tokenize([normalise(question)])[0] if t in vocab]
            scores = self.lexical.get_scores(terms) if terms else np.zeros(len(self.texts))
            lexical = [int(i) for i in np.argsort(-scores, kind="stable")[:50] if scores[i] > 0]
            fused = reciprocal_rank_fusion([dense, lexical])
            best = sorted(fused, key=lambda i: (-fused[i], -similarities[i]))[:k]
        return [(self.lectures[i], self.texts[i]) for i in best]


def splitter(size: int, overlap: int):
    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter
    except ImportError as exc:
        raise RuntimeError(
            "the baselines use LangChain's splitter: pip install 'karpathy-gpt[bench]' "
            "(make install-test installs it)"
        ) from exc
    return RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap)


def build_baselines(settings: Settings, lectures: list[Lecture], embedder: Embedder) -> list:
    """The seed design and plain RRF over ``lectures``; ``embedder`` is the packaged model."""
    cache = EmbeddingCache.load(settings.index_dir, embedder.name)
    out = []
    for name, size, overlap, hybrid in (
        ("seed design", 1500, 150, False),
        ("plain RRF", 800, 100, True),
    ):
        split = splitter(size, overlap)
        pieces = [(lec.id, text) for lec in lectures for text in split.split_text(lec.text)]
        texts = [text for _, text in pieces]
        missing = cache.missing(texts)
        if missing:
            cache.add(missing, embedder.embed(missing))
        lexical = None
        if hybrid:
            lexical = bm25s.BM25()
            lexical.index(tokenize([normalise(t) for t in texts]), show_progress=False)
        vectors = cache.get(texts, DIMENSIONS)
        out.append(Baseline(name, [lec for lec, _ in pieces], texts, vectors, lexical))
    cache.save()
    return out
