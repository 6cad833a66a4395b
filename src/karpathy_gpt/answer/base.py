"""The one small interface every answer provider implements.

An answerer turns a question and its retrieved passages into a stream of text tokens. Passages
are numbered from 1 in retrieval order, the same order /karpathy-docs sends them in, so a
citation ``[n]`` in the answer points at the n-th passage.

A conversation's earlier turns come along as ``history`` (oldest first, already bounded by the
caller); providers with a language model may use them, and may rewrite a follow-up into a
standalone question for retrieval (``rewrite``). Providers without one ignore both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import Literal, TypedDict

from ..retrieval import Retrieval


class Message(TypedDict):
    role: Literal["user", "assistant"]
    content: str


class AnswerError(Exception):
    """The provider could not answer; the message tells a person what to do about it."""


class Answerer(ABC):
    #: Shown in /healthz and the web page: "extractive" or the model's name.
    name: str

    @abstractmethod
    def stream(self, retrieval: Retrieval, history: Sequence[Message] = ()) -> AsyncIterator[str]:
        """Yield the answer's tokens; raise AnswerError when the provider fails."""

    async def rewrite(self, question: str, history: Sequence[Message]) -> str | None:
        """A standalone version of a follow-up ``question``, for retrieval.

        ``None`` means this provider has no model to write one; the caller then builds the
        retrieval query from the conversation itself.
        """
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the provider holds (connections, models)."""
