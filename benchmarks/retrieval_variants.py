"""Ranking variants on the labelled questions, from one loaded model and index, seconds each.

Prints hit@1, hit@3 and MRR@10 of every variant on the public questions
(``../shared/eval/questions.jsonl``) and on the development questions
(``benchmarks/data/dev-questions.jsonl``, 35 more, written before any variant was run on them),
with each question's first-hit rank (``-``: not in the top 10). ``served`` is the product's own
ranking (``Store.search``); the others are built here from the same vectors and BM25 index.

    .venv/bin/python benchmarks/retrieval_variants.py                 # every variant
    .venv/bin/python benchmarks/retrieval_variants.py served rrf      # some of them
    .venv/bin/python benchmarks/retrieval_variants.py --loo           # dense weight, leave-one-out
    .venv/bin/python benchmarks/retrieval_variants.py --perturb 0.995 # vectors moved a little
    .venv/bin/python benchmarks/retrieval_variants.py --show 5 served dense bm25
    .venv/bin/python benchmarks/retrieval_variants.py --glossary extended  # re-embeds once
    .venv/bin/python benchmarks/retrieval_variants.py --chunk-sizes 400,1200  # embeds once

``--perturb COS`` adds Gaussian noise to every chunk and question vector so that its cosine to the
original is about COS (an int8 or ONNX export of the model moves vectors by about that much) and
reports the mean over 10 draws: a variant whose gain vanishes there only won by a hair.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_EN_PLUS

from karpathy_gpt.chunking import Chunk
from karpathy_gpt.config import Settings
from karpathy_gpt.corpus import read_corpus
from karpathy_gpt.embedding import DIMENSIONS, MODEL_NAME, Embedder
from karpathy_gpt.embedding_cache import EmbeddingCache
from karpathy_gpt.evaluation import DEFAULT_QUESTIONS, Labelled, load_questions, score_ranks
from karpathy_gpt.index.backend import ingest
from karpathy_gpt.index.build import build_store
from karpathy_gpt.store.local import CANDIDATES, LocalStore
from karpathy_gpt.text import normalise, sentence_spans

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variant_parts import (  # noqa: E402
    DEV_QUESTIONS,
    REPO,
    Lexical,
    by,
    fuse,
    row,
    searchable_form,
    top,
)


@dataclass
class Bench:
    store: LocalStore
    questions: list[Labelled]
    queries: list[str]  # normalised questions
    vectors: np.ndarray  # their embeddings
    embeddings: np.ndarray  # chunk embeddings (writable: --perturb moves them)
    lexical: Lexical  # the served tokenizer (Lucene's 33 stop words)
    lexical_nltk: Lexical  # NLTK's 179 English stop words: question words stripped
    lectures: np.ndarray  # lecture id of each chunk
    sized: dict[int, LocalStore]  # --chunk-sizes: indexes of the same corpus cut otherwise
    served_of: dict[int, list[int]] = field(default_factory=dict)  # their chunks -> served ones

    def dense(self, q: int) -> np.ndarray:
        return self.embeddings @ self.vectors[q]

    def best_sentence(self, q: int) -> np.ndarray:
        offsets = self.store.sentence_offsets
        return np.maximum.reduceat(
            np.asarray(self.store.sentence_vectors) @ self.vectors[q], offsets[:-1]
        )

    def lecture_prior(self, q: int) -> np.ndarray:
        ids = sorted(set(self.lectures))
        centroids = np.stack([self.embeddings[self.lectures == i].mean(0) for i in ids])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        return (centroids @ self.vectors[q])[[ids.index(i) for i in self.lectures]]

    def rocchio(self, q: int, feedback: list[int], beta: float) -> np.ndarray:
        """Dense scores of the question moved towards the mean of its first results (pseudo-
        relevance feedback)."""
        moved = self.vectors[q] + beta * self.embeddings[feedback].mean(0)
        return self.embeddings @ (moved / np.linalg.norm(moved))

    def without_neighbours(self, order: list[int]) -> list[int]:
        """Drop a chunk when the chunk before or after it (they overlap) is already listed."""
        kept, listed = [], set()
        for i in order:
            meta = self.store.chunks[i].metadata
            if not {(meta["id"], meta["chunk"] - 1), (meta["id"], meta["chunk"] + 1)} & listed:
                kept.append(i)
                listed.add((meta["id"], meta["chunk"]))
        return kept

    def mmr(self, order: list[int], balance: float, pool: int = 30) -> list[int]:
        """Maximal marginal relevance over the fused top ``pool`` (relevance: 1 / position)."""
        candidates = order[:pool]
        relevance = {i: 1.0 / n for n, i in enumerate(candidates, start=1)}
        chosen: list[int] = []
        while candidates and len(chosen) < 10:

            def value(i: int) -> float:
                redundancy = max(
                    (float(self.embeddings[i] @ self.embeddings[j]) for j in chosen), default=0.0
                )
                return balance * relevance[i] - (1 - balance) * redundancy

            best = max(candidates, key=value)
            chosen.append(best)
            candidates.remove(best)
        return chosen


def served_chunk(b: Bench, chunk: Chunk) -> int:
    """The served chunk holding the middle of ``chunk`` (a chunk of another size)."""
    middle = (chunk.metadata["start_char"] + chunk.metadata["end_char"]) / 2
    same = [n for n, c in enumerate(b.store.chunks) if c.metadata["id"] == chunk.metadata["id"]]
    return min(
        same,
        key=lambda n: (
            not b.store.chunks[n].metadata["start_char"]
            <= middle
            < b.store.chunks[n].metadata["end_char"],
            abs(b.store.chunks[n].metadata["start_char"] - middle),
        ),
    )


def sized_rankings(b: Bench, q: int, size: int) -> list[list[int]]:
    """Dense and BM25 rankings over chunks of ``size``, as served chunks (first mention kept)."""
    store = b.store if size not in b.sized else b.sized[size]
    dense, _ = store.dense_ranking(b.vectors[q], CANDIDATES)
    lexical = store.lexical_ranking(b.queries[q], CANDIDATES)
    if store is b.store:
        return [dense, lexical]
    if size not in b.served_of:
        b.served_of[size] = [served_chunk(b, c) for c in store.chunks]
    return [list(dict.fromkeys(b.served_of[size][i] for i in r)) for r in (dense, lexical)]


def variants(b: Bench) -> dict[str, Callable[[int], list[int] | list[Chunk]]]:
    def bm25(q: int) -> list[int]:
        return top(b.lexical.scores(b.queries[q]), positive=True)

    def rrf(q: int, dense_weight: float = 1.0, lexical: list[int] | None = None) -> list[int]:
        d = b.dense(q)
        return fuse([top(d), bm25(q) if lexical is None else lexical], [dense_weight, 1.0], d)

    out: dict[str, Callable[[int], list[int]]] = {
        "served": lambda q: [
            b.store.chunks.index(h.chunk) for h in b.store.search(b.queries[q], b.vectors[q], 10)
        ],
        "dense": lambda q: top(b.dense(q)),
        "bm25": bm25,
        "bm25 nltk stop words": lambda q: top(b.lexical_nltk.scores(b.queries[q]), positive=True),
        "rrf": rrf,  # equal weights: what was served before
    }
    for w in (2, 3, 4):
        out[f"rrf dense x{w}"] = lambda q, w=w: rrf(q, w)
    out["rrf dense x3, nltk stop words"] = lambda q: rrf(
        q, 3, top(b.lexical_nltk.scores(b.queries[q]), positive=True)
    )
    out["rrf dense x3 + coverage"] = lambda q: fuse(
        [
            top(b.dense(q)),
            bm25(q),
            by(b.lexical.coverage(b.queries[q]), b.lexical.scores(b.queries[q])),
        ],
        [3, 1, 1],
        b.dense(q),
    )
    out["rrf dense x3, coverage for bm25"] = lambda q: rrf(
        q, 3, by(b.lexical.coverage(b.queries[q]), b.lexical.scores(b.queries[q]))
    )
    for window in (1, 2, 3):
        out[f"rrf + {window}-sentence coverage"] = lambda q, window=window: fuse(
            [
                top(b.dense(q)),
                bm25(q),
                by(b.lexical.coverage(b.queries[q], window), b.lexical.scores(b.queries[q])),
            ],
            [1, 1, 1],
            b.dense(q),
        )
    out["rrf + best sentence"] = lambda q: fuse(
        [top(b.dense(q)), top(b.best_sentence(q)), bm25(q)], [1, 1, 1], b.dense(q)
    )
    out["rrf dense x3 + best sentence"] = lambda q: fuse(
        [top(b.dense(q)), top(b.best_sentence(q)), bm25(q)], [3, 1, 1], b.dense(q)
    )
    for beta in (0.3, 1.0):
        out[f"rrf dense x3, lecture prior {beta}"] = lambda q, beta=beta: fuse(
            [top(b.dense(q) + beta * b.lecture_prior(q)), bm25(q)],
            [3, 1],
            b.dense(q) + beta * b.lecture_prior(q),
        )
    for m, beta in ((5, 0.6), (10, 0.6), (10, 1.0)):
        out[f"rrf dense x3, rocchio top {m} x{beta}"] = lambda q, m=m, beta=beta: fuse(
            [top(d := b.rocchio(q, out["served"](q)[:m], beta)), bm25(q)], [3, 1], d
        )
    for weight in (0.5, 1.0):
        out[f"rrf dense x3, bm25 + word pairs x{weight}"] = lambda q, weight=weight: rrf(
            q, 3, top(b.lexical.with_pairs(b.queries[q], weight), positive=True)
        )

    def rm3(q: int, m: int, n: int, weight: float) -> list[int]:
        return rrf(q, 3, top(b.lexical.rm3(b.queries[q], m, n, weight), positive=True))

    for m, n, w in ((5, 10, 0.3), (5, 10, 0.7), (10, 20, 0.5)):
        out[f"rrf dense x3, rm3 top {m}, {n} words x{w}"] = lambda q, m=m, n=n, w=w: rm3(q, m, n, w)
    out["rrf, neighbours dropped"] = lambda q: b.without_neighbours(rrf(q))
    out["rrf dense x3, neighbours dropped"] = lambda q: b.without_neighbours(rrf(q, 3))
    for balance in (0.5, 0.7):
        out[f"rrf, mmr {balance}"] = lambda q, balance=balance: b.mmr(rrf(q), balance)
    for size, store in b.sized.items():
        out[f"rrf of {size}-character chunks"] = lambda q, store=store: [
            store.chunks[i]
            for i in fuse(
                [
                    store.dense_ranking(b.vectors[q], CANDIDATES)[0],
                    store.lexical_ranking(b.queries[q], CANDIDATES),
                ],
                [1, 1],
                np.asarray(store.embeddings) @ b.vectors[q],
            )
        ]
    if b.sized:
        sizes = [800, *b.sized]
        out[f"rrf of {'+'.join(map(str, sizes))} on served chunks"] = lambda q: fuse(
            [r for size in sizes for r in sized_rankings(b, q, size)],
            [1.0] * 2 * len(sizes),
            b.dense(q),
        )
    return out


def ranks(b: Bench, ranker: Callable[[int], list[int]]) -> list[int | None]:
    out = []
    for q, question in enumerate(b.questions):
        order = [b.store.chunks[i] if isinstance(i, int) else i for i in ranker(q)[:10]]
        out.append(next((n for n, c in enumerate(order, 1) if question.is_hit(c)), None))
    return out


def load(args: argparse.Namespace) -> Bench:
    embedder = Embedder()
    store = ingest(Settings(index_dir=Path(args.index_dir)), embedder).store  # built if missing
    form = searchable_form(args.glossary, args.strip_filler)
    searchable = [form(c.text) for c in store.chunks]
    if args.glossary == "served" and not args.strip_filler:
        embeddings = np.array(store.embeddings, dtype=np.float32)
    else:  # another searchable form: chunks it changes are embedded (once, then cached)
        cache = EmbeddingCache.load(Path(args.index_dir), MODEL_NAME)
        row_of = {normalise(c.text): n for n, c in enumerate(store.chunks)}
        known = cache.missing(list(row_of))  # seed the cache with the index's own vectors
        cache.add(known, np.asarray(store.embeddings)[[row_of[t] for t in known]])
        missing = cache.missing(searchable)
        cache.add(missing, embedder.embed(missing))
        cache.save()
        embeddings = np.array(cache.get(searchable, DIMENSIONS), dtype=np.float32)
    sentences = [[form(c.text[s:e]) for s, e in sentence_spans(c.text)] for c in store.chunks]
    sized = {}
    if args.chunk_sizes:
        settings = Settings(index_dir=Path(args.index_dir))
        lectures = read_corpus(settings.resolved_corpus_dir()).lectures
        cache = EmbeddingCache.load(settings.index_dir, MODEL_NAME)
        for size in (int(x) for x in args.chunk_sizes.split(",")):
            cut = settings.model_copy(
                update={"chunk_size": size, "chunk_overlap": min(settings.chunk_overlap, size // 4)}
            )
            sized[size], _ = build_store(lectures, cut, embedder, cache, name=f"{size} characters")
        cache.save()
    questions = load_questions(Path(args.questions)) + load_questions(Path(args.dev_questions))
    queries = [form(q.question) for q in questions]
    return Bench(
        store=store,
        questions=questions,
        queries=queries,
        vectors=embedder.embed(queries),
        embeddings=embeddings,
        lexical=Lexical(searchable, sentences, list(STOPWORDS_EN)),
        lexical_nltk=Lexical(searchable, sentences, list(STOPWORDS_EN_PLUS)),
        lectures=np.array([c.metadata["id"] for c in store.chunks]),
        sized=sized,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="*", help="names to run (default: all)")
    parser.add_argument("--index-dir", default=str(REPO / ".kgpt" / "test-index"))
    parser.add_argument("--questions", default=str(DEFAULT_QUESTIONS))
    parser.add_argument("--dev-questions", default=str(DEV_QUESTIONS))
    parser.add_argument("--glossary", choices=["served", "extended"], default="served")
    parser.add_argument("--chunk-sizes", help="e.g. 400,1200: indexes of other sizes as well")
    parser.add_argument("--strip-filler", action="store_true", help="spoken filler out of search")
    parser.add_argument("--loo", action="store_true", help="leave-one-out choice of dense weight")
    parser.add_argument("--perturb", type=float, metavar="COS", help="mean over 10 noisy copies")
    parser.add_argument("--show", type=int, action="append", default=[], metavar="N")
    args = parser.parse_args()
    b = load(args)
    public = len(load_questions(Path(args.questions)))
    table = variants(b)
    names = args.variants or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(table)}")
    for n in args.show:
        print(f"\n## {b.questions[n].question}")
        for name in names:
            order = [b.store.chunks[i] if isinstance(i, int) else i for i in table[name](n)[:5]]
            cells = [
                f"{c.metadata['id']}/{c.metadata['chunk']}"
                + ("*" if b.questions[n].is_hit(c) else " ")
                for c in order
            ]
            print(f"  {name:34s} {' '.join(cells)}")
    if args.show:
        return
    header = f"{'variant':34s} public h@1 h@3 MRR    dev h@1 h@3 MRR  | ranks: public | dev"
    if args.loo:
        leave_one_out(b, public)
    elif args.perturb:
        perturbed(b, table, names, args.perturb, public)
    else:
        print(header)
        for name in names:
            print(row(name, ranks(b, table[name]), public), flush=True)


def leave_one_out(b: Bench, public: int) -> None:
    """Choose the dense weight on 49 questions by MRR, score the 50th with it; every question."""
    weights = (1, 1.25, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 8, 12)
    lexical = [top(b.lexical.scores(b.queries[q]), positive=True) for q in range(len(b.queries))]
    by_weight = {}
    for w in weights:
        by_weight[w] = ranks(
            b, lambda q, w=w: fuse([top(b.dense(q)), lexical[q]], [w, 1], b.dense(q))
        )
        print(row(f"rrf dense x{w}", by_weight[w], public))
    rr = {w: [1.0 / r if r else 0.0 for r in by_weight[w]] for w in weights}
    chosen, held_out = [], []
    for q in range(len(b.questions)):
        best = max(weights, key=lambda w: (sum(rr[w]) - rr[w][q], -abs(w - 1)))
        chosen.append(best)
        held_out.append(by_weight[best][q])
    print(row("leave-one-out", held_out, public))
    print("weights chosen:", dict(Counter(chosen)))


def perturbed(b: Bench, table: dict, names: list[str], cos: float, public: int) -> None:
    clean_chunks, clean_queries = b.embeddings.copy(), b.vectors.copy()
    sigma = np.sqrt((1 / cos**2 - 1) / DIMENSIONS)
    totals = {name: np.zeros(6) for name in names}
    draws = 10
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        for clean, target in ((clean_chunks, b.embeddings), (clean_queries, b.vectors)):
            noisy = clean + rng.normal(0, sigma, clean.shape).astype(np.float32)
            target[:] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
        for name in names:
            if name == "served":
                continue  # the store keeps its own (clean) vectors
            r = ranks(b, table[name])
            a, d = score_ranks(r[:public]), score_ranks(r[public:])
            totals[name] += [
                a.hit_at_1,
                a.hit_at_3,
                a.mrr_at_10,
                d.hit_at_1,
                d.hit_at_3,
                d.mrr_at_10,
            ]
    moved = float(np.mean(np.sum(b.embeddings * clean_chunks, axis=1)))
    print(f"mean of {draws} draws, cosine to the clean vectors {moved:.4f}")
    print(f"{'variant':34s} public h@1 h@3 MRR     dev h@1 h@3 MRR")
    for name in names:
        if name != "served":
            t = totals[name] / draws
            public_part = f"{t[0]:5.1f} {t[1]:4.1f} {t[2]:6.3f}"
            print(f"{name:34s} {public_part}  {t[3]:5.1f} {t[4]:4.1f} {t[5]:6.3f}")


if __name__ == "__main__":
    main()
