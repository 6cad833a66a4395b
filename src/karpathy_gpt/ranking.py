"""Passages cut around the sentences that answer: a learned sentence ranker over the candidates.

The store finds candidate chunks (the dense top 25 and the BM25 top 25, ``store.base``). Every
sentence of those chunks is then scored by a linear model over a handful of features that join
sentence-level and chunk-level evidence, dense and lexical: the sentence's cosine to the
question and its neighbours', its chunk's cosine and BM25 score and their ranks, and the share of
the question's (IDF-weighted) words in the sentence and around it. The passages returned are
windows of the lecture cut around the best sentences: a little before (``BEFORE`` characters
at most), then on up to ``WINDOW`` characters, so the words that answer are near the top of
each passage, whatever the chunk boundaries were. Windows never overlap: one next to a window
taken already stops where that one begins or ends, rather than being dropped.

The weights are fitted on labelled questions (``karpathy-gpt eval --fit``, k-fold
cross-validated figures in BENCHMARKS.md) and kept in ``weights.json`` beside this module. The
features use no question type cue: numbers for "how many", "because" for "why" were measured
and did not help.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from .chunking import Chunk
from .lexical import tokenize
from .store.base import Candidates
from .text import normalise, sentence_spans

WINDOW = 800  # characters of a passage: the default 3 passages read 2,400
BEFORE = 200  # at most this much of the preceding sentence opens a passage
WEIGHTS_FILE = Path(__file__).with_name("weights.json")

FEATURES = (
    "sentence",  # cosine of the sentence to the question
    "neighbour",  # the better cosine of the sentences before and after it
    "forward",  # mean cosine of the sentence and the two after it
    "chunk",  # the best cosine of a candidate chunk holding it
    "chunk_gap",  # that, less the best chunk's cosine
    "chunk_bm25",  # the best BM25 score of a chunk holding it, over the best chunk's
    "chunk_dense_rank",  # log of the best dense rank of a chunk holding it
    "chunk_bm25_rank",  # log of the best BM25 rank
    "overlap",  # share of the question's IDF weight in the sentence's words
    "window_overlap",  # ... in the words of it, the one before and the two after
    "length",  # log of its characters
    "sentence_gap",  # its cosine less the best sentence's
    # Last two: where there is no question bank (another corpus), ranker() goes without them.
    "bank",  # the best cosine of a bank question whose quote it holds (bank.py)
    "bank_near",  # that cosine x log(100 / that question's rank among the bank)
)
BANK_FEATURES = ("bank", "bank_near")  # last: a ranker without them drops the last columns
assert FEATURES[-len(BANK_FEATURES) :] == BANK_FEATURES


@dataclass(slots=True, eq=False)
class Sentence:
    lecture: str
    start: int  # in the lecture's text
    end: int
    text: str
    vector: np.ndarray
    times: tuple[float, float] | None
    gap: str = " "  # what separates it from the next sentence in the lecture
    holders: list[int] = field(default_factory=list)  # candidates whose chunk holds it
    before: Sentence | None = None
    after: Sentence | None = None


@dataclass
class Passage:
    """A window of a lecture: its sentences (consecutive) and the one it was cut around."""

    sentences: list[Sentence]
    best: Sentence
    score: float  # the ranker's score of ``best``
    similarity: float  # the cosine of ``best`` to the question
    source: Chunk  # the candidate chunk it came from (lecture metadata)
    scores: dict[int, float]  # the ranker's score of each scored sentence, by id()

    @property
    def text(self) -> str:
        return _joined(self.sentences)


@dataclass
class Ranked:
    passages: list[Passage]
    sentences: list[Sentence]  # every scored sentence
    scores: np.ndarray  # their ranker scores
    features: np.ndarray  # their feature rows (len(sentences) x len(FEATURES))
    question: str = ""


@dataclass(frozen=True)
class Linear:
    """weights . features + bias, the features as they are (the fit folds scaling in)."""

    weights: tuple[float, ...]
    bias: float

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return rows @ np.asarray(self.weights) + self.bias


@cache
def _weights() -> dict:
    return json.loads(WEIGHTS_FILE.read_text(encoding="utf-8"))


def fitted(adapted: bool = True) -> dict:
    """The models fitted with the adapted embedder's vectors (or the packaged one's; each
    falls back on the other if it was not fitted)."""
    weights = _weights()
    first, second = ("adapted", "packaged") if adapted else ("packaged", "adapted")
    return weights.get(first) or weights[second]


@cache  # checked and built once per model, not on every search
def ranker(adapted: bool = True, bank: bool = True) -> Linear:
    """The fitted ranker, or (``bank`` false) the one fitted without the bank's features."""
    model = fitted(adapted)["ranker"]
    if tuple(model["features"]) != FEATURES:
        raise ValueError(f"{WEIGHTS_FILE} was fitted on other features; run eval --fit")
    if not bank:
        model = model["without_bank"]
    return Linear(tuple(model["weights"]), model["bias"])


@lru_cache(maxsize=8192)
def _layout(text: str) -> tuple[tuple[int, int, str, str], ...]:
    """A chunk's sentences: (start, end, text, what separates it from the next), remembered
    per chunk text (the same chunks come back question after question)."""
    spans = sentence_spans(text)
    ends = [a for a, _ in spans[1:]] + [None]
    return tuple(
        (a, b, text[a:b], text[b:nxt] if nxt is not None else " ")
        for (a, b), nxt in zip(spans, ends, strict=True)
    )


def gather(candidates: Candidates) -> list[Sentence]:
    """The sentences of the candidate chunks (each once, linked to its neighbours), and those
    of the chunks that follow them, which only lengthen windows."""
    by_key: dict[tuple[str, int], Sentence] = {}
    scored: dict[tuple[str, int], Sentence] = {}

    def sentences_of(chunk: Chunk, vectors: np.ndarray, after: int) -> list[Sentence]:
        lecture, offset = chunk.metadata["id"], chunk.metadata["start_char"]
        times = chunk.metadata.get("sentence_times")
        layout = _layout(chunk.text)
        if len(layout) != len(vectors):
            raise ValueError(f"chunk {chunk.metadata.get('chunk')}: sentences and vectors differ")
        last = len(layout) - 1
        out = []
        for n, (a, b, text, gap) in enumerate(layout):
            if offset + a < after:
                continue
            key = (lecture, offset + a)
            sentence = by_key.get(key)
            if sentence is None:
                span = tuple(times[n]) if times else None
                sentence = by_key[key] = Sentence(
                    lecture, offset + a, offset + b, text, vectors[n], span
                )
            if n < last:  # a chunk's last sentence: what follows it is in the next chunk
                sentence.gap = gap
            out.append(sentence)
        return out

    for c, candidate in enumerate(candidates.items):
        own = sentences_of(candidate.chunk, candidate.sentence_vectors, 0)
        run = list(own)
        if candidate.following is not None and candidate.following_vectors is not None:
            end = candidate.chunk.metadata["end_char"]
            run += sentences_of(candidate.following, candidate.following_vectors, end)
        for first, second in zip(run, run[1:], strict=False):
            first.after, second.before = second, first
        for sentence in own:
            sentence.holders.append(c)
            scored[(sentence.lecture, sentence.start)] = sentence
    return list(scored.values())


def terms_of(texts: list[str]) -> list[frozenset[str]]:
    """The BM25 terms of each text (normalised, stemmed, without stop words), remembered: the
    same sentences come back question after question, and tokenising is the costly part."""
    # Searches run in threads: another one may clear _TERMS at any moment, so this call's
    # terms are gathered in its own dict and _TERMS is only where it looks first.
    found = {t: _TERMS[t] for t in texts if t in _TERMS}
    missing = list(dict.fromkeys(t for t in texts if t not in found))
    if missing:
        if len(_TERMS) + len(missing) > MAX_REMEMBERED:
            _TERMS.clear()
        for text, terms in zip(missing, tokenize([normalise(t) for t in missing]), strict=True):
            found[text] = _TERMS[text] = frozenset(terms)
    return [found[t] for t in texts]


_TERMS: dict[str, frozenset[str]] = {}
MAX_REMEMBERED = 50_000  # sentences' terms kept (a few MB); then forgotten and relearnt


def features(question: str, vector: np.ndarray, candidates: Candidates, sentences: list[Sentence]):
    """One row of FEATURES per sentence, and the question's terms."""
    items = candidates.items
    terms = sorted(set(tokenize([normalise(question)])[0]))
    idf = np.array([candidates.idf(t) for t in terms])
    weight = idf.sum() or 1.0
    # Every sentence a row reads: the scored ones first, then their neighbours.
    position = {id(s): n for n, s in enumerate(sentences)}
    every = list(sentences)
    for s in sentences:
        for x in _around(s):
            if id(x) not in position:
                position[id(x)] = len(every)
                every.append(x)
    held = np.array(  # which of the question's terms each sentence holds
        [[t in bag for t in terms] for bag in terms_of([x.text for x in every])], dtype=bool
    ).reshape(len(every), len(terms))
    cosine = np.vstack([x.vector for x in every]) @ vector
    n = len(sentences)

    def at(rows: list[Sentence | None]) -> np.ndarray:
        """Each row's neighbour's position in ``every``, or -1 where there is none."""
        return np.array([position[id(x)] if x is not None else -1 for x in rows], dtype=int)

    before = at([s.before for s in sentences])
    after = at([s.after for s in sentences])
    after2 = at([s.after.after if s.after else None for s in sentences])
    own = cosine[:n]

    def neighbour(where: np.ndarray) -> np.ndarray:
        return np.where(where >= 0, cosine[where], own)

    window = held[:n].copy()
    for where in (before, after, after2):
        window |= np.where((where >= 0)[:, None], held[where], False)
    chunk = np.array([max(items[h].similarity for h in s.holders) for s in sentences])
    rows = np.column_stack(
        [
            own,
            np.maximum(neighbour(before), neighbour(after)),
            (own + neighbour(after) + neighbour(after2)) / 3,
            chunk,
            chunk - max(c.similarity for c in items),
            np.array([max(items[h].lexical for h in s.holders) for s in sentences])
            / (max(c.lexical for c in items) or 1.0),
            np.log([min(items[h].dense_rank for h in s.holders) for s in sentences]),
            np.log([min(items[h].lexical_rank for h in s.holders) for s in sentences]),
            held[:n] @ idf / weight,
            window @ idf / weight,
            np.log([len(s.text) + 1 for s in sentences]),
            own - own.max(),
            *candidates.bank.features(vector, sentences).T,
        ]
    )
    return rows.astype(np.float64).reshape(-1, len(FEATURES)), set(terms)


def _around(s: Sentence) -> list[Sentence]:
    """The sentence before it and the two after it, where there are."""
    after = s.after.after if s.after else None
    return [x for x in (s.before, s.after, after) if x is not None]


def rank(
    question: str,
    vector: np.ndarray,
    candidates: Candidates,
    k: int,
    score: Callable[[np.ndarray], np.ndarray] | None = None,
    adapted: bool = True,
) -> Ranked:
    """The ``k`` best windows for ``question`` (fewer if the candidates hold fewer), scored by
    ``score`` (default: the fitted ranker for the embedder, adapted or not)."""
    sentences = gather(candidates) if candidates.items else []
    if not sentences:
        return Ranked([], [], np.zeros(0), np.zeros((0, len(FEATURES))), question)
    rows, _ = features(question, vector, candidates, sentences)
    scores = (score or ranker(adapted, len(candidates.bank) > 0))(rows)
    passages: list[Passage] = []
    used: set[int] = set()
    score_of = {id(s): float(x) for s, x in zip(sentences, scores, strict=True)}
    for i in np.argsort(-scores, kind="stable"):
        if id(sentences[i]) in used:
            continue
        # Next to a passage taken already, the window stops where that passage begins or ends.
        window = _window(sentences[i], used)
        best = sentences[i]
        source = candidates.items[best.holders[0]].chunk
        own = {id(s): score_of[id(s)] for s in window if id(s) in score_of}
        passage = Passage(window, best, float(scores[i]), float(rows[i, 0]), source, own)
        passages.append(passage)
        used.update(id(s) for s in window)
        if len(passages) == k:
            break
    return Ranked(passages, sentences, scores, rows, question)


def _window(best: Sentence, used: set[int]) -> list[Sentence]:
    """The window cut around ``best``; it takes no sentence in ``used`` (by id())."""
    window = [best]
    before = best.before
    if before is not None and best.start - before.start <= BEFORE and id(before) not in used:
        window.insert(0, before)
    nxt = best.after
    while nxt is not None and nxt.end - window[0].start <= WINDOW and id(nxt) not in used:
        window.append(nxt)
        nxt = nxt.after
    return window


def _joined(sentences: list[Sentence]) -> str:
    """The sentences as the lecture has them (a single space where a chunk boundary hid what
    separated two)."""
    return "".join(s.text + s.gap for s in sentences[:-1]) + sentences[-1].text


def passage_chunk(passage: Passage) -> Chunk:
    """The window as a chunk, with the metadata the API sends: the lecture's, where the window
    is in it, and a link (and times) from its first sentence when the transcript is timed."""
    meta = passage.source.metadata
    first, last = passage.sentences[0], passage.sentences[-1]
    metadata = {k: meta[k] for k in ("id", "link", "title", "source") if k in meta}
    metadata.update(chunk=meta.get("chunk"), start_char=first.start, end_char=last.end)
    if first.times and last.times:
        metadata.update(start=first.times[0], end=last.times[1])
        if "link" in meta:
            metadata["link"] = _link_at(meta["link"], first.times[0])
    return Chunk(text=passage.text, metadata=metadata)


def _link_at(link: str, seconds: float) -> str:
    """``link`` with its ``t=`` parameter moved to ``seconds`` (whole seconds)."""
    from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

    parts = urlsplit(link)
    query = {k: v for k, v in parse_qs(parts.query).items() if k != "t"}
    query["t"] = [str(int(seconds))]
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
