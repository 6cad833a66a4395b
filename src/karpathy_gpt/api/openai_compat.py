"""The OpenAI-compatible API: /v1/models and /v1/chat/completions over the same retrieval and
answerer as /karpathy-stream, so any OpenAI client (the ``openai`` SDKs, Open WebUI, LibreChat,
curl) can ask the lectures.

Responses are OpenAI's own types (from the ``openai`` package). The passages an answer cites go
along as ``sources`` on the choice, as PrivateGPT sends them: in ``choices[0].sources`` of a
``chat.completion``, and in the first ``chat.completion.chunk`` of a stream, before any text.
A stream is ``data: {json}`` events framed by a blank line and ends with ``data: [DONE]``; an
answer provider that fails mid-stream sends ``data: {"error": {...}}`` and then ``[DONE]``.
Every refusal is OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``.
A ``chat.completion`` carries ``usage``, and so does a stream's last chunk when asked with
``stream_options.include_usage`` (see answer/usage.py; options in chat_options.py).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from functools import cache, partial
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..answer import AnswerBusy, AnswerError, Message, Usage
from ..answer.errors import INTERNAL_ERROR
from ..conversation import bound_history, retrieval_query
from ..logs import redact
from ..retrieval import QuestionError, Retrieval, checked_question
from ..store import Hit
from .chat_options import StreamOptions, unsupported
from .requests import has_lone_surrogates, json_body, read_capped
from .service import Service, get_service
from .streaming import SHUTTING_DOWN_MESSAGE, event_stream

log = logging.getLogger(__name__)


@cache
def openai_types() -> SimpleNamespace:
    """OpenAI's response types, imported on first use: the ``openai`` package takes ~0.5 s to
    import, half of a warm start. The app loads them in the background once it is up."""
    from openai.types import Model
    from openai.types.chat import (
        ChatCompletion,
        ChatCompletionChunk,
        ChatCompletionMessage,
        chat_completion,
        chat_completion_chunk,
    )

    return SimpleNamespace(
        Model=Model,
        ChatCompletion=ChatCompletion,
        ChatCompletionChunk=ChatCompletionChunk,
        ChatCompletionMessage=ChatCompletionMessage,
        Choice=chat_completion.Choice,
        ChunkChoice=chat_completion_chunk.Choice,
        ChoiceDelta=chat_completion_chunk.ChoiceDelta,
    )


router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
ServiceDep = Annotated[Service, Depends(get_service)]

#: A whole conversation fits many times over; the question itself is capped by its own limit.
MAX_CHAT_BODY_BYTES = 512 * 1024
OWNER = "karpathy-gpt"
STARTED = int(time.time())
ROLES = ("system", "developer", "user", "assistant")
DONE = {"data": "[DONE]"}


class ChatError(Exception):
    """A refusal in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type, param, code)
        self.headers = headers


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


async def chat_error(request: Request, exc: ChatError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


def under_v1(request: Request) -> bool:
    """Whether ``request`` is for this API, whose errors take OpenAI's shape."""
    return (request.url.path + "/").startswith("/v1/")


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """OpenAI's error shape under /v1 (unknown route, wrong method, body too large), FastAPI's
    ``{"detail": ...}`` everywhere else."""
    if not under_v1(request):
        return await http_exception_handler(request, exc)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"no such endpoint {request.method} {request.url.path}; see GET /docs"
    elif exc.status_code == 405:
        allowed = exc.headers.get("Allow", "") if exc.headers else ""
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    return JSONResponse(
        error_body(message, "invalid_request_error", code=codes.get(exc.status_code)),
        status_code=exc.status_code,
        headers=exc.headers,
    )


class TextPart(BaseModel):
    type: StrictStr
    text: StrictStr = ""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: StrictStr
    content: StrictStr | list[TextPart] | None = None

    @field_validator("role")
    @classmethod
    def known_role(cls, role: str) -> str:
        if role not in ROLES:
            raise ValueError(
                f"role {role!r} is not supported: send system, user and assistant messages "
                "(this endpoint answers from the lectures and calls no tools)"
            )
        return role

    @field_validator("content", mode="before")
    @classmethod
    def text_content(cls, content: Any) -> Any:
        if content is None or isinstance(content, str):
            return content
        if not isinstance(content, list):
            raise ValueError("content must be a string or a list of text parts")
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ValueError(f"only text content parts are supported, not {kind!r}")
        return content

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(BaseModel):
    """OpenAI's chat request; sampling options are accepted and left to the answerer's settings."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    n: StrictInt | None = None
    k: StrictInt | None = Field(None, ge=1, le=20, description="passages (not OpenAI's)")

    @field_validator("n")
    @classmethod
    def one_choice(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise ValueError("only one choice per request is supported (n=1)")
        return n


CHAT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model", "messages"],
                    "properties": {
                        "model": {"type": "string", "example": "karpathy-gpt"},
                        "messages": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["role", "content"],
                                "properties": {
                                    "role": {"type": "string", "enum": list(ROLES)},
                                    "content": {"type": "string"},
                                },
                            },
                        },
                        "stream": {"type": "boolean", "default": False},
                        "k": {"type": "integer", "minimum": 1, "maximum": 20, "default": 3},
                    },
                }
            }
        },
    },
    "responses": {"200": {"content": {"application/json": {}, "text/event-stream": {}}}},
}


async def read_chat(request: Request) -> ChatRequest:
    body = await read_capped(request, MAX_CHAT_BODY_BYTES)
    try:
        data = json_body(body)
    except ValueError as exc:
        raise ChatError(400, f"the {exc}") from exc
    try:
        unpaired = has_lone_surrogates(json.dumps(data, ensure_ascii=False))
    except RecursionError as exc:  # loads takes some depths that dumps does not
        raise ChatError(400, "the JSON body is nested too deeply") from exc
    if unpaired:  # "\ud800" is valid JSON, but no text: the tokenizer and UTF-8 refuse it
        raise ChatError(400, "the body is not valid Unicode: it holds a lone surrogate (\\ud800)")
    if not isinstance(data, dict):
        raise ChatError(400, 'the body must be a JSON object: {"model": ..., "messages": [...]}')
    try:
        chat = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ChatError(400, f"{param}: {message}", param=param) from exc
    if refused := unsupported(data):
        raise ChatError(400, refused.message, param=refused.param, code="unsupported_value")
    return chat


def _param(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("str", "list[TextPart]"):  # the union member pydantic tried
            break
        else:
            text += f".{part}" if text else str(part)
    return text


def conversation(chat: ChatRequest, max_chars: int) -> tuple[str, list[Message]]:
    """The question (the last message, the user's) and the user/assistant turns before it.

    System and developer messages are dropped: the answerer keeps its own grounding prompt.
    """
    turns = [m for m in chat.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1] is not chat.messages[-1] or turns[-1].role != "user":
        raise ChatError(400, "the last message must be the user's question", param="messages")
    try:
        question = checked_question(turns[-1].text(), max_chars)
    except QuestionError as exc:
        raise ChatError(400, f"the {exc} (the last user message)", param="messages") from exc
    history = [Message(role=m.role, content=m.text()) for m in turns[:-1]]
    return question, history


def source(hit: Hit, index: int) -> dict:
    """One cited passage: PrivateGPT's ``context.chunk`` with the lecture's fields on top."""
    meta = hit.chunk.metadata
    timed = {key: meta[key] for key in ("start", "end") if key in meta}
    return {
        "object": "context.chunk",
        "index": index,
        "score": hit.score,
        "lecture_id": meta.get("id"),
        "title": meta.get("title"),
        "link": meta.get("link"),
        **timed,
        "text": hit.chunk.text,
        "document": {"object": "ingest.document", "doc_id": meta.get("id"), "doc_metadata": meta},
    }


@router.get("/models", summary="The model of each corpus served")
async def list_models(service: ServiceDep) -> dict:
    return {"object": "list", "data": [_model(service)]}


@router.get("/models/{model_id}", summary="One model")
async def retrieve_model(model_id: str, service: ServiceDep) -> dict:
    _check_model(model_id, service)
    return _model(service)


def _model(service: Service) -> dict:
    model = openai_types().Model(
        id=service.settings.model_name, created=STARTED, object="model", owned_by=OWNER
    )
    return model.model_dump(exclude_unset=True)


def _check_model(model_id: str, service: Service) -> None:
    if model_id != service.settings.model_name:
        raise ChatError(
            404,
            f"the model {model_id!r} does not exist; this server answers as "
            f"{service.settings.model_name!r} (GET /v1/models)",
            param="model",
            code="model_not_found",
        )


@router.post("/chat/completions", openapi_extra=CHAT_BODY, summary="Chat completion (OpenAI)")
async def chat_completions(request: Request, service: ServiceDep) -> Response:
    settings = service.settings
    chat = await read_chat(request)
    _check_model(chat.model, service)
    question, history = conversation(chat, settings.max_question_chars)
    history = bound_history(history, settings.history_messages)
    # Admitted before anything asks the model: a busy answerer is a 503 + Retry-After while no
    # response has started. A follow-up's rewrite asks the model too, so then the slot is taken
    # first and held through the answer (the gguf model writes one thing at a time).
    try:
        ticket = service.admit_answer()
    except AnswerBusy as exc:
        raise ChatError(
            503,
            str(exc),
            "server_error",
            code="busy",
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
    try:
        if history:
            await ticket.__aenter__()
        retrieval = await retrieve(service, question, history, chat.k or settings.default_k)
    except BaseException:
        ticket.release()
        raise
    usage = Usage()  # the model's counts, or counted (answer/usage.py)
    tokens = ticket.hold(service.answerer.stream(retrieval, history, usage))
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": chat.model}
    sources = [source(hit, n) for n, hit in enumerate(retrieval.hits, start=1)]
    usage_of = partial(usage.settle, retrieval)
    if chat.stream:
        include_usage = chat.stream_options is not None and chat.stream_options.include_usage
        return event_stream(
            completion_events(tokens, head, sources, usage_of if include_usage else None),
            farewell=_event(error_body(SHUTTING_DOWN_MESSAGE, "server_error", code="shutdown")),
            sep="\n",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(ticket.release),
        )
    try:
        return JSONResponse(await completion(tokens, head, sources, usage_of))
    finally:
        ticket.release()


async def retrieve(service: Service, question: str, history: list[Message], k: int) -> Retrieval:
    """The passages for ``question`` read in its conversation."""
    max_chars = service.settings.max_question_chars
    query = await retrieval_query(service.answerer, question, history, max_chars)
    return await service.retrieve(query, k)


async def completion(
    tokens: AsyncIterator[str], head: dict, sources: list[dict], usage_of: Callable[[str], dict]
) -> dict:
    try:
        text = "".join([token async for token in tokens])
    except AnswerError as exc:
        log.warning("answer provider failed: %s", exc)
        raise ChatError(502, redact(str(exc)), "api_error", code="answerer_failed") from exc
    except Exception as exc:
        log.exception("answering failed")
        raise ChatError(500, INTERNAL_ERROR, "server_error") from exc
    types = openai_types()
    choice = types.Choice(
        index=0,
        message=types.ChatCompletionMessage(role="assistant", content=text),
        finish_reason="stop",
        logprobs=None,
        sources=sources,
    )
    body = types.ChatCompletion(
        object="chat.completion", choices=[choice], usage=usage_of(text), **head
    )
    return body.model_dump(mode="json", exclude_unset=True)


async def completion_events(
    tokens: AsyncIterator[str],
    head: dict,
    sources: list[dict],
    usage_of: Callable[[str], dict] | None = None,
) -> AsyncIterator[dict]:
    """``chat.completion.chunk`` events: the role and sources, the tokens, the stop, with
    ``usage_of`` a last chunk with the usage and no choices (as OpenAI sends it), [DONE]."""
    delta = openai_types().ChoiceDelta
    yield _chunk(head, delta(role="assistant", content=""), sources)
    text = []
    try:
        async for token in tokens:
            text.append(token)
            yield _chunk(head, delta(content=token))
    except AnswerError as exc:
        log.warning("answer provider failed mid-stream: %s", exc)
        yield _event(error_body(redact(str(exc)), "api_error", code="answerer_failed"))
        yield DONE
        return
    except Exception:
        log.exception("answering failed mid-stream")
        yield _event(error_body(INTERNAL_ERROR, "server_error"))
        yield DONE
        return
    yield _chunk(head, delta(), finish_reason="stop")
    if usage_of is not None:
        usage = openai_types().ChatCompletionChunk(
            object="chat.completion.chunk", choices=[], usage=usage_of("".join(text)), **head
        )
        yield _event(usage.model_dump(mode="json", exclude_unset=True))
    yield DONE


def _chunk(
    head: dict,
    delta: Any,
    sources: list[dict] | None = None,
    finish_reason: str | None = None,
) -> dict:
    extra = {"sources": sources} if sources is not None else {}
    types = openai_types()
    choice = types.ChunkChoice(
        index=0, delta=delta, finish_reason=finish_reason, logprobs=None, **extra
    )
    chunk = types.ChatCompletionChunk(object="chat.completion.chunk", choices=[choice], **head)
    return _event(chunk.model_dump(mode="json", exclude_unset=True))


def _event(payload: dict) -> dict:
    return {"data": json.dumps(payload, ensure_ascii=False, separators=(",", ":"))}
