"""Property-based fuzzing of the real server: no 5xx, every refusal a fast JSON 4xx.

Two sources of requests, both derandomized (the same examples on every run, so CI is stable)
and bounded (a few hundred requests, well under a minute here):

- schemathesis reads the app's own OpenAPI description (``/openapi.json``; the form and JSON
  bodies are described by ``ASK_BODY`` in api/legacy.py) and sends bodies that fit it and
  bodies that break it, on every operation;
- hypothesis builds what a schema does not describe: arbitrary bytes under every content type,
  and form or JSON fields of every type and unicode.

The OpenAI-compatible /v1/* are fuzzed alike; their refusals are OpenAI's
``{"error": {"message", ...}}`` instead of ``{"detail": ...}``, and their streams end with
``data: [DONE]``. Bodies that fit the chat schema name the served model (a wrong model is one
404 before anything else is read; tests/test_openai_compat.py has it), so they reach the
answer.
"""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import quote_from_bytes

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# (method, path, generation mode, examples): bodies that fit the schema and bodies that break it.
OPERATIONS = [
    ("POST", "/karpathy-docs", POSITIVE, 120),
    ("POST", "/karpathy-docs", NEGATIVE, 120),
    ("POST", "/karpathy-stream", POSITIVE, 120),
    ("POST", "/karpathy-stream", NEGATIVE, 120),
    ("POST", "/v1/chat/completions", POSITIVE, 120),
    ("POST", "/v1/chat/completions", NEGATIVE, 120),
    ("GET", "/v1/models", POSITIVE, 5),
    ("GET", "/v1/models/{model_id}", POSITIVE, 30),
    ("GET", "/healthz", POSITIVE, 5),
    ("GET", "/", POSITIVE, 5),
]
SSE_PATHS = ("/karpathy-docs", "/karpathy-stream")
CHAT_PATH = "/v1/chat/completions"
MODEL = "karpathy-gpt"
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=list(HealthCheck),
)


def check_reply(path: str, status: int, content_type: str, body: bytes, elapsed: float) -> None:
    openai = path.startswith("/v1/")
    assert status < 500, body[:500]
    if status == 200 and content_type.startswith("text/event-stream"):
        text = body.decode()
        assert text.rstrip().endswith("data: [DONE]" if openai else "data: DONE"), text[-300:]
        if openai:
            chunks = [line[6:] for line in text.splitlines() if line.startswith("data: {")]
            assert all("error" not in json.loads(chunk) for chunk in chunks), text[-300:]
        else:
            assert "event: error" not in text, text[-300:]
        return
    assert content_type.startswith("application/json"), (status, content_type, body[:300])
    reply = json.loads(body)
    if status >= 400:
        message = reply["error"]["message"] if openai else reply["detail"]
        assert isinstance(message, str) and message, reply
        if openai:
            assert isinstance(reply["error"]["type"], str), reply
        assert elapsed < 2.0, f"a refusal took {elapsed:.2f}s"
    elif path == CHAT_PATH:
        assert reply["object"] == "chat.completion" and reply["choices"][0]["message"], reply


@pytest.fixture(scope="module")
def api_schema(server):
    # Read whole answers (a long one has more events than schemathesis reads by default).
    config = SchemathesisConfig.from_dict({"max-stream-events": 100_000})
    return schemathesis.openapi.from_url(server.url + "/openapi.json", config=config)


@pytest.mark.parametrize(
    ("method", "path", "mode", "examples"),
    OPERATIONS,
    ids=[f"{m} {p} {mode.value}" for m, p, mode, _ in OPERATIONS],
)
def test_schemathesis_finds_no_server_error(api_schema, server, method, path, mode, examples):
    statuses: Counter[int] = Counter()

    cases = api_schema[path][method].as_strategy(generation_mode=mode)
    if path == CHAT_PATH and mode == POSITIVE:
        cases = cases.map(naming_the_served_model)

    @settings(FUZZ, max_examples=examples)
    @given(case=cases)
    def fuzz(case) -> None:
        response = case.call(base_url=server.url, timeout=10)
        content_type = (response.headers.get("content-type") or [""])[0]
        check_reply(path, response.status_code, content_type, response.content, response.elapsed)
        statuses[response.status_code] += 1

    fuzz()
    print(f"{method} {path} {mode.value}: {dict(statuses)}")
    fitting = statuses[200] / statuses.total()
    if path in SSE_PATHS:  # the schema tells valid from invalid as the server does, mostly
        assert fitting > 0.8 if mode == POSITIVE else fitting < 0.5, statuses
    elif path == CHAT_PATH:
        # A schema cannot say that the last message must be the user's, nor that a question
        # must hold more than blanks: a share of fitting bodies is refused, all with a 400.
        assert fitting > 0.1 if mode == POSITIVE else fitting < 0.5, statuses


def naming_the_served_model(case):
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = MODEL
    return case


CONTENT_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "text/plain",
    "application/octet-stream",
    "application/json; charset=latin-1",
    "",
]
EDGE_TEXT = ["0", "1", "20", "21", "-1", "3.5", "1e3", "\u00b2", " 7 ", "\ud800", "", "   "]
RAW_EDGES = [
    b"[" * 50_000,
    b'{"question": "tanh", "k": ' + b"1" * 5000 + b"}",
    b'{"question": "tanh \\ud800"}',
    b"question=tanh&k=%C2%B2",
    b"--xyz\r\nContent-Disposition: form-data; name=question\r\n\r\ntanh",
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(EDGE_TEXT),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=8,
)
FIELD_TEXT = st.text(max_size=60) | st.sampled_from([*EDGE_TEXT, "9" * 5000])


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def send(client: httpx.Client, path: str, **kwargs) -> None:
    response = client.post(path, **kwargs)
    check_reply(
        path,
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
        response.elapsed.total_seconds(),
    )


@FUZZ
@given(
    path=st.sampled_from([*SSE_PATHS, CHAT_PATH]),
    content_type=st.sampled_from(CONTENT_TYPES),
    body=st.binary(max_size=600) | st.sampled_from(RAW_EDGES),
)
def test_raw_bytes_under_any_content_type(client, path, content_type, body):
    headers = {"content-type": content_type} if content_type else {}
    send(client, path, content=body, headers=headers)


@FUZZ
@given(
    path=st.sampled_from(SSE_PATHS),
    fields=st.dictionaries(
        st.sampled_from(["question", "query", "k", "format", "other"]), JSON_VALUES, max_size=4
    ),
)
def test_json_fields_of_any_type(client, path, fields):
    body = json.dumps(fields).encode()  # NaN and Infinity included, as Python writes them
    send(client, path, content=body, headers={"content-type": "application/json"})


@FUZZ
@given(
    path=st.sampled_from(SSE_PATHS),
    fields=st.dictionaries(
        st.sampled_from(["question", "query", "k", "format"]), FIELD_TEXT, max_size=4
    ),
    multipart=st.booleans(),
)
def test_form_fields_of_any_text(client, path, fields, multipart):
    encoded = {name: value.encode("utf-8", "surrogatepass") for name, value in fields.items()}
    if multipart:
        send(client, path, files={name: (None, value) for name, value in encoded.items()})
    else:
        body = "&".join(
            f"{quote_from_bytes(n.encode())}={quote_from_bytes(v)}" for n, v in encoded.items()
        )
        send(
            client,
            path,
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )


ROLE = st.sampled_from(["user", "assistant", "system", "developer", "tool", "User", ""])
CONTENT = (
    FIELD_TEXT
    | st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "image_url"])}, optional={"text": JSON_VALUES}
        ),
        max_size=3,
    )
    | JSON_VALUES
)
MESSAGE = st.fixed_dictionaries({}, optional={"role": ROLE | JSON_VALUES, "content": CONTENT})
CHAT_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "model": st.just(MODEL) | JSON_VALUES,
        "messages": st.lists(MESSAGE, max_size=4) | JSON_VALUES,
        "stream": st.booleans() | JSON_VALUES,
        "n": st.sampled_from([1, 2, 0]) | JSON_VALUES,
        "k": st.sampled_from([1, 20, 21, 0]) | JSON_VALUES,
        "temperature": JSON_VALUES,
    },
)


@FUZZ
@given(fields=CHAT_FIELDS)
def test_chat_bodies_of_any_shape(client, fields):
    body = json.dumps(fields).encode()
    send(client, CHAT_PATH, content=body, headers={"content-type": "application/json"})
