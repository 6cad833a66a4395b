"""``usage`` on /v1: in every chat.completion, and in a last chunk (``choices: []``) of a stream
asked with ``stream_options.include_usage``, as OpenAI sends them.

The extractive answerer's counts are MiniLM word pieces (checked against a count made here);
an upstream model's counts are passed through (checked with a real upstream that reports
usage in its streams: another Karpathy-GPT server, whose numbers differ from what the front
server would count itself). The gguf provider's exact counts are checked in test_gguf.py,
a server that reports none (llama-cpp-python's) in test_llm_server.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from support.chat import MODEL, chunks, reply_to, streamed_text, user, word_pieces
from support.servers import Server, base_env

from karpathy_gpt.answer.prompt import chat_messages

QUESTION = "What is a bigram language model?"

pytestmark = pytest.mark.timeout(300)


def stream(url: str, *messages: dict, **options) -> list[dict]:
    return chunks(url, {"model": MODEL, "messages": list(messages), **options})


def test_a_completion_counts_word_pieces_of_the_question_passages_and_answer(server):
    reply = reply_to(server.url, user(QUESTION))
    answer = reply["choices"][0]["message"]["content"]
    passages = [s["text"] for s in reply["choices"][0]["sources"]]
    assert reply["usage"] == {
        "prompt_tokens": word_pieces(QUESTION, *passages),
        "completion_tokens": word_pieces(answer),
        "total_tokens": word_pieces(QUESTION, *passages) + word_pieces(answer),
    }
    assert reply["usage"]["completion_tokens"] > 20


def test_a_stream_sends_usage_last_only_when_asked(server):
    plain = stream(server.url, user(QUESTION))
    assert all("usage" not in chunk for chunk in plain)
    assert plain[-1]["choices"][0]["finish_reason"] == "stop"

    asked = stream(server.url, user(QUESTION), stream_options={"include_usage": True})
    *answer, stop, last = asked
    assert stop["choices"][0]["finish_reason"] == "stop" and "usage" not in stop
    assert last["choices"] == [] and last["object"] == "chat.completion.chunk"
    assert last["id"] == answer[0]["id"] and last["model"] == MODEL
    assert all("usage" not in chunk for chunk in answer)
    completion = reply_to(server.url, user(QUESTION))
    assert streamed_text(asked) == completion["choices"][0]["message"]["content"]
    assert last["usage"] == completion["usage"]

    not_asked = stream(server.url, user(QUESTION), stream_options={"include_usage": False})
    assert all("usage" not in chunk for chunk in not_asked)
    # Without a stream, usage is always there; stream_options is no reason to refuse.
    quiet = reply_to(server.url, user(QUESTION), stream_options={"include_usage": True})
    assert quiet["usage"] == completion["usage"]


@pytest.fixture(scope="module")
def front(server, index_dir, output_dir):
    """Karpathy-GPT answering with the openai provider, whose upstream is the test server: a
    real OpenAI-compatible server that reports usage in a stream's last chunk. One passage
    (k=1), so the prompt it sends upstream fits the upstream's question limit."""
    env = base_env(
        KGPT_INDEX_DIR=str(index_dir),
        OPENAI_API_KEY="not-needed",
        OPENAI_BASE_URL=server.url + "/v1",
        KGPT_LLM_MODEL=MODEL,
        KGPT_DEFAULT_K="1",
    )
    srv = Server(env, output_dir / "server-usage-front.log")
    srv.wait_ready()
    yield srv
    srv.stop()


def test_an_upstream_models_usage_is_passed_through(front, server):
    reply = reply_to(front.url, user(QUESTION))
    (source,) = reply["choices"][0]["sources"]
    # What the front server sent upstream, rebuilt from the passage it cites.
    hit = SimpleNamespace(chunk=SimpleNamespace(text=source["text"], metadata=source))
    sent = chat_messages(SimpleNamespace(question=QUESTION, hits=[hit]))
    upstream = reply_to(server.url, *sent)
    assert reply["choices"][0]["message"]["content"] == upstream["choices"][0]["message"]["content"]
    assert reply["usage"] == upstream["usage"]
    # Not what the front server would have counted itself.
    assert reply["usage"]["prompt_tokens"] != word_pieces(QUESTION, source["text"])

    streamed = stream(front.url, user(QUESTION), stream_options={"include_usage": True})
    assert streamed[-1]["choices"] == [] and streamed[-1]["usage"] == upstream["usage"]
