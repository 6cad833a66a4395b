"""/karpathy-docs latency with the index in PostgreSQL + pgvector vs the embedded index.

Both stores serve the same index through a real uvicorn server, measured in the same run, at the
real corpus and at synthetic corpora of N chunks. A synthetic corpus is lectures of sentences
resampled (uniformly, with replacement) from the real transcripts, chunked by the real chunker.
Embedding 100k chunks with MiniLM on two busy cores would take hours (the script measures the
rate on a sample and prints the estimate), so the sentences are embedded once (they are the real
corpus's sentences, already in its index) and each synthetic chunk's vector is the normalised
mean of its sentences' vectors; sentence vectors, text, and BM25 postings are exact.
Each row also says how far the stores agree at that size (see ``agreement``). Means of random
sentences' vectors crowd together more than real chunk vectors do (a question's cosines to them
spread less), which makes HNSW's approximate search miss more: a pessimistic case for recall.
The packaged model serves every corpus here (KGPT_ADAPT=false): a corpus of resampled sentences
cannot be adapted to in any reasonable time, and the latency of a store does not depend on the
weights that made its vectors. ``search only`` is ``store.candidates`` (the dense and BM25 top
chunks a search starts from, ``CANDIDATES`` each), the question already embedded.
Usage (needs `pip install -e '.[postgres,bench]'`):

    .venv/bin/python benchmarks/postgres_vs_embedded.py [--sizes 10000,100000] [--requests 60]
        [--index-dir .kgpt/bench-index]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import REPO, Server, start  # noqa: E402

from karpathy_gpt import ranking
from karpathy_gpt.chunking import chunk_lectures
from karpathy_gpt.config import Settings
from karpathy_gpt.corpus import corpus_fingerprint, load_corpus
from karpathy_gpt.embedding import Embedder
from karpathy_gpt.evaluation import DEFAULT_QUESTIONS, load_questions
from karpathy_gpt.index import embedded
from karpathy_gpt.index.backend import open_serving
from karpathy_gpt.index.build import index_key
from karpathy_gpt.store.local import CANDIDATES, LocalStore
from karpathy_gpt.store.postgres import PostgresStore
from karpathy_gpt.text import normalise, sentence_spans

LECTURE_CHARS = 400_000  # one synthetic lecture: ~500 chunks


def sentence_table(store: LocalStore) -> dict[str, np.ndarray]:
    """Every (normalised) sentence of the real index -> its vector, as computed at ingest."""
    table = {}
    for i, chunk in enumerate(store.chunks):
        start = store.sentence_offsets[i]
        for j, (s, e) in enumerate(sentence_spans(chunk.text)):
            table.setdefault(normalise(chunk.text[s:e]), store.sentence_vectors[start + j])
    return table


def raw_sentences(corpus_dir: Path) -> list[str]:
    return [
        lecture.text[s:e]
        for lecture in load_corpus(corpus_dir)
        for s, e in sentence_spans(lecture.text)
    ]


def write_synthetic_corpus(folder: Path, sentences: list[str], chunks: int, seed: int) -> Path:
    """Lectures of resampled sentences, about ``chunks`` chunks in all (at 800/100 settings)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total_chars = chunks * 700  # chunks advance ~700 characters (800 minus the overlap)
    manifest = []
    n = 0
    while total_chars > 0:
        size = min(LECTURE_CHARS, total_chars)
        parts, length = [], 0
        while length < size:
            sentence = rng.choice(sentences)
            parts.append(sentence)
            length += len(sentence) + 1
        total_chars -= length
        n += 1
        (folder / f"s{n:04d}.txt").write_text(" ".join(parts))
        manifest.append(
            {
                "id": f"s{n:04d}",
                "title": f"Synthetic lecture {n}",
                "link": f"https://example.invalid/s{n}",
                "transcript": f"s{n:04d}.txt",
            }
        )
    (folder / "videos.json").write_text(json.dumps(manifest))
    return folder


def compose_index(
    settings: Settings, table: dict[str, np.ndarray], embedder: Embedder
) -> tuple[LocalStore, int]:
    """The synthetic corpus's index with composed chunk vectors; returns it and how many
    sentences were not in the table (cut differently by the splitter) and had to be embedded."""
    lectures = load_corpus(settings.resolved_corpus_dir())
    chunks = chunk_lectures(lectures, settings.chunk_size, settings.chunk_overlap)
    chunk_sentences = [[normalise(c.text[s:e]) for s, e in sentence_spans(c.text)] for c in chunks]
    missing = sorted({s for ss in chunk_sentences for s in ss if s not in table})
    if missing:
        table = {**table, **dict(zip(missing, embedder.embed(missing), strict=True))}
    sentence_vectors = [
        np.array([table[s] for s in ss], dtype=np.float32) for ss in chunk_sentences
    ]
    embeddings = np.vstack([v.mean(axis=0) for v in sentence_vectors]).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    searchable = [normalise(c.text) for c in chunks]
    return LocalStore.build(chunks, searchable, embeddings, sentence_vectors), len(missing)


def embedding_rate(embedder: Embedder, store: LocalStore, n: int = 128) -> float:
    """Texts per second MiniLM embeds here (chunks of the synthetic index, real sizes)."""
    texts = [normalise(c.text) for c in store.chunks[:n]]
    with embedder.threads(os.cpu_count() or 1):
        started = time.perf_counter()
        embedder.embed(texts)
        return n / (time.perf_counter() - started)


def measure(
    envs: dict[str, dict[str, str]], questions: list[str], requests: int, work: Path
) -> tuple[int, dict[str, list[float]]]:
    """Seconds per /karpathy-docs request of one fresh server per store, all running at once
    and asked in turn (the order flipped every round), so both see the same machine load."""
    servers: dict[str, Server] = {}
    try:
        for name, env in envs.items():
            servers[name] = start(name, ["karpathy_app:app"], env, work / f"{name}.log")
        times: dict[str, list[float]] = {name: [] for name in envs}
        with httpx.Client(timeout=120) as client:
            chunks = {
                client.get(server.url + "/healthz").json()["chunks"] for server in servers.values()
            }
            assert len(chunks) == 1, f"the stores hold different indexes: {chunks}"
            for i in range(requests + 5):  # the first five of each are warm-up
                question = questions[i % len(questions)] + "?" * (i // len(questions))
                order = list(servers.items())
                for name, server in order if i % 2 else order[::-1]:
                    started = time.perf_counter()
                    response = client.post(
                        server.url + "/karpathy-docs", data={"question": question}
                    )
                    response.read()
                    if i >= 5:
                        times[name].append(time.perf_counter() - started)
                    assert response.status_code == 200 and "data:" in response.text
        return chunks.pop(), times
    finally:
        for server in servers.values():
            server.stop()


Query = tuple[str, str, np.ndarray]  # the question, normalised, and its embedding


def search_times(stores: dict[str, object], queries: list[Query], rounds: int) -> dict:
    """Seconds per store.candidates alone (query already embedded), the stores asked in turn."""
    times: dict[str, list[float]] = {name: [] for name in stores}
    for i in range(rounds + 5):
        _, query, vector = queries[i % len(queries)]
        order = list(stores.items())
        for name, store in order if i % 2 else order[::-1]:
            started = time.perf_counter()
            found = store.candidates(query, vector)
            if i >= 5:
                times[name].append(time.perf_counter() - started)
            assert found.items
    return times


def passages(store, question: str, query: str, vector: np.ndarray, k: int = 3) -> list[dict]:
    """The metadata of the top-k passages the ranker cuts from ``store``'s candidates."""
    ranked = ranking.rank(question, vector, store.candidates(query, vector), k, adapted=False)
    return [ranking.passage_chunk(p).metadata for p in ranked.passages]


def agreement(index: LocalStore, store: PostgresStore, queries: list[Query]) -> dict:
    """How far Postgres returns what the embedded store returns, at this size: top-3 passage
    slots; the BM25 top ``CANDIDATES`` (compared by score, as exact ties may come in either
    order); the HNSW dense top ``CANDIDATES``' recall of the exact one; and how many questions
    get exactly the same candidate chunks (what the ranker starts from)."""
    slots = bm25_same = recalled = same_candidates = 0
    for question, query, vector in queries:
        want = passages(index, question, query, vector)
        got = passages(store, question, query, vector)
        slots += sum(a == b for a, b in zip(want, got, strict=False))
        scores = index.lexical_scores(query)
        best = np.sort(scores[scores > 0])[::-1][:CANDIDATES]
        lexical = store.lexical_top(query)
        stored = [score for _, score in lexical]
        bm25_same += len(stored) == len(best) and np.allclose(stored, best, rtol=1e-6)
        dense, _ = index.dense_ranking(vector, CANDIDATES)
        recalled += len(set(dense) & set(store.hnsw_top(vector)))
        chunks = [
            {
                (c.chunk.metadata["id"], c.chunk.metadata["chunk"])
                for c in s.candidates(query, vector).items
            }
            for s in (index, store)
        ]
        same_candidates += chunks[0] == chunks[1]
    return {
        "top3_slots_same": f"{slots}/{3 * len(queries)}",
        f"bm25_top{CANDIDATES}_same": f"{bm25_same}/{len(queries)}",
        f"dense_recall_at_{CANDIDATES}": round(recalled / (CANDIDATES * len(queries)), 3),
        "candidates_same": f"{same_candidates}/{len(queries)}",
    }


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000", help="synthetic corpus sizes (chunks)")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--database-url", help="use this database instead of a pgserver one")
    parser.add_argument("--work-dir", default=None, help="keep indexes here (default: temp)")
    parser.add_argument("--plot", default=str(REPO / "benchmarks" / "postgres_vs_embedded.png"))
    parser.add_argument(
        "--index-dir",
        default=str(REPO / ".kgpt" / "bench-index"),
        help="the real corpus's index with the packaged model (built there if missing)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("karpathy_gpt.store.postgres").setLevel(logging.INFO)  # publish steps

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="kgpt-bench-pg-"))
    work.mkdir(parents=True, exist_ok=True)
    database_url = args.database_url
    if not database_url:
        import pgserver

        server = pgserver.get_server(work / "pgdata", cleanup_mode="stop")
        database_url = server.get_uri()
    questions = [q.question for q in load_questions(DEFAULT_QUESTIONS)]
    real_settings = Settings(index_dir=Path(args.index_dir), adapt=False)
    real, embedder = open_serving(real_settings)
    queries = [(q, normalise(q), embedder.embed_one(normalise(q))) for q in questions]
    table = sentence_table(real)
    sentences = raw_sentences(real_settings.resolved_corpus_dir())

    corpora = [("real", real_settings, real, 0.0, 0)]
    for size in [int(s) for s in args.sizes.split(",") if s]:
        settings = Settings(
            corpus_dir=write_synthetic_corpus(work / f"corpus-{size}", sentences, size, seed=size),
            index_dir=work / "index",
            adapt=False,
        )
        started = time.perf_counter()
        index, missing = compose_index(settings, table, embedder)
        corpora.append(
            (f"synthetic {size}", settings, index, time.perf_counter() - started, missing)
        )

    results = []
    for name, settings, index, compose_s, missing in corpora:
        fingerprint = corpus_fingerprint(load_corpus(settings.resolved_corpus_dir()))
        key = index_key(fingerprint, settings, embedder.name)
        started = time.perf_counter()
        meta = {"key": key, "synthetic": name != "real", "model": embedder.name}
        if not (settings.index_dir / key).is_dir():
            embedded.save(index.index, settings.index_dir, key, meta)
        save_s = time.perf_counter() - started
        store = PostgresStore(database_url)
        started = time.perf_counter()
        with store.writer() as writer:
            active = store.active_version()
            if active is None or active.index_key != key:
                writer.publish(key, meta, index.index)
        publish_s = time.perf_counter() - started
        store.close()
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "KGPT_CORPUS_DIR": str(settings.resolved_corpus_dir()),
            "KGPT_INDEX_DIR": str(settings.index_dir),
            "KGPT_ADAPT": "false",
        }
        chunks, http = measure(
            {"embedded": env, "postgres": {**env, "KGPT_DATABASE_URL": database_url}},
            questions,
            args.requests,
            work,
        )
        assert chunks == len(index)
        store = PostgresStore(database_url)
        try:
            alone = search_times({"embedded": index, "postgres": store}, queries, args.requests)
            same = agreement(index, store, queries)
        finally:
            store.close()
        row = {
            "corpus": name,
            "chunks": len(index),
            "embedded": summary(http["embedded"]),
            "postgres": summary(http["postgres"]),
            "search_only": {store: summary(times) for store, times in alone.items()},
            "compose_s": round(compose_s, 1),
            "missing_sentences_embedded": missing,
            "embedded_save_s": round(save_s, 1),
            "postgres_publish_s": round(publish_s, 1),
            **same,
        }
        row["p50_ratio_pg_over_embedded"] = round(
            row["postgres"]["p50_ms"] / row["embedded"]["p50_ms"], 2
        )
        row["search_only_p50_ratio"] = round(
            row["search_only"]["postgres"]["p50_ms"] / row["search_only"]["embedded"]["p50_ms"], 2
        )
        if name != "real":
            rate = embedding_rate(embedder, index)
            sentences_total = int(index.sentence_offsets[-1])
            row["embedding_rate_texts_per_s"] = round(rate, 1)
            row["estimated_embedding_hours"] = round(
                (len(index) + sentences_total) / rate / 3600, 1
            )
        results.append(row)
        print(json.dumps(row), flush=True)
    plot(results, Path(args.plot))
    print(f"plot: {args.plot}")
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["chunks"] for r in results]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = [
        (axes[0], lambda r, store: r[store], "/karpathy-docs over HTTP (ms)"),
        (axes[1], lambda r, store: r["search_only"][store], "store.candidates alone (ms)"),
    ]
    for ax, pick, title in panels:
        for store, marker in [("embedded", "o"), ("postgres", "s")]:
            for stat, style in [("p50_ms", "-"), ("p95_ms", ":")]:
                ax.plot(
                    sizes,
                    [pick(r, store)[stat] for r in results],
                    marker=marker,
                    linestyle=style,
                    label=f"{store} {stat[:3]}",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("chunks in the index")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("Embedded index vs PostgreSQL + pgvector, latency against corpus size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
