"""What Open WebUI and LibreChat send to an OpenAI-compatible server, against a real server.

Their bodies, as found in their source (see api/v1/options.py), carry more than a
conversation: sampling options, ``user``, ``stream_options``, ``tools``. Each gets the answer,
or a 400 in OpenAI's error shape naming the option where no reply could be what it asks.
"""

from __future__ import annotations

import pytest
from support.chat import MODEL, chunks, post_chat, reply_to, text_of, user

QUESTION = "What is a bigram language model?"

pytestmark = pytest.mark.timeout(300)

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


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
    expected = reply_to(server.url, user(QUESTION))

    reply = post_chat(server.url, open_webui_chat(stream=False))
    assert reply.status_code == 200, reply.text
    assert text_of(reply.json()) == text_of(expected)
    assert reply.json()["usage"] == expected["usage"]
    assert "tool_calls" not in reply.json()["choices"][0]["message"]

    for body in (open_webui_chat(stream=True), librechat_chat()):
        parts = chunks(server.url, body)
        assert parts[0]["choices"][0]["sources"]
        assert "".join(
            p["choices"][0]["delta"].get("content") or "" for p in parts if p["choices"]
        ) == text_of(expected)
        assert parts[-1]["choices"] == [] and parts[-1]["usage"] == expected["usage"]

    # Open WebUI's task prompts (a title here) are ordinary non-streamed requests.
    title = post_chat(
        server.url,
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
        reply = post_chat(server.url, body)
        assert reply.status_code == 400, reply.text
        assert reply.headers["content-type"] == "application/json"
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error" and error["param"] == param
        assert error["message"]


def test_options_that_need_nothing_of_the_answer_are_accepted(server):
    expected = reply_to(server.url, user(QUESTION))
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
        reply = post_chat(server.url, body)
        assert reply.status_code == 200, (options, reply.text)
        assert text_of(reply.json()) == text_of(expected)
