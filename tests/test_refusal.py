"""Questions the lectures do not cover get a plain refusal, from the offline answer and, with
KGPT_REFUSE_OFFTOPIC, from a model answerer without the model being asked."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from support.servers import Server, base_env, free_port, run_cli

from karpathy_gpt.answer import NOT_COVERED
from karpathy_gpt.answer.registry import refuses_offtopic
from karpathy_gpt.config import Settings

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


@pytest.mark.parametrize(
    ("settings", "refuses"),
    [
        ({}, True),  # the offline answer refuses by default
        ({"refuse_offtopic": False}, False),
        ({"answerer": "openai"}, False),  # a model is told to answer only from the passages
        ({"answerer": "openai", "refuse_offtopic": True}, True),
        ({"openai_api_key": "sk-test"}, False),  # openai picked by its key
    ],
)
def test_whether_off_topic_is_refused_is_one_decision_of_the_settings(
    settings, refuses, monkeypatch
):
    for name in ("KGPT_ANSWERER", "KGPT_REFUSE_OFFTOPIC", "KGPT_GGUF", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert refuses_offtopic(Settings(**settings)) is refuses


def refusing_model_env(index_dir) -> dict[str, str]:
    """The openai answerer, refusing off-topic questions, its model server nowhere: any call
    to it fails."""
    return base_env(
        KGPT_INDEX_DIR=str(index_dir),
        KGPT_ANSWERER="openai",
        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
        KGPT_LLM_RETRIES="0",
        KGPT_REFUSE_OFFTOPIC="true",
    )


def test_a_model_answerer_refuses_off_topic_without_asking_the_model(index_dir, output_dir):
    env = refusing_model_env(index_dir)
    nobody = env["OPENAI_BASE_URL"].removesuffix("/v1")
    refusing = Server(env, output_dir / "refusing-server.log")
    try:
        refusing.wait_ready()
        refused = chat(refusing.url, OFF_TOPIC)
        assert refused.status_code == 200, refused.text
        assert refused.json()["choices"][0]["message"]["content"] == NOT_COVERED
        # An on-topic question does go to the model, which is not there: the call is real.
        asked = chat(refusing.url, ON_TOPIC)
        assert asked.status_code == 502 and nobody.removeprefix("http://") in asked.text
    finally:
        refusing.stop()


def test_ask_in_the_terminal_refuses_as_the_api_does(server, index_dir):
    env = refusing_model_env(index_dir)
    refused = run_cli("ask", OFF_TOPIC, env=env)
    assert refused.returncode == 0, refused.stderr
    answer, _, nearest = refused.stdout.partition("Nearest passages (none answers it)")
    assert NOT_COVERED in " ".join(answer.split()) and "Sources" not in refused.stdout
    assert sum(line.startswith("[") for line in nearest.splitlines()) == 3
    asked = run_cli("ask", ON_TOPIC, env=env)  # goes to the model, which is not there
    assert asked.returncode == 1 and "error" in asked.stderr


def test_the_fitted_questions_are_read_as_the_serving_model_embeds_them(embedder):
    """Kept vectors serve the model they were fitted with; any other model (a corpus of one's
    own adapts its own) embeds the questions' texts itself, once."""
    from karpathy_gpt import coverage
    from karpathy_gpt.text import normalise

    on, off = ["What is makemore?", "Why zero the gradients?"], ["Who painted the Sistine Chapel?"]
    vectors = embedder.embed([normalise(q) for q in on + off])
    kept = coverage.Asked(vectors[:2], vectors[2:]).as_json(on, off, embedder.name, 1220)
    fit = {"coverage": {"asked": kept}}
    read = coverage.asked_in(fit, embedder, 1220)
    assert np.allclose(read.on, vectors[:2], atol=1e-3) and np.allclose(
        read.off, vectors[2:], atol=1e-3
    )
    other = coverage.asked_in({"coverage": {"asked": {**kept, "model": "x"}}}, embedder, 1220)
    assert np.allclose(other.on, vectors[:2], atol=1e-6)  # embedded again, not decoded
    question = embedder.embed_one(normalise("Who painted the ceiling of the Sistine Chapel?"))
    assert read.gap(question) > 0.3  # far nearer the off-topic question
    # Another corpus: the questions' labels say nothing of it.
    assert coverage.asked_in(fit, embedder, 37) is coverage.NOWHERE
