"""OpenAI's chat request as pydantic models: read and checked here, and described in OpenAPI
from the same models (sampling options are accepted and left to the answerer's settings; what
is done with each other option a client may send is in ``options``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import Request
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

from ...answer import Message
from ...config import Settings
from ...errors import RequestError
from ...retrieval import QuestionError, checked_question
from ..requests import has_lone_surrogates, json_body, read_capped
from .options import StreamOptions, unsupported

#: A whole conversation fits many times over; the question itself is capped by its own limit.
MAX_CHAT_BODY_BYTES = 512 * 1024
ROLES = ("system", "developer", "user", "assistant")


# What the OpenAPI description asks of a text: something besides blanks (a blank question is
# refused; a blank earlier message is only dropped).
SOME_TEXT = {"type": "string", "minLength": 1, "pattern": r"\S"}


def _some_content(schema: dict) -> None:
    """Content as described: text, or a list of text parts (not null, not empty)."""
    kinds = [kind for kind in schema["anyOf"] if kind.get("type") != "null"]
    for kind in kinds:
        kind.update(SOME_TEXT if kind.get("type") == "string" else {"minItems": 1})
    schema["anyOf"] = kinds
    schema.pop("default", None)


def _only_one(schema: dict) -> None:
    """``n`` as described: 1 (or absent)."""
    schema.clear()
    schema.update(type="integer", enum=[1])


class TextPart(BaseModel):
    type: StrictStr = Field(json_schema_extra={"enum": ["text"]})
    text: StrictStr = Field("", json_schema_extra=SOME_TEXT)


class ChatMessage(BaseModel):
    # Described with role and content required: a message without content asks nothing.
    model_config = ConfigDict(extra="allow", json_schema_extra={"required": ["role", "content"]})

    role: StrictStr = Field(json_schema_extra={"enum": list(ROLES)})
    content: StrictStr | list[TextPart] | None = Field(
        None, json_schema_extra=lambda schema: _some_content(schema)
    )

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

    model: StrictStr = Field(examples=["karpathy-gpt"])
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    n: StrictInt | None = Field(None, json_schema_extra=lambda schema: _only_one(schema))
    # Described with the default a request without k gets (api/app.py puts this server's in).
    k: StrictInt | None = Field(
        None,
        ge=1,
        le=20,
        description="passages (not OpenAI's)",
        json_schema_extra={"default": Settings.model_fields["default_k"].default},
    )

    @field_validator("n")
    @classmethod
    def one_choice(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise ValueError("only one choice per request is supported (n=1)")
        return n


def openapi_body() -> dict:
    """The chat endpoint's request body in OpenAPI, from ``ChatRequest`` (nested models inlined,
    since a schema's own ``$defs`` do not resolve inside the OpenAPI document)."""
    schema = ChatRequest.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema)}},
        },
        "responses": {"200": {"content": {"application/json": {}, "text/event-stream": {}}}},
    }


async def read_chat(request: Request) -> ChatRequest:
    body = await read_capped(request, MAX_CHAT_BODY_BYTES)
    try:
        data = json_body(body)
    except ValueError as exc:
        raise RequestError(f"the {exc}") from exc
    try:
        unpaired = has_lone_surrogates(json.dumps(data, ensure_ascii=False))
    except RecursionError as exc:  # loads takes some depths that dumps does not
        raise RequestError("the JSON body is nested too deeply") from exc
    if unpaired:  # "\ud800" is valid JSON, but no text: the tokenizer and UTF-8 refuse it
        raise RequestError("the body is not valid Unicode: it holds a lone surrogate (\\ud800)")
    if not isinstance(data, dict):
        raise RequestError('the body must be a JSON object: {"model": ..., "messages": [...]}')
    try:
        chat = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise RequestError(f"{param}: {message}", param=param) from exc
    if refused := unsupported(data):
        raise RequestError(refused.message, param=refused.param, code="unsupported_value")
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
        raise RequestError("the last message must be the user's question", param="messages")
    try:
        question = checked_question(turns[-1].text(), max_chars)
    except QuestionError as exc:
        raise RequestError(f"the {exc} (the last user message)", param="messages") from exc
    history = [Message(role=m.role, content=m.text()) for m in turns[:-1]]
    return question, history
