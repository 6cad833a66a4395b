"""The openai provider against a real OpenAI-compatible server.

llama-cpp-python's ``python -m llama_cpp.server`` (conftest.LlamaServer) runs SmolLM2-135M on
127.0.0.1 with an API key and ``--interrupt_requests False`` (a second request waits instead of
cutting the first short, as most servers behave), one prompt thread (see test_gguf.py) and
k=1 prompts, so a loaded 2-core machine still evaluates them in seconds. The model is too small
to answer well: the tests check the mechanics (tokens reach the SSE client, disconnects reach
the model server, the stream cap holds in front of it, a model server down, slow past the
timeout or killed mid-answer ends /karpathy-stream with an error event and /v1 with an error
chunk while passages keep coming, the key stays secret), not the words.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time

import httpx
import numpy as np
import pytest
from support.chat import word_pieces
from support.servers import LONG_QUESTION, LlamaServer, Server, base_env, free_port
from support.streams import ChatReader, StreamReader, passages, post_sse

from karpathy_gpt.answer import AnswerError
from karpathy_gpt.answer.openai import OpenAIAnswerer
from karpathy_gpt.conversation import retrieval_query
from karpathy_gpt.retrieval import Retrieval

SECRET = f"sk-kgpt-test-{secrets.token_hex(8)}"
MODEL = "smollm2"

pytestmark = [pytest.mark.gguf, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def llama(output_dir) -> LlamaServer:
    server = LlamaServer(output_dir / "llama-server.log", api_key=SECRET, model=MODEL)
    server.start()
    yield server
    server.stop()


def start_kgpt(llama: LlamaServer, index_dir, log_path, **settings: str) -> Server:
    defaults = {
        "KGPT_LLM_MODEL": MODEL,
        "KGPT_LLM_MAX_TOKENS": "160",
        "KGPT_LLM_TIMEOUT": "60",
        "KGPT_DEFAULT_K": "1",  # short prompts: a loaded 2-core machine evaluates ~60 tokens/s
    }
    env = base_env(
        KGPT_INDEX_DIR=str(index_dir),
        OPENAI_API_KEY=SECRET,
        OPENAI_BASE_URL=llama.url + "/v1",
        **{**defaults, **settings},
    )
    server = Server(env, log_path)
    server.wait_ready()
    return server


@pytest.fixture(scope="module")
def kgpt(llama, index_dir, output_dir) -> Server:
    server = start_kgpt(llama, index_dir, output_dir / "server-llama.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def capped(llama, index_dir, output_dir) -> Server:
    """One answer stream at a time (KGPT_MAX_STREAMS=1): the openai provider has no line of
    its own, so the server's cap is all that stands before the model server."""
    server = start_kgpt(
        llama, index_dir, output_dir / "server-llama-capped.log", KGPT_MAX_STREAMS="1"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def impatient(llama, index_dir, output_dir) -> Server:
    server = start_kgpt(
        llama, index_dir, output_dir / "server-llama-impatient.log", KGPT_LLM_TIMEOUT="2"
    )
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


def test_a_two_turn_chat_through_the_v1_api_is_answered_by_the_model(kgpt, llama):
    """The follow-up is rewritten by the model, and the answer streams through /v1."""
    import openai

    def model_requests() -> int:
        return llama.log().count("POST /v1/chat/completions")

    client = openai.OpenAI(base_url=kgpt.url + "/v1", api_key="unused", max_retries=0)
    before = model_requests()
    first = client.chat.completions.create(
        model="karpathy-gpt",
        messages=[{"role": "user", "content": "What is a bigram language model?"}],
    )
    reply = first.choices[0].message.content
    assert reply.strip()
    assert model_requests() == before + 1  # a first question is searched as asked
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
    assert model_requests() == before + 3  # the follow-up: its rewrite, then its answer


def test_a_model_server_that_reports_no_usage_in_streams_gets_it_counted(kgpt, llama):
    """llama-cpp-python's server ignores stream_options (no usage in a stream), and the
    provider always streams: the usage is then counted in word pieces, as documented."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    url = llama.url + "/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=llama.headers(), timeout=60) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: {")]
    assert lines and not any('"usage"' in line for line in lines)

    question = "What is a bigram language model?"
    chat = {"model": "karpathy-gpt", "messages": [{"role": "user", "content": question}]}
    reply = httpx.post(kgpt.url + "/v1/chat/completions", json=chat, timeout=120).json()
    answer = reply["choices"][0]["message"]["content"]
    passages = [source["text"] for source in reply["choices"][0]["sources"]]
    assert answer.strip()
    assert reply["usage"] == {
        "prompt_tokens": word_pieces(question, *passages),
        "completion_tokens": word_pieces(answer),
        "total_tokens": word_pieces(question, *passages) + word_pieces(answer),
    }


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


def test_the_openapi_schema_gives_this_servers_default_k(kgpt):
    paths = httpx.get(kgpt.url + "/openapi.json").json()["paths"]
    for path in ("/karpathy-stream", "/v1/chat/completions"):
        content = paths[path]["post"]["requestBody"]["content"]["application/json"]
        assert content["schema"]["properties"]["k"]["default"] == 1  # KGPT_DEFAULT_K


def test_a_model_name_the_server_does_not_serve_is_a_clear_error(llama):
    answerer = OpenAIAnswerer("gpt-imaginary", SECRET, llama.url + "/v1", timeout=30)
    message, _ = error_of(answerer)
    assert "gpt-imaginary" in message and MODEL in message and "KGPT_LLM_MODEL" in message


def test_a_base_url_without_its_v1_is_named_as_the_problem(llama):
    message, _ = error_of(OpenAIAnswerer(MODEL, SECRET, llama.url, timeout=30))
    assert "OPENAI_BASE_URL" in message and "/v1" in message
    assert "KGPT_LLM_MODEL" not in message  # the model is served: the path is what is wrong


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
    assert "OPENAI_BASE_URL" in message and "KGPT_ANSWERER=extractive" in message
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

    async def query(answerer: OpenAIAnswerer) -> str:  # what retrieval searches for
        try:
            return await retrieval_query(answerer, "How is it trained?", history, 60)
        finally:
            await answerer.aclose()

    again = OpenAIAnswerer(MODEL, SECRET, llama.url + "/v1", rewrite_timeout=60)
    assert asyncio.run(query(again)) == standalone.strip()[:60]  # temperature 0: same reply
    alone = OpenAIAnswerer(MODEL, SECRET, llama.url + "/v1")
    assert asyncio.run(alone.rewrite("What is a bigram?", [])) == "What is a bigram?"

    dead = OpenAIAnswerer(MODEL, SECRET, f"http://127.0.0.1:{free_port()}/v1")
    started = time.monotonic()
    assert asyncio.run(rewrite(dead)) is None
    assert time.monotonic() - started < 5
    gone = OpenAIAnswerer(MODEL, SECRET, f"http://127.0.0.1:{free_port()}/v1")
    assert asyncio.run(query(gone)) == "What is a bigram language model? How is it trained?"

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


def test_the_stream_cap_holds_in_front_of_the_model_server(capped):
    writing = StreamReader(capped.url + "/karpathy-stream", LONG_QUESTION)
    assert writing.first_token.wait(60)
    refused = httpx.post(capped.url + "/karpathy-stream", data={"question": "tanh"}, timeout=10)
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    assert "KGPT_MAX_STREAMS=1" in refused.json()["detail"]
    chat = {"model": "karpathy-gpt", "messages": [{"role": "user", "content": "tanh"}]}
    for stream in (False, True):
        busy = httpx.post(capped.url + "/v1/chat/completions", json={**chat, "stream": stream})
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "busy"
    _, docs = post_sse(capped.url + "/karpathy-docs", data={"question": "What is makemore?"})
    assert len(passages(docs)) == 1
    assert httpx.get(capped.url + "/healthz").json()["answer_streams"] == {"open": 1, "limit": 1}
    writing.leave()
    writing.join()
    deadline = time.monotonic() + 2
    while httpx.get(capped.url + "/healthz").json()["answer_streams"]["open"]:
        assert time.monotonic() < deadline, "the place of a client that left was not freed"
        time.sleep(0.02)
    next_one = StreamReader(capped.url + "/karpathy-stream", "What is a bigram?", stop_after=1)
    assert next_one.join().status == 200 and next_one.tokens


def test_a_model_server_slow_past_the_timeout_ends_every_answer_with_an_error(impatient, llama):
    """KGPT_LLM_TIMEOUT=2 while the model server is busy with someone else's long answer."""
    question = "What is a bigram?"
    stop = llama.keep_busy()
    replies: dict[str, httpx.Response] = {}
    try:
        started = time.monotonic()
        legacy = StreamReader(impatient.url + "/karpathy-stream", question)
        chat = ChatReader(impatient.url + "/v1/chat/completions", question)

        def plain() -> None:
            body = {"model": "karpathy-gpt", "messages": [{"role": "user", "content": question}]}
            replies["plain"] = httpx.post(
                impatient.url + "/v1/chat/completions", json=body, timeout=30
            )

        whole = threading.Thread(target=plain)
        whole.start()
        _, docs = post_sse(impatient.url + "/karpathy-docs", data={"question": question})
        assert len(passages(docs)) == 1  # passages need no model
        legacy.join(30), chat.join(30), whole.join(30)
        took = time.monotonic() - started
    finally:
        stop.set()
    print(f"three answers ended by the 2 s timeout within {took:.2f} s of asking")
    assert took < 10, f"the timeout took {took:.1f} s to end the answers"
    assert legacy.last_event == "error"
    message = json.loads(legacy.events[-1][2])["message"]
    assert "sent no token for 2 s" in message and "KGPT_LLM_TIMEOUT" in message
    assert chat.status == 200 and chat.last_event == "done" and chat.sources
    assert chat.error["code"] == "answerer_failed" and "KGPT_LLM_TIMEOUT" in chat.error["message"]
    plain = replies["plain"]
    assert plain.status_code == 502 and plain.json()["error"]["code"] == "answerer_failed"
    assert "KGPT_LLM_TIMEOUT" in plain.json()["error"]["message"]


def test_v1_a_model_server_killed_mid_answer_is_an_error_chunk_and_it_recovers(kgpt, llama):
    url = kgpt.url + "/v1/chat/completions"
    chat = ChatReader(url, LONG_QUESTION)
    assert chat.first_token.wait(60)
    llama.kill()
    try:
        chat.join(30)
        assert chat.last_event == "done" and chat.tokens and len(chat.sources) == 1
        assert chat.error["code"] == "answerer_failed" and chat.error["type"] == "api_error"
        assert llama.url in chat.error["message"] and "running" in chat.error["message"]
        # A model server that is not there at all: test_openai_compat.py.
    finally:
        llama.start()
    again = ChatReader(url, "What is a bigram model?").join()
    assert again.last_event == "done" and again.tokens and again.error is None


def test_the_key_is_never_logged_or_sent_to_the_client(kgpt):
    """Runs last: every request above went through this server with the key."""
    assert SECRET not in kgpt.log_path.read_text(errors="replace")
    _, events = post_sse(kgpt.url + "/karpathy-stream", data={"question": "tanh"})
    assert events and all(SECRET not in data for _, data in events)
