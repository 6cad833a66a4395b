"""Tokenising for BM25: lower-case words, English stop words removed, Snowball-stemmed."""

from __future__ import annotations

from functools import lru_cache

import bm25s
import Stemmer


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def tokenize(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(
        texts, stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False
    )
