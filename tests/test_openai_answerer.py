"""OPENAI_API_KEY switches answers to an OpenAI chat model; a model server that cannot be
reached ends the answer with an ``error`` event a person can act on, while passages still flow.

Streaming from a live OpenAI-compatible server (llama-cpp-python's) is in test_llm_server.py.
"""

from __future__ import annotations

import json

import httpx
import pytest
from support.servers import Server, base_env, free_port
from support.streams import passages, post_sse

pytestmark = pytest.mark.slow


def start(index_dir, output_dir, name, **env) -> Server:
    env = base_env(KGPT_INDEX_DIR=str(index_dir), KGPT_LLM_MAX_TOKENS="48", **env)
    srv = Server(env, output_dir / f"server-{name}.log")
    srv.wait_ready()
    return srv


def test_unreachable_model_server_is_an_error_event_and_passages_still_flow(
    server, index_dir, output_dir
):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    srv = start(index_dir, output_dir, "dead", OPENAI_API_KEY="sk-x", OPENAI_BASE_URL=dead)
    try:
        assert httpx.get(srv.url + "/healthz").json()["answerer"] == "gpt-4o-mini"
        _, docs = post_sse(srv.url + "/karpathy-docs", data={"question": "What is makemore?"})
        assert len(passages(docs)) == 3
        response, events = post_sse(srv.url + "/karpathy-stream", data={"question": "tanh"})
        assert response.status_code == 200
        assert events[-1][0] == "error"
        message = json.loads(events[-1][1])["message"]
        assert dead in message and "OPENAI_BASE_URL" in message
    finally:
        srv.stop()
