"""The prompt generative answerers send: the original's "stuff" prompt, with numbered passages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..retrieval import Retrieval

if TYPE_CHECKING:
    from .base import Message

SYSTEM = (
    "Use the following pieces of context to answer the question at the end. "
    "If you don't know the answer, just say that you don't know, don't try to make up an answer. "
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
