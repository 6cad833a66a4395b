"""What every answerer says of a question the retrieval judged the lectures do not cover.

Whether to refuse is decided once, by the settings (``registry.refuses_offtopic``: on by
default for the extractive answerer, an option for the model answerers), and applied here for
every caller (the API, ``karpathy-gpt ask``, ``karpathy-gpt eval``): a refused question is
answered by ``REFUSAL``, so it never costs a model call.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from starlette.concurrency import run_in_threadpool

from ..retrieval import Retrieval
from .base import Answerer, Message
from .usage import Usage

NOT_COVERED = (
    "The lectures do not cover this: none of their passages answers the question. If they do "
    "teach it, try asking with the words they use."
)

TOKEN = re.compile(r"\s*\S+")  # how a written answer streams: one word (and its space) a token


class Refusal(Answerer):
    name = "refusal"

    async def stream(
        self, retrieval: Retrieval, history: Sequence[Message] = (), usage: Usage | None = None
    ) -> AsyncIterator[str]:
        if usage is not None:  # counted like the extractive answer: word pieces, off the loop
            await run_in_threadpool(usage.settle, retrieval, NOT_COVERED)
        for token in TOKEN.findall(NOT_COVERED):
            yield token


REFUSAL = Refusal()


def answering(answerer: Answerer, retrieval: Retrieval, refuse: bool) -> Answerer:
    """The answerer that answers this retrieval: ``answerer``, or, when refusing is on
    (``refuse``) and the retrieval judged the lectures do not cover it, the refusal."""
    return REFUSAL if refuse and not retrieval.covered else answerer
