"""Tokenising for BM25: lower-case words, English stop words removed, Snowball-stemmed; and the
word lists the coverage decision reads a question with."""

from __future__ import annotations

import re
from functools import lru_cache

import bm25s
import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS

# A word with an underscore in it or a lower-to-upper case change: a code identifier.
_IDENTIFIER = re.compile(r"\b\w*(?:_[A-Za-z0-9]|[A-Za-z0-9]_|[a-z][A-Z])\w*\b")
_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def tokenize(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(
        texts, stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False
    )


def identifier_words(text: str) -> str:
    """``text`` with each code identifier written as its words, the way a lecture says it:
    "counts_sum_inv" -> "counts sum inv", "FlattenConsecutive" -> "Flatten Consecutive"."""
    return _IDENTIFIER.sub(lambda m: " ".join(_PART.findall(m.group(0))), text)


@lru_cache(maxsize=1)
def function_words() -> frozenset[str]:
    """Stemmed English function words ("his", "himself", "whose"): never what a question is
    about."""
    return frozenset(_stemmer().stemWords(sorted(STOPWORDS_EN_PLUS)))
