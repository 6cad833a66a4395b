"""The original karpathy-gpt-api contract: /karpathy-docs and /karpathy-stream as SSE.

/karpathy-docs sends one event per retrieved passage, /karpathy-stream one event per answer
token; both finish with ``event: end`` / ``data: DONE``. A failing answer provider ends the
answer stream with ``event: error`` and a JSON message instead. An answerer with no room left
(its wait queue is full) makes /karpathy-stream a 503 with ``Retry-After``, decided before the
stream starts (answer/admission.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..answer import AnswerError
from ..answer.errors import INTERNAL_ERROR
from ..logs import redact
from ..store import Hit
from .requests import Ask, read_ask
from .service import Service, get_service
from .streaming import event_stream

log = logging.getLogger(__name__)
router = APIRouter()

QUESTION_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": r"\S"}
ASK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            content_type: {
                "schema": {
                    "type": "object",
                    "anyOf": [{"required": ["question"]}, {"required": ["query"]}],
                    "properties": {
                        "question": QUESTION_SCHEMA,
                        "query": {**QUESTION_SCHEMA, "description": "alias of question"},
                        "k": {"type": "integer", "minimum": 1, "maximum": 20, "default": 3},
                        "format": {"type": "string", "enum": ["json", "text"]},
                    },
                }
            }
            for content_type in (
                "multipart/form-data",
                "application/x-www-form-urlencoded",
                "application/json",
            )
        },
    },
    "responses": {
        "200": {"content": {"text/event-stream": {}}},
        "503": {"description": "/karpathy-stream only: the model is busy; see Retry-After"},
    },
}

END = ServerSentEvent(event="end", data="DONE")
ServiceDep = Annotated[Service, Depends(get_service)]


async def ask(request: Request, service: ServiceDep) -> Ask:
    settings = service.settings
    return await read_ask(request, settings.default_k, settings.max_question_chars)


AskDep = Annotated[Ask, Depends(ask)]


def passage_json(hit: Hit, rank: int) -> str:
    metadata = {**hit.chunk.metadata, "rank": rank}
    return json.dumps({"data": {"pageContent": hit.chunk.text, "metadata": metadata}})


def passage_text(hit: Hit) -> str:
    """The original README's line: LangChain's Document printed."""
    meta = hit.chunk.metadata
    shown = {key: meta[key] for key in ("id", "link", "source", "title")}
    return f"page_content={json.dumps(hit.chunk.text, ensure_ascii=False)} metadata={shown!r}"


@router.post("/karpathy-docs", openapi_extra=ASK_BODY, summary="Retrieved passages as SSE")
async def karpathy_docs(body: AskDep, service: ServiceDep) -> EventSourceResponse:
    retrieval = await service.retrieve(body.question, body.k)

    async def events() -> AsyncIterator[ServerSentEvent]:
        for rank, hit in enumerate(retrieval.hits, start=1):
            data = passage_text(hit) if body.format == "text" else passage_json(hit, rank)
            yield ServerSentEvent(data=data)
        yield END

    return event_stream(events())


@router.post("/karpathy-stream", openapi_extra=ASK_BODY, summary="The answer as SSE tokens")
async def karpathy_stream(body: AskDep, service: ServiceDep) -> EventSourceResponse:
    answer = await service.answer(body.question, body.k)  # AnswerBusy: a 503 (api/errors.py)
    return event_stream(answer_events(answer.tokens), background=answer.releasing())


async def answer_events(tokens: AsyncIterator[str]) -> AsyncIterator[ServerSentEvent]:
    try:
        async for token in tokens:
            yield ServerSentEvent(data=token)
    except AnswerError as exc:
        log.warning("answer provider failed: %s", exc)
        yield ServerSentEvent(event="error", data=json.dumps({"message": redact(str(exc))}))
        return
    except Exception:
        log.exception("answering failed")
        yield ServerSentEvent(
            event="error",
            data=json.dumps({"message": INTERNAL_ERROR}),
        )
        return
    yield END
