"""``GET /``: the web page for browsers, the welcome JSON for everyone else; and the page's files.

The page is three static files in ``web/`` (no build step): a browser asking for ``text/html``
gets ``index.html``, which loads ``/web/app.css`` and ``/web/app.js`` from this process and
nothing else (its Content-Security-Policy says so). API clients keep ``{"message": ...}``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent / "web"
WELCOME = {"message": "Welcome to Karpathy GPT!"}

# Scripts, styles and fetches from this origin only; links to the videos are navigation.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Vary": "Accept",
}

router = APIRouter()


@router.get(
    "/",
    summary="Welcome (JSON), or the web page for a browser (Accept: text/html)",
    responses={200: {"content": {"application/json": {}, "text/html": {}}}},
)
async def home(request: Request) -> Response:
    if prefers_html(request.headers.get("accept", "")):
        return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)
    return JSONResponse(WELCOME, headers={"Vary": "Accept"})


def mount_assets(app: FastAPI) -> None:
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")


def prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks text/html above JSON (a browser's does; curl's */* not)."""
    quality: dict[str, float] = {}
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media.lower()] = max(q, quality.get(media.lower(), 0.0))
    html = quality.get("text/html", 0.0)
    return html > 0 and html >= quality.get("application/json", 0.0)
