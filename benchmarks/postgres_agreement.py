"""How often PostgreSQL and the embedded store give the same passage in the same slot.

For every public question, both stores (same index, same vectors, the served embedder) are
compared twice: their candidates (the dense and BM25 top ``store.base.CANDIDATES`` chunks
the ranker starts from: the same chunks, with the same dense and BM25 ranks), and the top-k
passages ``Retriever.search`` cuts from them, slot by slot. HNSW is approximate, so one of the
dense top chunks may be missing on PostgreSQL; the passages differ only when that moves a
window.
Usage (needs `pip install -e '.[postgres]'`):

    .venv/bin/python benchmarks/postgres_agreement.py [--database-url URL] [--k 3 --k 10]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from karpathy_gpt.config import Settings
from karpathy_gpt.evaluation import DEFAULT_QUESTIONS, load_questions
from karpathy_gpt.index.backend import open_index, open_serving
from karpathy_gpt.retrieval import Retriever
from karpathy_gpt.text import normalise

REPO = Path(__file__).resolve().parents[1]


def ranks(candidates) -> dict[tuple[str, int], tuple[int, int]]:
    """Each candidate chunk (lecture, chunk number) -> its (dense, BM25) rank."""
    return {
        (c.chunk.metadata["id"], c.chunk.metadata["chunk"]): (c.dense_rank, c.lexical_rank)
        for c in candidates.items
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", help="default: a throwaway pgserver database")
    parser.add_argument("--index-dir", default=str(REPO / ".kgpt" / "test-index"))
    parser.add_argument("--k", type=int, action="append", help="slots to compare (3 and 10)")
    args = parser.parse_args()
    url = args.database_url
    if not url:
        import pgserver

        url = pgserver.get_server(
            Path(tempfile.mkdtemp(prefix="kgpt-agree-")) / "pgdata", cleanup_mode="delete"
        ).get_uri()
    settings = Settings(index_dir=Path(args.index_dir))
    local_store, embedder = open_serving(settings)  # the served index and its (adapted) model
    # Publishes the same index (its vectors, not embedded again) unless the database has it.
    pg_store = open_index(settings.model_copy(update={"database_url": url}), embedder)
    local, pg = Retriever(local_store, embedder), Retriever(pg_store, embedder)
    questions = load_questions(DEFAULT_QUESTIONS)
    print(f"{len(questions)} questions, embedder {embedder.name}")

    same_sets = same_ranks = found = wanted = 0
    for q in questions:
        query = normalise(q.question)
        vector = embedder.embed_one(query)
        a = ranks(local_store.candidates(query, vector))
        b = ranks(pg_store.candidates(query, vector))
        same_sets += a.keys() == b.keys()
        same_ranks += a == b
        found += len(a.keys() & b.keys())
        wanted += len(a)
    n = len(questions)
    print(
        f"candidates: the same chunks for {same_sets}/{n} questions, with the same ranks for "
        f"{same_ranks}/{n}; {found}/{wanted} of the embedded store's found by PostgreSQL"
    )

    for k in args.k or [3, 10]:
        same = 0
        for q in questions:
            a = [h.chunk.metadata for h in local.search(q.question, k).hits]
            b = [h.chunk.metadata for h in pg.search(q.question, k).hits]
            same += sum(x == y for x, y in zip(a, b, strict=False))
            if a != b:
                where = [[(m["id"], m["start_char"]) for m in hits] for hits in (a, b)]
                print(f"  top-{k} differs for {q.question!r}: embedded {where[0]} pg {where[1]}")
        total = k * len(questions)
        print(f"top-{k} passages: {same}/{total} slots agree ({same / total:.1%})")
    local_store.close()
    pg_store.close()


if __name__ == "__main__":
    main()
