"""The clients people already use, end to end against a real server.

simonw/llm's CLI (an extra-openai-models.yaml entry: streamed, --no-stream, a follow-up with
-c, usage logged), LangChain's ChatOpenAI (invoke, stream, usage), the openai SDK (sync and
async, streamed and not), the original front-end's @microsoft/fetch-event-source from Node
(reading /karpathy-docs and /karpathy-stream), and the bodies Open WebUI and LibreChat send
(see api/chat_options.py): answered, or refused in OpenAI's error shape where no reply could be
what they ask. The extractive answerer is deterministic, so each client's text is compared
with the server's own answer to the same conversation.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import httpx
import openai
import pytest
from conftest import REPO, VENV_BIN, base_env

MODEL = "karpathy-gpt"
QUESTION = "What is a bigram language model?"
FOLLOW_UP = "And in which lecture is that explained?"
OTHER = "What is makemore?"

pytestmark = pytest.mark.timeout(300)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def reply_to(server, *messages: dict) -> dict:
    """The server's own non-streamed reply: the text and usage every client must show."""
    body = {"model": MODEL, "messages": list(messages)}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def text_of(reply: dict) -> str:
    return reply["choices"][0]["message"]["content"]


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
    assert not_streamed.strip() == text_of(reply_to(server, user(OTHER)))

    first = reply_to(server, user(QUESTION))
    streamed = llm(llm_home, "-m", "kgpt", QUESTION)
    assert streamed.strip() == text_of(first)

    # -c continues the last conversation: the follow-up goes with the first turn.
    follow_up = llm(llm_home, "-c", FOLLOW_UP)
    turns = [user(QUESTION), {"role": "assistant", "content": text_of(first)}, user(FOLLOW_UP)]
    assert follow_up.strip() == text_of(reply_to(server, *turns))
    assert follow_up.strip() != text_of(reply_to(server, user(FOLLOW_UP)))

    # llm logged each answer's usage: from the completion, and from the stream's last chunk.
    logged = json.loads(llm(llm_home, "logs", "--json", "-n", "3"))
    assert [(r["prompt"], r["model"]) for r in logged] == [
        (OTHER, "kgpt"),
        (QUESTION, "kgpt"),
        (FOLLOW_UP, "kgpt"),
    ]
    assert logged[2]["conversation_id"] == logged[1]["conversation_id"]
    expected = [reply_to(server, user(OTHER)), first, reply_to(server, *turns)]
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

    expected = reply_to(server, user(QUESTION))
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
    assert chat_model.invoke(history).content == text_of(reply_to(server, *turns))


# --- the openai SDK -----------------------------------------------------------------------------


def test_openai_sdk_sync_streamed_and_not(server):
    expected = reply_to(server, user(QUESTION))
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
    expected = reply_to(server, user(OTHER))

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
    assert parts[-1].choices == [] and parts[-1].usage.total_tokens == expected["usage"][
        "total_tokens"
    ]


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
    assert "".join(tokens) == text_of(reply_to(server, user(OTHER)))


# --- what Open WebUI and LibreChat send -----------------------------------------------------------

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def post(server, body: dict) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json=body, timeout=120)


def streamed(server, body: dict) -> list[dict]:
    url = server.url + "/v1/chat/completions"
    with httpx.stream("POST", url, json={**body, "stream": True}, timeout=120) as r:
        assert r.status_code == 200, r.read()
        blocks = [b for b in r.read().decode().split("\n\n") if b.startswith("data: ")]
    assert blocks[-1] == "data: [DONE]"
    return [json.loads(block[len("data: ") :]) for block in blocks[:-1]]


def open_webui_chat(stream: bool) -> dict:
    """A chat as Open WebUI's backend forwards it: the model's parameters, the usage option,
    the last message's text part marked for prompt caching, the user object it gives
    pipelines, and the tools of a chat in native function-calling mode."""
    question = {
        "role": "user",
        "content": [{"type": "text", "text": QUESTION, "cache_control": {"type": "ephemeral"}}],
    }
    return {
        "model": MODEL,
        "messages": [SYSTEM, question],
        "stream": stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
        "temperature": 0.8,
        "top_p": 0.9,
        "max_tokens": 512,
        "frequency_penalty": 0.0,
        "seed": 42,
        "stop": ["</s>"],
        "logit_bias": {},
        "reasoning_effort": "low",
        "user": {"name": "Ada", "id": "3f1c", "email": "ada@example.com", "role": "user"},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_current_time",
                    "description": "Get the current time",
                    "parameters": {"type": "object", "properties": {}},
                },
            }
        ],
    }


def librechat_chat() -> dict:
    """A custom endpoint's chat from LibreChat (LangChain's ChatOpenAI underneath): its default
    parameters (the user's id among them), usage in the stream, a preset's name on the system
    message, an agent's tool."""
    return {
        "model": MODEL,
        "messages": [{**SYSTEM, "name": "Tutor"}, user(QUESTION)],
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "65f0c1d2e3a4b5c6d7e8f901",
        "temperature": 1,
        "top_p": 1,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "max_tokens": 1024,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "file_search",
                    "description": "Search the user's files",
                    "parameters": {
                        "type": "object",
                        "properties": {"query": {"type": "string"}},
                        "required": ["query"],
                    },
                },
            }
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
    }


def test_open_webui_and_librechat_bodies_get_the_answer(server):
    expected = reply_to(server, user(QUESTION))

    reply = post(server, open_webui_chat(stream=False))
    assert reply.status_code == 200, reply.text
    assert text_of(reply.json()) == text_of(expected)
    assert reply.json()["usage"] == expected["usage"]
    assert "tool_calls" not in reply.json()["choices"][0]["message"]

    for body in (open_webui_chat(stream=True), librechat_chat()):
        parts = streamed(server, body)
        assert parts[0]["choices"][0]["sources"]
        assert "".join(
            p["choices"][0]["delta"].get("content") or "" for p in parts if p["choices"]
        ) == text_of(expected)
        assert parts[-1]["choices"] == [] and parts[-1]["usage"] == expected["usage"]

    # Open WebUI's task prompts (a title here) are ordinary non-streamed requests.
    title = post(
        server,
        {
            "model": MODEL,
            "messages": [
                user(
                    "### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing "
                    f"the chat history.\n### Chat History:\n<chat_history>\nUSER: {QUESTION}\n"
                    "</chat_history>"
                )
            ],
            "stream": False,
            "max_tokens": 1000,
        },
    )
    assert title.status_code == 200 and text_of(title.json())


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
NAMED = {"type": "function", "function": {"name": "f"}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
AUDIO = {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}


@pytest.mark.parametrize(
    "options, param",
    [
        ({"n": 2}, "n"),
        ({"tools": [TOOL], "tool_choice": "required"}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": NAMED}, "tool_choice"),
        ({"functions": [TOOL["function"]], "function_call": {"name": "f"}}, "function_call"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": SCHEMA}, "response_format"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
        (AUDIO, "modalities"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"stream_options": True}, "stream_options"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_it(server, options, param):
    for stream in (False, True):
        body = {"model": MODEL, "messages": [user(QUESTION)], "stream": stream, **options}
        reply = post(server, body)
        assert reply.status_code == 400, reply.text
        assert reply.headers["content-type"] == "application/json"
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error" and error["param"] == param
        assert error["message"]


def test_options_that_need_nothing_of_the_answer_are_accepted(server):
    expected = reply_to(server, user(QUESTION))
    for options in (
        {"tool_choice": "none", "tools": [TOOL]},
        {"functions": [TOOL["function"]], "function_call": "auto"},
        {"response_format": {"type": "text"}},
        {"logprobs": False},
        {"modalities": ["text"]},
        {"n": 1, "metadata": {"chat_id": "42"}, "store": False, "max_completion_tokens": 64},
        {"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto"}}},
    ):
        body = {"model": MODEL, "messages": [user(QUESTION)], **options}
        reply = post(server, body)
        assert reply.status_code == 200, (options, reply.text)
        assert text_of(reply.json()) == text_of(expected)
