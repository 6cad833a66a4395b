"""Reading a question from a request: form fields (``question`` or ``query``) or a JSON body.

Every way a body can be wrong ends here as a 4xx with a JSON ``detail`` a person can act on.
"""

from __future__ import annotations

import json
import re
from typing import Literal
from urllib.parse import parse_qsl

from fastapi import Request
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import RequestError
from ..retrieval import QuestionError, checked_question

MAX_BODY_BYTES = 64 * 1024
MAX_FORM_FIELDS = 1000  # Starlette's own default
WHOLE_NUMBER = re.compile(r"\s*[+-]?[0-9]{1,9}\s*")  # ASCII digits: int() takes "²" and "٣" too


class Ask(BaseModel):
    question: str
    k: int = Field(3, ge=1, le=20)
    format: Literal["json", "text"] = "json"


def _unprocessable(message: str) -> RequestError:
    return RequestError(message, status=422)


def _too_large(limit: int) -> RequestError:
    return RequestError(f"request body over {limit} bytes", status=413, code="request_too_large")


async def read_capped(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it is known to pass ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for part in request.stream():
        body.extend(part)
        if len(body) > limit:
            raise _too_large(limit)
    # Starlette parses forms from the cached body, so the capped copy is the one parsed.
    request._body = bytes(body)
    return request._body


async def read_ask(request: Request, default_k: int, max_chars: int) -> Ask:
    """The validated question of a /karpathy-* request."""
    body = await read_capped(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: dict[str, object]
    if content_type == "application/json":
        try:
            data = json_body(body)
        except ValueError as exc:
            raise _unprocessable(str(exc)) from exc
        if not isinstance(data, dict):
            raise _unprocessable('JSON body must be an object like {"question": "..."}')
        fields = data
    elif content_type == "application/x-www-form-urlencoded":
        fields = _urlencoded_fields(body)
    elif content_type == "multipart/form-data":
        try:
            form = await request.form()
        except StarletteHTTPException as exc:  # Starlette's own, e.g. "Invalid multipart data"
            detail = f"malformed form body: {exc.detail}"
            raise RequestError(detail, status=exc.status_code) from exc
        except Exception as exc:  # python-multipart's parse errors
            raise RequestError(f"malformed form body: {exc}") from exc
        fields = {}
        for name in ("question", "query", "k", "format"):
            value = form.get(name)
            if value is None:
                continue
            if isinstance(value, UploadFile):
                raise _unprocessable(f"form field {name!r} must be text, not a file")
            if _read_as_latin1(value, body):
                raise _unprocessable(f"form field {name!r} is not valid UTF-8")
            fields[name] = value
    elif not body:
        fields = {}
    else:
        raise RequestError(
            "send the question as form data (-F question=...) or JSON "
            '({"question": "..."}), not ' + (content_type or "an untyped body"),
            status=415,
        )

    question = fields.get("question", fields.get("query"))
    if question is None:
        raise _unprocessable("missing question: send the form field 'question' (or 'query')")
    if not isinstance(question, str):
        raise _unprocessable("question must be a string")
    if "\ufffd" in question or has_lone_surrogates(question):
        raise _unprocessable("question is not valid UTF-8")
    try:
        question = checked_question(question, max_chars)
    except QuestionError as exc:
        raise _unprocessable(str(exc)) from exc

    k = fields.get("k", default_k)
    if isinstance(k, str):
        if not WHOLE_NUMBER.fullmatch(k):
            raise _unprocessable("k must be a whole number from 1 to 20")
        k = int(k)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 20:
        raise _unprocessable("k must be a whole number from 1 to 20")
    fmt = fields.get("format", "json")
    if fmt not in ("json", "text"):
        raise _unprocessable("format must be 'json' or 'text'")
    return Ask(question=question, k=k, format=fmt)


def json_body(body: bytes) -> object:
    """``body`` parsed as JSON, or ValueError saying what is wrong with it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    except ValueError:  # Python's cap on the digits of an integer (4,300)
        raise ValueError("JSON body holds a number with too many digits") from None


def _urlencoded_fields(body: bytes) -> dict[str, object]:
    """The fields of a urlencoded body, read as UTF-8, raw or percent-escaped (Starlette reads raw
    bytes as Latin-1, so ``curl -d "question=café"`` would arrive as "cafÃ©")."""
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError as exc:
        raise _unprocessable("form body is not valid UTF-8") from exc
    except ValueError as exc:
        raise RequestError(f"form body has over {MAX_FORM_FIELDS} fields") from exc
    fields: dict[str, object] = {}
    for name, value in pairs:
        fields.setdefault(name, value)  # the first of a repeated field, as Starlette's form.get
    return fields


def _read_as_latin1(value: str, body: bytes) -> bool:
    """Whether Starlette decoded this multipart field as Latin-1, its fallback for a part that is
    not UTF-8: then the value's Latin-1 bytes are not UTF-8 and are the part's bytes in the body.
    (A part decoded as UTF-8 has other bytes, or characters Latin-1 lacks.)"""
    try:
        raw = value.encode("latin-1")
        raw.decode("utf-8")
    except UnicodeEncodeError:
        return False
    except UnicodeDecodeError:
        return raw in body
    return False


def has_lone_surrogates(text: str) -> bool:
    """JSON's ``"\\ud800"`` decodes to a lone surrogate, which no UTF-8 consumer can take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
