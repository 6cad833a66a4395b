"""Builds the FastAPI app: the service started in the lifespan, auth, CORS, routes, JSON errors."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..answer import check_answerer
from ..config import Settings, SettingsError, get_settings
from ..errors import KgptError
from ..logs import configure_logging, redact
from . import errors, legacy, page, v1
from .auth import BearerAuth, describe_bearer_auth
from .service import Service, get_service
from .v1.responses import openai_types

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
        try:
            app.state.service = await run_in_threadpool(Service.start, settings)
        except KgptError as exc:  # told in one line by StartupFailure, not as a traceback
            app.state.startup_error = redact(str(exc))
            raise
        # Ready now; /v1's response types load meanwhile instead of delaying the start.
        loader = threading.Thread(target=openai_types, name="openai-types")
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
    app.add_middleware(StartupFailure)
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

    errors.install(app)

    @app.get("/healthz", summary="Liveness and what is loaded")
    async def healthz(service: Annotated[Service, Depends(get_service)]) -> dict:
        return {
            "status": "ok",
            "chunks": service.chunks,
            "answerer": service.answerer.name,
            "answer_streams": {"open": service.streams.admitted, "limit": service.streams.slots},
        }

    app.include_router(legacy.router)
    app.include_router(v1.router)
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


class StartupFailure:
    """A start that fails for a reason of ours (a disk that cannot take the index, a database
    that refuses it) reaches the log as its one line instead of a traceback: uvicorn prints the
    message of ``lifespan.startup.failed``, which Starlette fills with the traceback."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def relay(message: Message) -> None:
            line = getattr(scope["app"].state, "startup_error", None)
            if message["type"] == "lifespan.startup.failed" and line:
                message = {**message, "message": line}
            await send(message)

        await self.app(scope, receive, relay)
