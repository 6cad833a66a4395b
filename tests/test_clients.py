"""The clients people already use, end to end against a real server.

simonw/llm's CLI (an extra-openai-models.yaml entry: streamed, --no-stream, a follow-up with
-c, usage logged), LangChain's ChatOpenAI (invoke, stream, usage), the openai SDK (sync and
async, streamed and not), and the original front-end's @microsoft/fetch-event-source from Node
(reading /karpathy-docs and /karpathy-stream); the bodies Open WebUI and LibreChat send are in
test_client_bodies.py. The extractive answerer is deterministic, so each client's text is
compared with the server's own answer to the same conversation.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import openai
import pytest
from support.chat import MODEL, reply_to, text_of, user
from support.paths import REPO, VENV_BIN
from support.servers import base_env

QUESTION = "What is a bigram language model?"
FOLLOW_UP = "And in which lecture is that explained?"
OTHER = "What is makemore?"

pytestmark = pytest.mark.timeout(300)


# --- simonw/llm -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm_home(server, tmp_path_factory):
    """An LLM_USER_PATH holding only the model entry of docs/clients.md."""
    home = tmp_path_factory.mktemp("llm-home")
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: kgpt\n  model_name: {MODEL}\n  api_base: {server.url}/v1\n"
    )
    return home


def llm(home, *args: str) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "llm"), *args],
        env=base_env(LLM_USER_PATH=str(home)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_llm_cli_streamed_not_streamed_and_a_follow_up(server, llm_home):
    not_streamed = llm(llm_home, "-m", "kgpt", "--no-stream", OTHER)
    assert not_streamed.strip() == text_of(reply_to(server.url, user(OTHER)))

    first = reply_to(server.url, user(QUESTION))
    streamed = llm(llm_home, "-m", "kgpt", QUESTION)
    assert streamed.strip() == text_of(first)

    # -c continues the last conversation: the follow-up goes with the first turn.
    follow_up = llm(llm_home, "-c", FOLLOW_UP)
    turns = [user(QUESTION), {"role": "assistant", "content": text_of(first)}, user(FOLLOW_UP)]
    assert follow_up.strip() == text_of(reply_to(server.url, *turns))
    assert follow_up.strip() != text_of(reply_to(server.url, user(FOLLOW_UP)))

    # llm logged each answer's usage: from the completion, and from the stream's last chunk.
    logged = json.loads(llm(llm_home, "logs", "--json", "-n", "3"))
    assert [(r["prompt"], r["model"]) for r in logged] == [
        (OTHER, "kgpt"),
        (QUESTION, "kgpt"),
        (FOLLOW_UP, "kgpt"),
    ]
    assert logged[2]["conversation_id"] == logged[1]["conversation_id"]
    expected = [reply_to(server.url, user(OTHER)), first, reply_to(server.url, *turns)]
    for record, reply in zip(logged, expected, strict=True):
        usage = reply["usage"]
        assert (record["input_tokens"], record["output_tokens"]) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )


# --- LangChain ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_model(server):
    from langchain_openai import ChatOpenAI

    # stream_usage: ChatOpenAI asks for usage in streams only from OpenAI's own URL by default.
    return ChatOpenAI(
        model=MODEL,
        base_url=server.url + "/v1",
        api_key="not-needed",
        max_retries=0,
        timeout=120,
        stream_usage=True,
    )


def usage_metadata(reply: dict) -> dict:
    usage = reply["usage"]
    return {
        "input_tokens": usage["prompt_tokens"],
        "output_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
    }


def subset(metadata, keys=("input_tokens", "output_tokens", "total_tokens")) -> dict:
    return {key: metadata[key] for key in keys}


def test_langchain_invoke_and_stream(server, chat_model):
    from langchain_core.messages import AIMessage, HumanMessage

    expected = reply_to(server.url, user(QUESTION))
    message = chat_model.invoke(QUESTION)
    assert message.content == text_of(expected)
    assert subset(message.usage_metadata) == usage_metadata(expected)

    parts = list(chat_model.stream(QUESTION))
    assert len([p for p in parts if p.content]) > 5  # token by token
    whole = parts[0]
    for part in parts[1:]:
        whole += part
    assert whole.content == text_of(expected)
    assert subset(whole.usage_metadata) == usage_metadata(expected)

    turns = [user(QUESTION), {"role": "assistant", "content": text_of(expected)}, user(FOLLOW_UP)]
    history = [HumanMessage(QUESTION), AIMessage(text_of(expected)), HumanMessage(FOLLOW_UP)]
    assert chat_model.invoke(history).content == text_of(reply_to(server.url, *turns))


# --- the openai SDK -----------------------------------------------------------------------------


def test_openai_sdk_sync_streamed_and_not(server):
    expected = reply_to(server.url, user(QUESTION))
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as client:
        completion = client.chat.completions.create(model=MODEL, messages=[user(QUESTION)])
        assert completion.choices[0].message.content == text_of(expected)
        assert completion.usage.model_dump(exclude_none=True) == expected["usage"]

        stream = client.chat.completions.create(
            model=MODEL,
            messages=[user(QUESTION)],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = list(stream)
        assert "".join(p.choices[0].delta.content or "" for p in parts[:-1]) == text_of(expected)
        assert parts[-1].choices == []
        assert parts[-1].usage.model_dump(exclude_none=True) == expected["usage"]
        assert all(p.usage is None for p in parts[:-1])


def test_openai_sdk_async_streamed_and_not(server):
    expected = reply_to(server.url, user(OTHER))

    async def run() -> tuple:
        async with openai.AsyncOpenAI(
            base_url=server.url + "/v1", api_key="x", max_retries=0
        ) as client:
            completion = await client.chat.completions.create(model=MODEL, messages=[user(OTHER)])
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=[user(OTHER)],
                stream=True,
                stream_options={"include_usage": True},
            )
            return completion, [part async for part in stream]

    completion, parts = asyncio.run(run())
    assert completion.choices[0].message.content == text_of(expected)
    assert completion.usage.model_dump(exclude_none=True) == expected["usage"]
    assert "".join(p.choices[0].delta.content or "" for p in parts[:-1]) == text_of(expected)
    assert (
        parts[-1].choices == []
        and parts[-1].usage.total_tokens == expected["usage"]["total_tokens"]
    )


# --- the original front-end's SSE client, from Node -----------------------------------------------

NODE_DIR = REPO / "tests" / "node"


def test_the_original_frontends_fetch_event_source_reads_both_streams(server):
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        pytest.skip("node/npm are not installed: the fetch-event-source client cannot run")
    if not (NODE_DIR / "node_modules" / "@microsoft" / "fetch-event-source").is_dir():
        pytest.skip("tests/node/node_modules is missing: run `make node-deps` (npm ci)")
    done = subprocess.run(
        [node, "original_frontend.mjs", server.url, OTHER],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)

    docs = events["docs"]
    assert docs[-1] == {"event": "end", "data": "DONE"}
    passages = [json.loads(e["data"])["data"] for e in docs[:-1]]
    assert len(passages) == 3
    assert all(p["pageContent"] and p["metadata"]["link"].startswith("https://") for p in passages)
    assert "makemore" in passages[0]["pageContent"].lower()

    stream = events["stream"]
    assert stream[-1] == {"event": "end", "data": "DONE"}
    tokens = [e["data"] for e in stream[:-1]]
    assert len(tokens) > 5 and all(e["event"] == "" for e in stream[:-1])
    # Leading spaces survive the SSE framing: the tokens join into the answer as /v1 gives it.
    assert "".join(tokens) == text_of(reply_to(server.url, user(OTHER)))
