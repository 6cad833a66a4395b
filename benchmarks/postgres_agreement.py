"""How often PostgreSQL and the embedded store return the same passage in the same slot.

For every public question, the top-k passages of both stores (same index, same vectors) are
compared slot by slot. Usage (needs `pip install -e '.[postgres]'`):

    .venv/bin/python benchmarks/postgres_agreement.py [--database-url URL] [--k 3 --k 10]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from karpathy_gpt.config import Settings
from karpathy_gpt.embedding import Embedder
from karpathy_gpt.evaluation import DEFAULT_QUESTIONS, load_questions
from karpathy_gpt.index.backend import open_index
from karpathy_gpt.retrieval import Retriever

REPO = Path(__file__).resolve().parents[1]


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
    embedder = Embedder()
    settings = Settings(index_dir=Path(args.index_dir))
    local = Retriever(open_index(settings, embedder), embedder)
    # Publishes the same index (its vectors, not embedded again) unless the database has it.
    pg = Retriever(
        open_index(settings.model_copy(update={"database_url": url}), embedder), embedder
    )
    questions = load_questions(DEFAULT_QUESTIONS)
    for k in args.k or [3, 10]:
        same = 0
        for q in questions:
            a = [h.chunk.metadata for h in local.search(q.question, k).hits]
            b = [h.chunk.metadata for h in pg.search(q.question, k).hits]
            same += sum(x == y for x, y in zip(a, b, strict=True))
            if a != b:
                ids = [(m["id"], m["chunk"]) for m in a], [(m["id"], m["chunk"]) for m in b]
                print(f"  top-{k} differs for {q.question!r}: embedded {ids[0]} postgres {ids[1]}")
        total = k * len(questions)
        print(f"top-{k}: {same}/{total} slots agree ({same / total:.1%})")


if __name__ == "__main__":
    main()
