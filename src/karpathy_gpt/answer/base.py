"""The one small interface every answer provider implements.

An answerer turns a question and its retrieved passages into a stream of text tokens. Passages
are numbered from 1 in retrieval order, the same order /karpathy-docs sends them in, so a
citation ``[n]`` in the answer points at the n-th passage.

A conversation's earlier turns come along as ``history`` (oldest first, already bounded by the
caller); providers with a language model may use them, and may rewrite a follow-up into a
standalone question for retrieval (``rewrite``). Providers without one ignore both.

A provider whose model counts tokens reports the answer's counts into the ``usage`` record it
is handed, once the answer is complete (see ``usage``); the others leave it to be counted.

Before streaming, an endpoint asks for a place with ``admit()`` (see ``admission``): a provider
that can only write so many answers at once raises ``AnswerBusy`` there, which the app turns
into a 503 with ``Retry-After`` before any response has started.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import Literal, TypedDict

from ..retrieval import Retrieval
from .admission import UNLIMITED, Ticket
from .errors import AnswerBusy, AnswerError
from .usage import Usage

__all__ = ["Answerer", "AnswerBusy", "AnswerError", "Message", "Usage"]


class Message(TypedDict):
    role: Literal["user", "assistant"]
    content: str


class Answerer(ABC):
    #: Shown in /healthz and the web page: "extractive" or the model's name.
    name: str

    @abstractmethod
    def stream(
        self, retrieval: Retrieval, history: Sequence[Message] = (), usage: Usage | None = None
    ) -> AsyncIterator[str]:
        """Yield the answer's tokens; raise AnswerError when the provider fails. A provider
        whose model counts tokens reports them into ``usage`` when the answer is complete."""

    def admit(self) -> Ticket:
        """A place for one answer stream, held from ``async with ticket`` (or ``ticket.hold``)
        until the stream ends; raises AnswerBusy when the wait queue is full."""
        return UNLIMITED.admit()

    async def rewrite(self, question: str, history: Sequence[Message]) -> str | None:
        """A standalone version of a follow-up ``question``, for retrieval.

        ``None`` means this provider has no model to write one; the caller then builds the
        retrieval query from the conversation itself.
        """
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the provider holds (connections, models)."""
