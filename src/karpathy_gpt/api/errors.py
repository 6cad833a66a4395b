"""Every error response, in one place per shape: ``{"detail": ...}`` for the original API and
the page, OpenAI's ``{"error": {"message", "type", "param", "code"}}`` under /v1.

Whatever fails on purpose raises a ``KgptError`` (karpathy_gpt.errors), which carries its
status, message and ``Retry-After``; Starlette's HTTP errors (unknown route, wrong method, a
body too large), FastAPI's validation errors and anything unexpected end here too. A client
never sees a traceback: an unexpected failure is a 500 that points at the server log.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import KgptError, RequestError
from ..logs import redact
from ..store import DatabaseError

log = logging.getLogger("karpathy_gpt")

INTERNAL_ERROR = "internal error; see the server log"
# OpenAI's codes for the HTTP errors Starlette raises.
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def under_v1(request: Request) -> bool:
    """Whether ``request`` is for the OpenAI-compatible API, whose errors take OpenAI's shape."""
    return (request.url.path + "/").startswith("/v1/")


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error object (also sent as an event when a /v1 stream fails)."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_of(exc: KgptError) -> dict:
    """``exc`` as OpenAI's error object, secrets masked."""
    return error_body(redact(exc.message), exc.type, exc.param, exc.code)


def error_response(request: Request, exc: KgptError) -> JSONResponse:
    """The one place that picks the shape of an error response."""
    body = error_of(exc) if under_v1(request) else {"detail": redact(exc.message)}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers())


async def kgpt_error(request: Request, exc: KgptError) -> JSONResponse:
    if isinstance(exc, DatabaseError):  # the operator's business, not only the client's
        log.error("%s", exc)
    return error_response(request, exc)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own refusals; under /v1 with a message that says what to use instead."""
    message = str(exc.detail)
    if under_v1(request) and exc.status_code == 404:
        message = f"no such endpoint {request.method} {request.url.path}; see GET /docs"
    elif under_v1(request) and exc.status_code == 405:
        allowed = exc.headers.get("Allow", "") if exc.headers else ""
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    refusal = RequestError(message, status=exc.status_code, code=HTTP_CODES.get(exc.status_code))
    response = error_response(request, refusal)
    response.headers.update(exc.headers or {})
    return response


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in exc.errors()
    )
    return error_response(request, RequestError(detail, status=422))


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log (uvicorn prints it, secrets masked); the client gets JSON.
    return error_response(request, KgptError(INTERNAL_ERROR))


def install(app: FastAPI) -> None:
    app.add_exception_handler(KgptError, kgpt_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)
