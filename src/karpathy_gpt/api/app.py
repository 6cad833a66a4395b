"""Builds the FastAPI app: the service started in the lifespan, auth, CORS, routes, JSON errors."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from .. import __version__
from ..answer import AnswerBusy, check_answerer
from ..config import Settings, SettingsError, get_settings
from ..logs import configure_logging
from ..store.base import DatabaseError
from . import legacy, openai_compat, page
from .auth import BearerAuth, describe_bearer_auth
from .service import Service, get_service

log = logging.getLogger("karpathy_gpt")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; SettingsError at once (not at startup) if the settings cannot work."""
    settings = settings or get_settings()
    try:
        check_answerer(settings)
    except ValueError as exc:  # KGPT_ANSWERER unknown, KGPT_GGUF missing, ...
        raise SettingsError(str(exc)) from None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_logging(settings)
        if settings.api_key_list():
            log.info("API keys required (%d configured)", len(settings.api_key_list()))
        app.state.service = await run_in_threadpool(Service.start, settings)
        # Ready now; /v1's response types load meanwhile instead of delaying the start.
        loader = threading.Thread(target=openai_compat.openai_types, name="openai-types")
        loader.daemon = True
        loader.start()
        try:
            yield
        finally:
            await app.state.service.answerer.aclose()
            app.state.service.retriever.store.close()

    app = FastAPI(
        title="Karpathy-GPT",
        version=__version__,
        summary="Questions answered from Andrej Karpathy's Zero to Hero lectures, offline.",
        lifespan=lifespan,
    )
    if settings.api_key_list():
        app.add_middleware(BearerAuth, keys=settings.api_key_list())
    # Added last, so outermost: preflights are answered before auth, and 401s carry CORS headers.
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    app.add_middleware(
        JSONCORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["Retry-After"],
    )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _plain(exc)})

    app.add_exception_handler(StarletteHTTPException, openai_compat.http_error)
    app.add_exception_handler(openai_compat.ChatError, openai_compat.chat_error)

    @app.exception_handler(AnswerBusy)
    async def answer_busy(request: Request, exc: AnswerBusy) -> JSONResponse:
        """Every answer endpoint's "full": raised by Service.admit_answer before streaming."""
        return JSONResponse(
            status_code=503,
            content={"detail": str(exc)},
            headers={"Retry-After": str(exc.retry_after)},
        )

    @app.exception_handler(DatabaseError)
    async def database_error(request: Request, exc: DatabaseError) -> JSONResponse:
        """The index's database is down or unreachable: every endpoint that searches says so,
        in OpenAI's error shape under /v1."""
        log.error("%s", exc)
        if openai_compat.under_v1(request):
            body = openai_compat.error_body(str(exc), "server_error", code="index_unavailable")
        else:
            body = {"detail": str(exc)}
        return JSONResponse(status_code=503, content=body, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log (uvicorn prints it, secrets masked); the client gets JSON.
        return JSONResponse(
            status_code=500, content={"detail": "internal error; see the server log"}
        )

    @app.get("/healthz", summary="Liveness and what is loaded")
    async def healthz(service: Annotated[Service, Depends(get_service)]) -> dict:
        return {
            "status": "ok",
            "chunks": service.chunks,
            "answerer": service.answerer.name,
            "answer_streams": {"open": service.streams.admitted, "limit": service.streams.slots},
        }

    app.include_router(legacy.router)
    app.include_router(openai_compat.router)
    app.include_router(page.router)
    page.mount_assets(app)
    if settings.api_key_list():
        describe_bearer_auth(app)
    _document_limits(app, settings)
    return app


def _document_limits(app: FastAPI, settings: Settings) -> None:
    """The OpenAPI schema states this server's question limit and default k, not the built-in
    ones (KGPT_MAX_QUESTION_CHARS, KGPT_DEFAULT_K)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            for path in schema["paths"].values():
                body = path.get("post", {}).get("requestBody", {})
                for content in body.get("content", {}).values():
                    fields = content.get("schema", {}).get("properties", {})
                    for name in ("question", "query"):
                        if "maxLength" in fields.get(name, {}):
                            fields[name]["maxLength"] = settings.max_question_chars
                    if "default" in fields.get("k", {}):
                        fields["k"]["default"] = settings.default_k
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


class JSONCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with its preflight answers in JSON like every other response."""

    def preflight_response(self, request_headers: Headers) -> Response:
        plain = super().preflight_response(request_headers)
        headers = {
            k: v for k, v in plain.headers.items() if k not in ("content-length", "content-type")
        }
        if plain.status_code == 200:
            return JSONResponse({"status": "ok"}, headers=headers)
        detail = bytes(plain.body).decode()  # "Disallowed CORS origin, method"
        if "origin" in detail:
            detail += f" ({request_headers['origin']!r} is not one of KGPT_CORS_ORIGINS)"
        return JSONResponse({"detail": detail}, status_code=plain.status_code, headers=headers)


def _plain(exc: RequestValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in exc.errors()
    )
