"""/v1/models and /v1/chat/completions: the same retrieval and answerer as /karpathy-stream."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ...conversation import bound_history
from ...errors import RequestError
from ..errors import error_body
from ..service import Service, get_service
from ..streaming import SHUTTING_DOWN_MESSAGE, event_stream
from .responses import completion, completion_events, event, model_card, source
from .schema import conversation, openapi_body, read_chat

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
ServiceDep = Annotated[Service, Depends(get_service)]


@router.get("/models", summary="The model of each corpus served")
async def list_models(service: ServiceDep) -> dict:
    return {"object": "list", "data": [model_card(service.settings.model_name)]}


@router.get("/models/{model_id}", summary="One model")
async def retrieve_model(model_id: str, service: ServiceDep) -> dict:
    _check_model(model_id, service)
    return model_card(service.settings.model_name)


def _check_model(model_id: str, service: Service) -> None:
    if model_id != service.settings.model_name:
        raise RequestError(
            f"the model {model_id!r} does not exist; this server answers as "
            f"{service.settings.model_name!r} (GET /v1/models)",
            status=404,
            param="model",
            code="model_not_found",
        )


@router.post("/chat/completions", openapi_extra=openapi_body(), summary="Chat completion (OpenAI)")
async def chat_completions(request: Request, service: ServiceDep) -> Response:
    settings = service.settings
    chat = await read_chat(request)
    _check_model(chat.model, service)
    question, history = conversation(chat, settings.max_question_chars)
    history = bound_history(history, settings.history_messages)
    # AnswerBusy (a 503 + Retry-After) before anything streams; see Service.answer.
    answer = await service.answer(question, chat.k or settings.default_k, history, counted=True)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": chat.model}
    sources = [source(hit, n) for n, hit in enumerate(answer.retrieval.hits, start=1)]
    if chat.stream:
        asked = chat.stream_options is not None and chat.stream_options.include_usage
        usage_of = answer.usage_of if asked else None  # a last chunk only when asked
        return event_stream(
            completion_events(answer.tokens, head, sources, usage_of),
            farewell=event(error_body(SHUTTING_DOWN_MESSAGE, "server_error", code="shutdown")),
            sep="\n",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=answer.releasing(),
        )
    async with answer:
        return JSONResponse(await completion(answer.tokens, head, sources, answer.usage_of))
