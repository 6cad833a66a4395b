"""The ranking pieces benchmarks/retrieval_variants.py builds its variants from: searchable
text forms (glossaries, filler), BM25 variants over the same chunks, and rank fusion."""

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

from karpathy_gpt.evaluation import score_ranks
from karpathy_gpt.store.base import RRF_K
from karpathy_gpt.store.local import CANDIDATES
from karpathy_gpt.text import normalise

REPO = Path(__file__).resolve().parents[1]
DEV_QUESTIONS = REPO / "benchmarks" / "data" / "dev-questions.jsonl"
STEMMER = Stemmer.Stemmer("english")

# Whisper spellings the served glossary (text.GLOSSARY) misses, found by scanning the corpus.
EXTENDED_GLOSSARY = [
    (re.compile(pattern, re.IGNORECASE), replacement)
    for pattern, replacement in {
        r"\b10[ -]?h\b": "tanh",
        r"\bback[ -]?propagat\w*": "backpropagation",
        r"\bback[ -]?prop\b": "backpropagation",
        r"\bbash[ -]?norm(alization)?s?\b": "batchnorm",
        r"\bself[ -]?attention\b": "self-attention",
        r"\bmulti[ -]?head(ed)?\b": "multi-head",
        r"\bmini[ -]?batch": "minibatch",
        r"\bone[ -]hot\b": "onehot",
        r"\bfeed[ -]?forward\b": "feedforward",
        r"\btorsion\b": "torch",
        r"\bben-ju\b": "bengio",
        r"\bkyming\b": "kaiming",
    }.items()
]
FILLER = re.compile(
    r"\b(?:um+|uh+|okay|ok|so|basically|actually|like|just|you know|sort of|kind of|i mean|right)"
    r"\b,?\s*",
    re.IGNORECASE,
)


def searchable_form(glossary: str, strip_filler: bool) -> Callable[[str], str]:
    def form(text: str) -> str:
        text = normalise(text)
        if glossary == "extended":
            for pattern, replacement in EXTENDED_GLOSSARY:
                text = pattern.sub(replacement, text)
        return FILLER.sub("", text) if strip_filler else text

    return form


def tokens(texts: list[str], stopwords: list[str]) -> list[list[str]]:
    return bm25s.tokenize(
        texts, stopwords=stopwords, stemmer=STEMMER, return_ids=False, show_progress=False
    )


def adjacent_pairs(words: list[str]) -> list[str]:
    return [f"{a}_{b}" for a, b in zip(words, words[1:], strict=False)]


class Lexical:
    """BM25 (as served: bm25s, k1 1.5, b 0.75) plus idf-weighted query-term coverage, BM25 over
    adjacent word pairs (term dependence) and RM3 feedback."""

    def __init__(self, searchable: list[str], sentences: list[list[str]], stopwords: list[str]):
        self.stopwords = stopwords
        self.docs = tokens(searchable, stopwords)
        self.bm25 = bm25s.BM25()
        self.bm25.index(self.docs, show_progress=False)
        self.vocab = self.bm25.vocab_dict
        self.pairs = bm25s.BM25()
        self.pairs.index([adjacent_pairs(d) for d in self.docs], show_progress=False)
        self.sets = [set(d) for d in self.docs]
        df = Counter(t for s in self.sets for t in s)
        n = len(self.docs)
        self.idf = {t: float(np.log(1 + (n - d + 0.5) / (d + 0.5))) for t, d in df.items()}
        self.sentence_sets = [[set(t) for t in tokens(s, stopwords)] for s in sentences]

    def with_pairs(self, question: str, weight: float) -> np.ndarray:
        """BM25 plus ``weight`` x BM25 of the question's adjacent word pairs as single terms
        (the ordered-bigram part of Metzler and Croft's sequential dependence model)."""
        asked = adjacent_pairs(tokens([question], self.stopwords)[0])
        pairs = [p for p in asked if p in self.pairs.vocab_dict]
        extra = self.pairs.get_scores(pairs) if pairs else 0.0
        return self.scores(question) + weight * extra

    def rm3(self, question: str, feedback: int, terms: int, weight: float) -> np.ndarray:
        """RM3: BM25 mixed with the BM25 of the ``terms`` words that weigh most in the first
        ``feedback`` results (frequency share x their score x idf), rescaled to its range."""
        first = self.scores(question)
        asked = set(self.query(question))
        weights: Counter[str] = Counter()
        for i in top(first, feedback, positive=True):
            for term, count in Counter(self.docs[i]).items():
                weights[term] += count / len(self.docs[i]) * first[i] * self.idf[term]
        added = [t for t, _ in weights.most_common() if t not in asked][:terms]
        expanded = self.bm25.get_scores(added) if added else np.zeros(len(first))
        scale = first.max() / max(expanded.max(), 1e-9)
        return (1 - weight) * first + weight * scale * expanded

    def query(self, question: str) -> list[str]:
        return [t for t in tokens([question], self.stopwords)[0] if t in self.vocab]

    def scores(self, question: str) -> np.ndarray:
        terms = self.query(question)
        return self.bm25.get_scores(terms) if terms else np.zeros(len(self.sets))

    def coverage(self, question: str, window: int | None = None) -> np.ndarray:
        """Share of the question's idf mass present in a chunk (or its best sentence window)."""
        terms = set(self.query(question))
        total = sum(self.idf[t] for t in terms) or 1.0
        if window is None:
            return np.array([sum(self.idf[t] for t in terms & s) for s in self.sets]) / total
        best = np.zeros(len(self.sets))
        for i, sets in enumerate(self.sentence_sets):
            for j in range(max(1, len(sets) - window + 1)):
                seen = set().union(*sets[j : j + window])
                best[i] = max(best[i], sum(self.idf[t] for t in terms & seen))
        return best / total


def top(scores: np.ndarray, n: int = CANDIDATES, positive: bool = False) -> list[int]:
    order = [int(i) for i in np.argsort(-scores, kind="stable")[:n]]
    return [i for i in order if scores[i] > 0] if positive else order


def by(primary: np.ndarray, secondary: np.ndarray, n: int = CANDIDATES) -> list[int]:
    order = np.lexsort((-secondary, -primary))[:n]
    return [int(i) for i in order if primary[i] > 0]


def fuse(rankings: list[list[int]], weights: list[float], tiebreak: np.ndarray) -> list[int]:
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (RRF_K + rank)
    return sorted(scores, key=lambda i: (-scores[i], -tiebreak[i]))


def row(name: str, r: list[int | None], public: int) -> str:
    a, d = score_ranks(r[:public]), score_ranks(r[public:])
    marks = (
        "".join(f"{x or '-':>3}" for x in r[:public])
        + " |"
        + "".join(f"{x or '-':>3}" for x in r[public:])
    )
    return (
        f"{name:34s} {a.hit_at_1:3d} {a.hit_at_3:3d} {a.mrr_at_10:6.3f}  "
        f"{d.hit_at_1:3d} {d.hit_at_3:3d} {d.mrr_at_10:6.3f} |{marks}"
    )
