"""The prompt generative answerers send: the original's "stuff" prompt, with numbered passages;
and the rewrite of a follow-up into a standalone question, the same for every model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ..retrieval import Retrieval
from .errors import AnswerError

if TYPE_CHECKING:
    from .base import Message

log = logging.getLogger(__name__)

SYSTEM = (
    "Use the following pieces of lecture transcript to answer the question at the end. "
    "Answer only from them: if they do not answer it, say that the lectures do not cover it, "
    "and don't try to make up an answer. "
    "The pieces are numbered; cite the ones you use as [1], [2], and so on."
)


def context_block(retrieval: Retrieval) -> str:
    return "\n\n".join(
        f"[{n}] ({hit.chunk.metadata.get('title', '')})\n{hit.chunk.text}"
        for n, hit in enumerate(retrieval.hits, start=1)
    )


def chat_messages(retrieval: Retrieval, history: Sequence[Message] = ()) -> list[dict[str, str]]:
    """System prompt, the conversation so far, then the passages and the question."""
    question = f"Question: {retrieval.question}\nHelpful Answer:"
    return [
        {"role": "system", "content": SYSTEM},
        *({"role": m["role"], "content": m["content"]} for m in history),
        {"role": "user", "content": f"{context_block(retrieval)}\n\n{question}"},
    ]


REWRITE_SYSTEM = (
    "Rewrite the user's follow-up question as one standalone question that can be understood "
    "without the conversation. Keep its meaning and the names it refers to. Reply with the "
    "question only."
)
#: Each earlier turn is cut to its last this-many characters: the rewrite prompt stays short.
REWRITE_TURN_CHARS = 600
#: Room for one question; the rewrite is cut off there.
REWRITE_MAX_TOKENS = 80


def rewrite_messages(question: str, history: Sequence[Message]) -> list[dict[str, str]]:
    """A short prompt asking for ``question`` made standalone, given the conversation."""
    turns = "\n".join(
        f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content'][-REWRITE_TURN_CHARS:]}"
        for m in history
    )
    return [
        {"role": "system", "content": REWRITE_SYSTEM},
        {
            "role": "user",
            "content": f"Conversation:\n{turns}\n\nFollow-up question: {question}\n"
            "Standalone question:",
        },
    ]


def standalone_question(reply: str, max_chars: int = 500) -> str | None:
    """The question in a model's rewrite reply, or None if the reply holds none."""
    for line in reply.strip().splitlines():
        text = line.strip().strip('"').strip()
        for label in ("standalone question:", "question:"):
            if text.lower().startswith(label):
                text = text[len(label) :].strip().strip('"').strip()
        if text:
            return text[:max_chars]
    return None


async def rewrite_with(
    complete: Callable[[list[dict[str, str]]], Awaitable[str]],
    question: str,
    history: Sequence[Message],
    timeout: float,
) -> str | None:
    """A follow-up ``question`` made standalone by a model's ``complete`` (the reply's text, or
    AnswerError); None when the model fails or takes longer than ``timeout`` seconds."""
    if not history:
        return question
    try:
        async with asyncio.timeout(timeout):
            reply = await complete(rewrite_messages(question, history))
    except TimeoutError:
        log.warning("rewriting the follow-up took over %g s; using it as asked", timeout)
        return None
    except AnswerError as exc:
        log.warning("could not rewrite the follow-up: %s", exc)
        return None
    return standalone_question(reply)
