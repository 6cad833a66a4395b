"""The original contract through HTTP against the real server: passages, tokens, errors."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from support.streams import passages, post_sse

from karpathy_gpt.answer.extractive import NOT_COVERED


def test_welcome_and_health(server):
    assert httpx.get(server.url + "/").json() == {"message": "Welcome to Karpathy GPT!"}
    health = httpx.get(server.url + "/healthz").json()
    assert health["status"] == "ok" and health["chunks"] > 500
    assert health["answerer"] == "extractive"


def test_docs_streams_passages_as_the_original_front_end_reads_them(server):
    response, events = post_sse(
        server.url + "/karpathy-docs", data={"question": "What is makemore"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    docs = passages(events)
    assert len(docs) == 3
    assert events[-1] == ("end", "DONE")
    for doc in docs:
        meta = doc["metadata"]
        assert {"id", "link", "title", "source", "chunk", "start_char", "end_char"} <= set(meta)
        assert meta["source"] == f"{meta['title']} {meta['id']}"
        assert meta["link"].startswith("https://youtu.be/")
        assert 0 < len(doc["pageContent"]) <= 800
    assert "makemore" in docs[0]["pageContent"].lower()


def test_query_field_and_question_field_give_the_same_passages(server):
    _, by_question = post_sse(
        server.url + "/karpathy-docs", files={"question": (None, "What is a bigram?")}
    )
    _, by_query = post_sse(server.url + "/karpathy-docs", data={"query": "What is a bigram?"})
    assert passages(by_question) == passages(by_query)
    assert len(passages(by_query)) == 3


def test_json_body_and_k(server):
    _, events = post_sse(server.url + "/karpathy-docs", json={"question": "self-attention", "k": 7})
    docs = passages(events)
    assert len(docs) == 7
    # Windows of the lectures, cut around different sentences: no two overlap.
    spans = sorted(
        (d["metadata"]["id"], d["metadata"]["start_char"], d["metadata"]["end_char"]) for d in docs
    )
    for (lecture, _, end), (other, start, _) in zip(spans, spans[1:], strict=False):
        assert lecture != other or end <= start, spans


def test_text_format_is_the_original_readme_line(server):
    _, events = post_sse(
        server.url + "/karpathy-docs", data={"question": "What is makemore", "format": "text"}
    )
    lines = [data for event, data in events if event == "message"]
    assert len(lines) == 3
    pattern = re.compile(
        r"""^page_content=".*" metadata=\{'id': '\d\d', 'link': 'https://youtu\.be/[\w-]+', """
        r"""'source': '.+ \d\d', 'title': '.+'\}$""",
        re.DOTALL,
    )
    for line in lines:
        assert pattern.match(line), line


def test_stream_sends_tokens_with_their_spaces_then_end(server):
    response, events = post_sse(
        server.url + "/karpathy-stream", data={"question": "What is makemore"}
    )
    assert response.status_code == 200
    assert events[-1] == ("end", "DONE")
    tokens = [data for event, data in events[:-1]]
    assert all(event == "message" for event, _ in events[:-1])
    assert len(tokens) > 5
    assert not tokens[0].startswith(" ")
    assert all(t.startswith(" ") for t in tokens[1:]), "a token's leading space must survive"
    answer = "".join(tokens)
    assert "makemore" in answer.lower()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def test_extractive_answer_is_cited_and_quotes_only_the_cited_passage(server):
    question = {"question": "Why do we use batch normalization?"}
    _, docs_events = post_sse(server.url + "/karpathy-docs", data=question)
    _, answer_events = post_sse(server.url + "/karpathy-stream", data=question)
    docs = passages(docs_events)
    answer = "".join(data for event, data in answer_events if event == "message")
    segments = re.findall(r"(.+?)\s*\[(\d+)\]", answer)
    assert segments, f"no citation in {answer!r}"
    for text, n in segments:
        n = int(n)
        assert 1 <= n <= len(docs)
        passage_words = set(_words(docs[n - 1]["pageContent"]))
        invented = [w for w in _words(text) if w not in passage_words]
        assert not invented, f"words not in passage [{n}]: {invented}"
    assert "batch" in answer.lower()


@pytest.mark.parametrize(
    "question", ["What is the capital of France?", "How do I bake sourdough bread?"]
)
def test_extractive_answer_declines_when_nothing_matches(server, question):
    _, events = post_sse(server.url + "/karpathy-stream", data={"question": question})
    answer = "".join(data for event, data in events if event == "message")
    assert answer == NOT_COVERED  # said plainly, not the nearest noise quoted
    assert "[1]" not in answer
    assert events[-1] == ("end", "DONE")


BAD_REQUESTS = [
    ("missing", {"data": {"k": "3"}}, 422),
    ("empty", {"data": {"question": ""}}, 422),
    ("blank", {"data": {"question": "   \n\t "}}, 422),
    ("too long", {"data": {"question": "why " * 600}}, 422),
    ("k zero", {"data": {"question": "tanh", "k": "0"}}, 422),
    ("k too big", {"data": {"question": "tanh", "k": "21"}}, 422),
    ("k not a number", {"data": {"question": "tanh", "k": "three"}}, 422),
    ("bad format", {"data": {"question": "tanh", "format": "xml"}}, 422),
    ("json not object", {"json": ["tanh"]}, 422),
    ("json wrong type", {"json": {"question": 42}}, 422),
    (
        "invalid utf-8 json",
        {"content": b'{"question": "\xff\xfe"}', "headers": {"content-type": "application/json"}},
        422,
    ),
    (
        "invalid utf-8 form",
        {
            "content": b"question=%ff%fe%fd",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        422,
    ),
    (
        "raw invalid utf-8 form",
        {
            "content": b"question=\xff\xfe",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        422,
    ),
    (
        "multipart field not utf-8",
        {
            "content": b'--xx\r\nContent-Disposition: form-data; name="question"\r\n\r\n'
            b"caf\xe9\r\n--xx--\r\n",
            "headers": {"content-type": "multipart/form-data; boundary=xx"},
        },
        422,
    ),
    (
        "garbage multipart",
        {
            "content": b"--xx\r\nContent-Disposition: garbage\r\n\r\nzz",
            "headers": {"content-type": "multipart/form-data; boundary=xx"},
        },
        None,
    ),
    (
        "wrong content type",
        {"content": b"question=hi", "headers": {"content-type": "text/csv"}},
        415,
    ),
    ("huge body", {"data": {"question": "x" * 200_000}}, 413),
    ("no body", {}, 422),
    ("k superscript digit", {"data": {"question": "tanh", "k": "\u00b2"}}, 422),
    ("k arabic digit", {"data": {"question": "tanh", "k": "\u0663"}}, 422),
    ("k 5000 digits", {"data": {"question": "tanh", "k": "1" * 5000}}, 422),
    (
        "json k 5000 digits",
        {
            "content": b'{"question": "tanh", "k": ' + b"1" * 5000 + b"}",
            "headers": {"content-type": "application/json"},
        },
        422,
    ),
    ("json k float", {"json": {"question": "tanh", "k": 3.0}}, 422),
    ("json k bool", {"json": {"question": "tanh", "k": True}}, 422),
    ("json question list", {"json": {"question": ["tanh"]}}, 422),
    (
        "json nested 50000 deep",
        {"content": b"[" * 50_000, "headers": {"content-type": "application/json"}},
        422,
    ),
    (
        "json lone surrogate",
        {
            "content": b'{"question": "tanh \\ud800"}',
            "headers": {"content-type": "application/json"},
        },
        422,
    ),
    (
        "multipart no boundary",
        {"content": b"question=hi", "headers": {"content-type": "multipart/form-data"}},
        400,
    ),
    ("question as a file", {"files": {"question": ("q.txt", b"tanh", "text/plain")}}, 422),
]


@pytest.mark.parametrize("endpoint", ["/karpathy-docs", "/karpathy-stream"])
@pytest.mark.parametrize(
    ("name", "request_kwargs", "status"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_input_is_a_fast_4xx_with_json_detail(server, endpoint, name, request_kwargs, status):
    started = time.monotonic()
    response = httpx.post(server.url + endpoint, timeout=5, **request_kwargs)
    assert time.monotonic() - started < 1.0
    if status is None:
        assert 400 <= response.status_code < 500
    else:
        assert response.status_code == status
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    assert not re.search(r"\b[45]\d\d: ", detail), "an exception's status leaked into its text"


def test_cors_is_open_by_default(server):
    response = httpx.options(
        server.url + "/karpathy-docs",
        headers={"Origin": "https://example.org", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "https://example.org")


@pytest.mark.parametrize("endpoint", ["/karpathy-docs", "/karpathy-stream"])
def test_wrong_method_and_unknown_paths_answer_json(server, endpoint):
    response = httpx.get(server.url + endpoint)
    assert response.status_code == 405 and response.json()["detail"]
    missing = httpx.post(server.url + endpoint + "-nope", data={"question": "tanh"})
    assert missing.status_code == 404 and missing.json()["detail"]
