"""Questions the lectures do not cover get a plain refusal, from the offline answer and, with
KGPT_REFUSE_OFFTOPIC, from a model answerer without the model being asked."""

from __future__ import annotations

import httpx
from support.servers import Server, base_env, free_port

from karpathy_gpt.answer.extractive import NOT_COVERED

OFF_TOPIC = "Who won the 2018 FIFA World Cup final?"
ON_TOPIC = "What is makemore?"


def chat(url: str, question: str) -> httpx.Response:
    body = {"model": "karpathy-gpt", "messages": [{"role": "user", "content": question}]}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


def test_the_offline_answer_says_plainly_what_the_lectures_do_not_cover(server):
    refused = chat(server.url, OFF_TOPIC)
    assert refused.status_code == 200
    assert refused.json()["choices"][0]["message"]["content"] == NOT_COVERED
    answered = chat(server.url, ON_TOPIC).json()["choices"][0]["message"]["content"]
    assert answered != NOT_COVERED and "[1]" in answered


def test_a_model_answerer_refuses_off_topic_without_asking_the_model(index_dir, output_dir):
    nobody = free_port()  # no model server listens here: any call to it fails
    env = base_env(
        KGPT_INDEX_DIR=str(index_dir),
        KGPT_ANSWERER="openai",
        OPENAI_BASE_URL=f"http://127.0.0.1:{nobody}/v1",
        KGPT_LLM_RETRIES="0",
        KGPT_REFUSE_OFFTOPIC="true",
    )
    refusing = Server(env, output_dir / "refusing-server.log")
    try:
        refusing.wait_ready()
        refused = chat(refusing.url, OFF_TOPIC)
        assert refused.status_code == 200, refused.text
        assert refused.json()["choices"][0]["message"]["content"] == NOT_COVERED
        # An on-topic question does go to the model, which is not there: the call is real.
        asked = chat(refusing.url, ON_TOPIC)
        assert asked.status_code == 502 and f"127.0.0.1:{nobody}" in asked.text
    finally:
        refusing.stop()
