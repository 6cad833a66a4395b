"""/v1 through the official ``openai`` client and a plain line parser, against the real server:
models, both modes, sources, a two-turn conversation, the refusals, a failing answer provider."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from support.servers import Server, base_env, free_port

MODEL = "karpathy-gpt"
QUESTION = "What is a bigram language model?"
FOLLOW_UP = "And in which lecture is that explained?"


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0) as c:
        yield c


def ask(client: openai.OpenAI, *messages: dict, **options):
    return client.chat.completions.create(model=MODEL, messages=list(messages), **options)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def sources_of(choice) -> list[dict]:
    return choice.model_extra["sources"]


def test_models_lists_the_corpus_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert models.data[0].object == "model" and models.data[0].owned_by
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_non_streaming_completion_has_the_answer_and_its_sources(client):
    completion = ask(client, user(QUESTION))
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-") and completion.model == MODEL
    (choice,) = completion.choices
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    answer = choice.message.content
    assert "bigram" in answer.lower() and "[1]" in answer
    sources = sources_of(choice)
    assert len(sources) == 3
    for n, source in enumerate(sources, start=1):
        assert source["index"] == n and source["object"] == "context.chunk"
        assert source["lecture_id"] == source["document"]["doc_id"]
        assert source["title"] and source["link"].startswith("https://youtu.be/")
        assert len(source["text"]) > 100
    assert sources[0]["lecture_id"] == "02"
    assert "bigram" in sources[0]["text"].lower()


def test_streaming_chunks_carry_sources_first_then_tokens_then_stop(client):
    chunks = list(ask(client, user(QUESTION), stream=True))
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    first, last = chunks[0], chunks[-1]
    assert first.choices[0].delta.role == "assistant"
    assert len(sources_of(first.choices[0])) == 3
    assert last.choices[0].finish_reason == "stop"
    tokens = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(tokens) > 5 and all(tokens)
    streamed = "".join(tokens)
    # The same retrieval and answerer as the non-streaming reply, so the same text.
    assert streamed == ask(client, user(QUESTION)).choices[0].message.content


def test_stream_is_plain_sse_a_line_parser_can_read(server):
    body = {"model": MODEL, "messages": [user("What is makemore?")], "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    assert "\r" not in raw
    blocks = [b for b in raw.split("\n\n") if b and not b.startswith(":")]
    assert blocks[-1] == "data: [DONE]"
    text = ""
    for block in blocks[:-1]:
        assert block.startswith("data: ") and "\n" not in block
        chunk = json.loads(block[len("data: ") :])
        text += chunk["choices"][0]["delta"].get("content") or ""
    assert "makemore" in text.lower()


def test_a_follow_up_is_retrieved_with_the_conversation(client):
    first = ask(client, user(QUESTION))
    answer = first.choices[0].message.content
    conversation = [user(QUESTION), {"role": "assistant", "content": answer}, user(FOLLOW_UP)]
    follow_up = ask(client, *conversation)
    sources = sources_of(follow_up.choices[0])
    lectures = [s["lecture_id"] for s in sources]
    # The bigram model, found through the first turn: every passage speaks of it, its lecture
    # among them (the others may be later lectures looking back at it: "in the last lecture").
    assert "02" in lectures, lectures
    assert all("bigram" in s["text"].lower() for s in sources), sources
    assert "bigram" in follow_up.choices[0].message.content.lower()
    bare = sources_of(ask(client, user(FOLLOW_UP)).choices[0])
    assert "02" not in [s["lecture_id"] for s in bare]
    assert not any("bigram" in s["text"].lower() for s in bare), bare


def test_system_messages_and_text_parts_are_accepted(client):
    completion = ask(
        client,
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": [{"type": "text", "text": "What is makemore?"}]},
    )
    assert "makemore" in completion.choices[0].message.content.lower()


def test_a_long_conversation_is_bounded_not_refused(client):
    earlier = []
    for n in range(60):
        earlier += [user(f"question {n} about tanh"), {"role": "assistant", "content": "x" * 500}]
    completion = ask(client, *earlier, user(QUESTION))
    assert completion.choices[0].finish_reason == "stop"
    assert len(sources_of(completion.choices[0])) == 3


def refusal(client, status: type[openai.APIStatusError], **body) -> dict:
    with pytest.raises(status) as caught:
        client.chat.completions.create(**{"model": MODEL, **body})
    error = caught.value.body
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["message"]
    return error


def test_refusals_are_openai_errors(client):
    no_messages = refusal(client, openai.BadRequestError, messages=[])
    assert no_messages["param"] == "messages" and no_messages["type"] == "invalid_request_error"

    tool = refusal(client, openai.BadRequestError, messages=[{"role": "tool", "content": "x"}])
    assert tool["param"] == "messages[0].role" and "'tool'" in tool["message"]

    assistant_last = refusal(
        client,
        openai.BadRequestError,
        messages=[user("hi"), {"role": "assistant", "content": "hello"}],
    )
    assert "last message" in assistant_last["message"]

    not_text = refusal(client, openai.BadRequestError, messages=[{"role": "user", "content": 5}])
    assert not_text["param"] == "messages[0].content"

    image = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    refusal(client, openai.BadRequestError, messages=[{"role": "user", "content": image}])
    refusal(client, openai.BadRequestError, messages=[user("   ")])
    too_long = refusal(client, openai.BadRequestError, messages=[user("why " * 600)])
    assert "limit is 2000" in too_long["message"]
    refusal(client, openai.BadRequestError, messages=[user("hi")], n=2)

    unknown = refusal(client, openai.NotFoundError, messages=[user("hi")], model="gpt-4o")
    assert unknown["code"] == "model_not_found" and unknown["param"] == "model"

    huge = refusal(client, openai.APIStatusError, messages=[user("x" * 600_000)])
    assert huge["code"] == "request_too_large"


@pytest.mark.parametrize(
    "body, param",
    [
        (b"not json", None),
        (b"[1, 2]", None),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "karpathy-gpt", "messages": "hi"}', "messages"),
        (b'{"model": "karpathy-gpt", "messages": [{"content": "hi"}]}', "messages[0].role"),
        (
            b'{"model": "karpathy-gpt", "messages": [{"role": "user", "content": "hi"}], '
            b'"stream": "yes"}',
            "stream",
        ),
        (
            b'{"model": "karpathy-gpt", "messages": [{"role": "user", "content": "hi"}], "k": 50}',
            "k",
        ),
        (b"\xff\xfe", None),
        # Found by tests/test_fuzz.py (each was a 500): too deep, too long a number, no text.
        (b"[" * 50_000, None),
        (b'{"model": "karpathy-gpt", "n": ' + b"1" * 5000 + b"}", None),
        (b'{"model": "karpathy-gpt", "messages": [{"role": "user", "content": "\\ud800"}]}', None),
    ],
)
def test_malformed_bodies_are_400_with_the_param(server, body, param):
    r = httpx.post(server.url + "/v1/chat/completions", content=body, timeout=30)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_unknown_v1_routes_and_methods_answer_in_openai_shape(server):
    missing = httpx.post(server.url + "/v1/embeddings", json={})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(server.url + "/v1/chat/completions")
    assert wrong.status_code == 405 and "POST" in wrong.json()["error"]["message"]
    # Outside /v1 the original {"detail": ...} stays.
    assert httpx.get(server.url + "/nowhere").json() == {"detail": "Not Found"}


@pytest.fixture(scope="module")
def dead_model_server(index_dir, output_dir):
    """The OpenAI answerer pointed at a port where nothing listens."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    env = base_env(KGPT_INDEX_DIR=str(index_dir), OPENAI_API_KEY="sk-x", OPENAI_BASE_URL=dead)
    srv = Server(env, output_dir / "server-v1-dead-model.log")
    srv.wait_ready()
    srv.dead = dead
    yield srv
    srv.stop()


def test_a_failing_provider_ends_the_stream_with_a_readable_error(dead_model_server):
    srv = dead_model_server
    with openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0) as client:
        stream = ask(client, user("What is makemore?"), stream=True)
        first = next(stream)
        assert len(sources_of(first.choices[0])) == 3, "the passages arrive before the failure"
        with pytest.raises(openai.APIError) as caught:
            list(stream)
        assert srv.dead in caught.value.message and "OPENAI_BASE_URL" in caught.value.message

        with pytest.raises(openai.APIStatusError) as caught:
            ask(client, user("What is makemore?"))
        assert caught.value.status_code == 502
        assert caught.value.body["code"] == "answerer_failed"

    body = {"model": MODEL, "messages": [user("tanh")], "stream": True}
    with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body, timeout=60) as r:
        blocks = [b for b in r.read().decode().split("\n\n") if b.startswith("data: ")]
    assert blocks[-1] == "data: [DONE]"
    error = json.loads(blocks[-2][len("data: ") :])["error"]
    assert error["type"] == "api_error" and srv.dead in error["message"]
