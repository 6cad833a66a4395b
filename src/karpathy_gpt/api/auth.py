"""Optional bearer-token auth (``KGPT_API_KEYS``) in front of every route but a few public ones.

It is ASGI middleware rather than a route dependency so that it is deny-by-default: a route or
router added later is covered without opting in, and a request without a valid token is
refused before its body is read or parsed (a dependency would run after FastAPI has read and
validated a declared body). Public are only what holds no data: ``/healthz``, the page at ``/``
with its static assets, and the OpenAPI description. CORS preflights never reach it: the CORS
middleware sits outside and answers them, and adds its headers to the 401s too.

Every refusal is the same 401, whatever was wrong, and tokens are compared by their SHA-256
digests with ``hmac.compare_digest`` against every key, so neither the reply nor its timing
tells a near miss from a wild guess, or which key came close.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: Paths served to anyone (GET and HEAD only). The web page's assets go under a public prefix.
PUBLIC_PATHS = frozenset(
    {"/", "/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)
PUBLIC_PREFIXES = ("/web/",)  # the page's own html, js and css (api/page.py)
PUBLIC_METHODS = frozenset({"GET", "HEAD"})


def is_public(method: str, path: str) -> bool:
    return method in PUBLIC_METHODS and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))


def _digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token if isinstance(token, bytes) else token.encode()).digest()


class BearerAuth:
    """Lets a request through when it is public or carries ``Authorization: Bearer <key>``."""

    def __init__(self, app: ASGIApp, keys: Iterable[str]):
        self.app = app
        self._digests = [_digest(key) for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or is_public(scope["method"], scope["path"])
            or self._authorized(scope)
        ):
            await self.app(scope, receive, send)
            return
        refusal = JSONResponse(
            {"detail": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
        await refusal(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, token = header.partition(b" ")
        offered = _digest(token.strip())
        # Every key is compared, matched or not: the time taken says nothing about which.
        matches = [hmac.compare_digest(offered, key) for key in self._digests]
        return scheme.lower() == b"bearer" and any(matches)


def describe_bearer_auth(app: FastAPI) -> None:
    """Say in the OpenAPI description that operations need the token (/docs then offers it)."""
    describe = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = describe()  # FastAPI's own, cached on the app
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    if not is_public(method.upper(), path):
                        operation["security"] = [{"bearer": []}]
        return app.openapi_schema

    app.openapi = openapi
