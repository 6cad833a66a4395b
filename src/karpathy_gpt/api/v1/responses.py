"""What /v1 sends back: OpenAI's own response types (from the ``openai`` package), with the
cited passages as ``sources`` on the choice, as PrivateGPT sends them. A ``chat.completion``
carries ``usage``, and so does a stream's last chunk when asked with
``stream_options.include_usage`` (see answer/usage.py)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import cache
from types import SimpleNamespace
from typing import Any

from ...answer import AnswerError
from ...answer.errors import INTERNAL_ERROR
from ...errors import KgptError
from ...store import Hit
from ..errors import error_body, error_of

log = logging.getLogger(__name__)

OWNER = "karpathy-gpt"
STARTED = int(time.time())
DONE = {"data": "[DONE]"}


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


def model_card(name: str) -> dict:
    """The one model this server lists: the corpus, answered as ``name``."""
    model = openai_types().Model(id=name, created=STARTED, object="model", owned_by=OWNER)
    return model.model_dump(exclude_unset=True)


async def completion(
    tokens: AsyncIterator[str], head: dict, sources: list[dict], usage_of: Callable[[str], dict]
) -> dict:
    try:
        text = "".join([token async for token in tokens])
    except AnswerError as exc:  # a 502 in OpenAI's shape (api/errors.py)
        log.warning("answer provider failed: %s", exc)
        raise
    except Exception as exc:
        log.exception("answering failed")
        raise KgptError(INTERNAL_ERROR) from exc
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
        yield event(error_of(exc))
        yield DONE
        return
    except Exception:
        log.exception("answering failed mid-stream")
        yield event(error_body(INTERNAL_ERROR, "server_error"))
        yield DONE
        return
    yield _chunk(head, delta(), finish_reason="stop")
    if usage_of is not None:
        usage = openai_types().ChatCompletionChunk(
            object="chat.completion.chunk", choices=[], usage=usage_of("".join(text)), **head
        )
        yield event(usage.model_dump(mode="json", exclude_unset=True))
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
    return event(chunk.model_dump(mode="json", exclude_unset=True))


def event(payload: dict) -> dict:
    return {"data": json.dumps(payload, ensure_ascii=False, separators=(",", ":"))}
