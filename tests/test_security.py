"""A server safe to expose: bearer-token auth, CORS with auth, no secrets or questions in logs.

Against real servers on 127.0.0.1: one with two API keys, a CORS allow-list and an
OPENAI_API_KEY (its model server is down, so answers end in an error event), one at debug level.
"""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
from support.servers import Server, base_env, free_port
from support.streams import passages, post_sse

from karpathy_gpt.config import Settings
from karpathy_gpt.logs import RedactSecrets, configure_logging, redact, secrets_of

pytestmark = pytest.mark.slow

KEYS = ("kgpt-test-key-one-7f3a9c", "kgpt-test-key-two-41d2e8")
OPENAI_KEY = "sk-test-openai-secret-9b8c7d6e5f"
ORIGIN = "https://app.example.org"
QUESTION = "What does the zebra-striped kettle say about backpropagation"


@pytest.fixture(scope="module")
def guarded(index_dir, output_dir):
    srv = Server(
        base_env(
            KGPT_INDEX_DIR=str(index_dir),
            KGPT_API_KEYS=f" {KEYS[0]}, {KEYS[1]} ,",
            KGPT_CORS_ORIGINS=f"{ORIGIN},https://other.example.org",
            KGPT_MAX_QUESTION_CHARS="500",
            OPENAI_API_KEY=OPENAI_KEY,
            OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
        ),
        output_dir / "server-guarded.log",
    )
    srv.wait_ready()
    yield srv
    srv.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong"),
        bearer(KEYS[0][:-1]),
        bearer(KEYS[0] + "x"),
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {KEYS[0]}"},
        {"Authorization": KEYS[0]},
        {"X-API-Key": KEYS[0]},
    ],
    ids=["none", "wrong", "prefix", "longer", "empty", "basic", "no scheme", "other header"],
)
@pytest.mark.parametrize("endpoint", ["/karpathy-docs", "/karpathy-stream", "/nowhere"])
def test_missing_or_wrong_token_is_the_same_bare_401(guarded, endpoint, headers):
    response = httpx.post(
        guarded.url + endpoint, data={"question": "What is makemore"}, headers=headers
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "unauthorized"}
    assert response.headers["www-authenticate"] == "Bearer"


def test_unauthorized_bodies_are_not_read(guarded):
    """Refused before parsing: a bad body gets the 401, not a 4xx that describes the body."""
    for kwargs in (
        {"content": b"\xff" * 100, "headers": {"content-type": "application/json"}},
        {"data": {"question": "x" * 200_000}},
        {"content": b"question=hi", "headers": {"content-type": "text/csv"}},
    ):
        response = httpx.post(guarded.url + "/karpathy-docs", **kwargs)
        assert response.status_code == 401 and response.json() == {"detail": "unauthorized"}


@pytest.mark.parametrize("key", KEYS)
def test_each_configured_key_is_let_in(guarded, key):
    response, events = post_sse(
        guarded.url + "/karpathy-docs", data={"question": "What is makemore"}, headers=bearer(key)
    )
    assert response.status_code == 200 and len(passages(events)) == 3
    lowercase = httpx.post(
        guarded.url + "/karpathy-docs",
        json={"question": "tanh", "k": 1},
        headers={"authorization": f"bearer {key}"},
    )
    assert lowercase.status_code == 200


def test_health_welcome_and_docs_stay_public(guarded):
    health = httpx.get(guarded.url + "/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert httpx.get(guarded.url + "/").status_code == 200
    spec = httpx.get(guarded.url + "/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert spec["paths"]["/karpathy-stream"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    form = spec["paths"]["/karpathy-docs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["question"]["maxLength"] == 500  # this server's limit
    assert httpx.get(guarded.url + "/docs").status_code == 200
    # Public means read-only: a POST to a public path is not let through.
    assert httpx.post(guarded.url + "/healthz").status_code == 401


def test_cors_preflight_allows_the_authorization_header_without_a_token(guarded):
    preflight = httpx.options(
        guarded.url + "/karpathy-stream",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]

    refused = httpx.options(
        guarded.url + "/karpathy-stream",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert "KGPT_CORS_ORIGINS" in refused.json()["detail"]
    assert preflight.json() == {"status": "ok"}
    wrong_method = httpx.options(
        guarded.url + "/karpathy-stream",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"},
    )
    assert wrong_method.status_code == 400
    assert wrong_method.json() == {"detail": "Disallowed CORS method"}


def test_cors_headers_on_authorized_answers_and_on_401s(guarded):
    ok = httpx.post(
        guarded.url + "/karpathy-docs",
        json={"question": "tanh", "k": 1},
        headers={**bearer(KEYS[1]), "Origin": ORIGIN},
    )
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    # A browser page can read the 401 (and so tell its user the key is wrong).
    denied = httpx.post(
        guarded.url + "/karpathy-docs", json={"question": "tanh"}, headers={"Origin": ORIGIN}
    )
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.post(
        guarded.url + "/karpathy-docs",
        json={"question": "tanh", "k": 1},
        headers={**bearer(KEYS[1]), "Origin": "https://evil.example.net"},
    )
    assert "access-control-allow-origin" not in other.headers


def test_secrets_and_questions_stay_out_of_the_log_and_the_errors(guarded):
    """Errors of every kind exercised, then the log and every reply searched for secrets."""
    replies: list[str] = []
    headers = bearer(KEYS[0])
    # The answer provider fails (its server is down): the error event says what to do.
    response, events = post_sse(
        guarded.url + "/karpathy-stream", data={"question": QUESTION}, headers=headers
    )
    assert response.status_code == 200 and events[-1][0] == "error"
    replies.append(json.dumps(events))
    _, docs = post_sse(guarded.url + "/karpathy-docs", data={"question": QUESTION}, headers=headers)
    assert len(passages(docs)) == 3
    for kwargs in (
        {"data": {"question": ""}},
        {"data": {"question": QUESTION, "k": "99"}},
        {"content": b"--x\r\ngarbage", "headers": {"content-type": "multipart/form-data"}},
        {"json": {"question": QUESTION + " " * 3000 + "x"}},
    ):
        kwargs["headers"] = {**kwargs.get("headers", {}), **headers}
        reply = httpx.post(guarded.url + "/karpathy-stream", **kwargs)
        assert 400 <= reply.status_code < 500
        replies.append(reply.text)
    for key in ("wrong", KEYS[0] + "0", OPENAI_KEY):
        replies.append(httpx.post(guarded.url + "/karpathy-docs", headers=bearer(key)).text)
    # A key pasted into a URL reaches the access log, masked.
    replies.append(httpx.get(guarded.url + "/healthz", params={"key": KEYS[1]}).text)

    log = guarded.log_path.read_text()
    assert "answer provider failed" in log, "the failure itself is logged"
    assert "API keys required (2 configured)" in log
    assert '"GET /healthz?key=*** HTTP/1.1" 200' in log
    for secret in (*KEYS, OPENAI_KEY):
        assert secret not in log
        assert all(secret not in reply for reply in replies)
    assert "zebra-striped" not in log, "questions are logged only at debug level"
    assert "POST /karpathy-stream" in log, "the access log is on; it just holds no bodies"


def test_debug_logging_shows_questions_as_sent_and_passages(index_dir, output_dir):
    srv = Server(
        base_env(KGPT_INDEX_DIR=str(index_dir), KGPT_LOG_LEVEL="DEBUG"),
        output_dir / "server-debug.log",
    )
    # Every body format reads UTF-8 as sent: curl -d sends it raw, which Starlette alone reads
    # as Latin-1 ("QuÃ©").
    form = "application/x-www-form-urlencoded"
    bodies = {
        "¿Qué es makemore? raw": {
            "content": "question=¿Qué es makemore? raw".encode(),
            "headers": {"content-type": form},
        },
        "¿Qué es makemore? escaped": {
            "content": b"question=%C2%BFQu%C3%A9+es+makemore%3F+escaped",
            "headers": {"content-type": form},
        },
        "¿Qué es makemore? multipart": {
            "files": {"question": (None, "¿Qué es makemore? multipart")}
        },
        "¿Qué es makemore? json 🚀": {"json": {"question": "¿Qué es makemore? json 🚀"}},
    }
    try:
        srv.wait_ready()
        post_sse(srv.url + "/karpathy-docs", data={"question": QUESTION})
        for request in bodies.values():
            assert httpx.post(srv.url + "/karpathy-docs", **request).status_code == 200
    finally:
        srv.stop()
    log = srv.log_path.read_text(encoding="utf-8")
    assert "zebra-striped" in log and "(k=3)" in log
    for question in bodies:
        assert repr(question) in log, question


def test_the_log_filter_masks_secrets_in_messages_and_tracebacks():
    settings = Settings(
        api_keys=",".join(KEYS),
        OPENAI_API_KEY=OPENAI_KEY,
        database_url="postgresql://kgpt:pg-pass-5e6f7a@db.internal:5432/kgpt",
    )
    assert set(secrets_of(settings)) == {*KEYS, OPENAI_KEY, "pg-pass-5e6f7a"}
    printed = io.StringIO()
    handler = logging.StreamHandler(printed)
    ours = logging.getLogger("karpathy_gpt")
    ours.addHandler(handler)
    try:
        configure_logging(settings)  # the filter goes on every handler, this one too
        assert any(isinstance(f, RedactSecrets) for f in handler.filters)
        log = logging.getLogger("karpathy_gpt.test")
        try:
            raise RuntimeError(f"upstream said: bad key {OPENAI_KEY}")
        except RuntimeError:
            log.exception("connecting to %s failed", settings.database_url)
        log.warning("offered %s", KEYS[1])
        log.warning("refused %s", ValueError(KEYS[0]))
    finally:
        ours.removeHandler(handler)
        configure_logging(Settings())
    text = printed.getvalue()
    assert "connecting to postgresql://kgpt:***@db.internal" in text
    assert "RuntimeError: upstream said: bad key ***" in text
    assert "offered ***" in text and "refused ***" in text
    assert not any(secret in text for secret in secrets_of(settings))
    assert redact(f"x{KEYS[0]}y") == f"x{KEYS[0]}y", "no secrets configured any more"
