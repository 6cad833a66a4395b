"""The one small interface every answer provider implements.

An answerer turns a question and its retrieved passages into a stream of text tokens. Passages
are numbered from 1 in retrieval order, the same order /karpathy-docs sends them in, so a
citation ``[n]`` in the answer points at the n-th passage.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from ..retrieval import Retrieval


class AnswerError(Exception):
    """The provider could not answer; the message tells a person what to do about it."""


class Answerer(ABC):
    #: Shown in /healthz and the web page: "extractive" or the model's name.
    name: str

    @abstractmethod
    def stream(self, retrieval: Retrieval) -> AsyncIterator[str]:
        """Yield the answer's tokens; raise AnswerError when the provider fails."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the provider holds (connections, models)."""
