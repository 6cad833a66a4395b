"""What a running server holds: settings, the retriever over the index, and the answerer.

Retrieval, the CPU work of a request, runs in worker threads, never on the event loop, at most
``search_threads`` at once: more would not finish sooner on the same cores, and each one
running holds ONNX Runtime's working memory, which its arena keeps (BENCHMARKS.md,
*Reliability*). The last ``KGPT_QUERY_CACHE_SIZE`` distinct (question, k) retrievals are kept,
so a repeated question costs no embedding or search.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
from fastapi import Request
from starlette.background import BackgroundTask
from threadpoolctl import threadpool_limits

from .. import coverage
from ..answer import (
    Admission,
    Answerer,
    JointTicket,
    Message,
    Place,
    Usage,
    admit_all,
    answering,
    make_answerer,
    refuses_offtopic,
)
from ..config import Settings
from ..conversation import retrieval_query
from ..index.backend import open_serving
from ..retrieval import Retrieval, Retriever

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    retriever: Retriever
    answerer: Answerer
    chunks: int
    refuse: bool  # refuse a question the lectures do not cover (refuses_offtopic)
    # Open answer streams, whatever the answerer (KGPT_MAX_STREAMS); made in __post_init__.
    streams: Admission = field(init=False)
    # A fixed index only: PostgreSQL may switch to a new version under a running server.
    cache_size: int = 0
    recent: OrderedDict[tuple[str, int], Retrieval] = field(default_factory=OrderedDict)
    # Made on the event loop by the first search (anyio's limiters belong to a running loop).
    _searching: anyio.CapacityLimiter | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        limit = self.settings.max_streams
        self.streams = Admission(
            slots=limit, what="this server", setting=f"KGPT_MAX_STREAMS={limit}"
        )

    @property
    def search_threads(self) -> int:
        settings = self.settings
        if settings.search_threads:
            return settings.search_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        pool = settings.database_pool_size if settings.database_url else 0
        return max(cores or 1, pool)

    @classmethod
    def start(cls, settings: Settings) -> Service:
        started = time.perf_counter()
        # A request's matrix products are small (the chunks by one vector): waking a second BLAS
        # thread on busy cores costs more than it saves, and the cores are the web server's
        # too. ONNX Runtime also uses one thread.
        threadpool_limits(limits=1, user_api="blas")
        store, embedder = open_serving(settings, threads=1)
        # Another corpus's model embeds the questions the refusal was fitted on now, not while
        # the first question waits.
        coverage.asked(embedder, len(store))
        service = cls(
            settings=settings,
            retriever=Retriever(store, embedder),
            answerer=make_answerer(settings),
            chunks=len(store),
            refuse=refuses_offtopic(settings),
            cache_size=settings.query_cache_size if store.fixed else 0,
        )
        log.info(
            "ready in %.2fs: %d chunks, answerer %s",
            time.perf_counter() - started,
            service.chunks,
            service.answerer.name,
        )
        return service

    async def answer(
        self, question: str, k: int, history: Sequence[Message] = (), *, counted: bool = False
    ) -> Answer:
        """Everything an answer stream needs before its response starts, for every endpoint.

        A place is taken first (AnswerBusy, a 503 + Retry-After, while nothing has streamed);
        a follow-up is then rewritten for retrieval while holding the answerer's slot (the
        rewrite asks the model too, and the GGUF model writes one thing at a time); then the
        passages are retrieved. The place is the caller's to give back: ``async with`` the
        answer, or ``answer.releasing()`` as the streaming response's background task.
        ``counted``: the answerer is handed a ``Usage`` to fill (/v1 reports it; the other
        endpoints do not, so they skip the count where no model makes one).
        """
        ticket = self.admit_answer()
        try:
            if history:
                await ticket.__aenter__()
            max_chars = self.settings.max_question_chars
            query = await retrieval_query(self.answerer, question, history, max_chars)
            retrieval = await self.retrieve(query, k)
        except BaseException:
            ticket.release()
            raise
        usage = Usage() if counted else None  # the model's counts, or counted (answer/usage.py)
        answerer = self.answering(retrieval)  # a model is not asked what is refused
        tokens = ticket.hold(answerer.stream(retrieval, history, usage))
        return Answer(retrieval, tokens, ticket, usage or Usage())

    def answering(self, retrieval: Retrieval) -> Answerer:
        """The served answerer, or the refusal of a question the lectures do not cover."""
        return answering(self.answerer, retrieval, self.refuse)

    def admit_answer(self) -> JointTicket:
        """A place for one answer stream; raises AnswerBusy (-> 503) when there is none.

        Every endpoint that streams an answer calls this before its response starts (see
        answer/admission.py). The place is one of the server's ``KGPT_MAX_STREAMS`` (a stream
        is counted from here until its response ends, waiting for the model included) and
        then one in the answerer's own line (the GGUF model's queue; others admit everyone).
        """
        return admit_all(self.streams.admit, self.answerer.admit)

    async def retrieve(self, question: str, k: int) -> Retrieval:
        """Search off the event loop: every endpoint retrieves through here."""
        key = (question, k)
        retrieval = self.recent.get(key)
        if retrieval is not None:
            self.recent.move_to_end(key)
        else:
            if self._searching is None:
                self._searching = anyio.CapacityLimiter(self.search_threads)
            retrieval = await anyio.to_thread.run_sync(
                self.retriever.search, question, k, limiter=self._searching
            )
            if self.cache_size:
                self.recent[key] = retrieval
                while len(self.recent) > self.cache_size:
                    self.recent.popitem(last=False)
        if log.isEnabledFor(logging.DEBUG):  # questions and passages: only at debug level
            log.debug(
                "question %r (k=%d) -> %s",
                question,
                k,
                [(h.chunk.metadata.get("source"), h.chunk.text[:80]) for h in retrieval.hits],
            )
        return retrieval


@dataclass
class Answer:
    """An admitted answer: its passages, its tokens (held in the answerer's slot as they are
    read), the place it holds until its response ends, and its token usage (if counted)."""

    retrieval: Retrieval
    tokens: AsyncIterator[str]
    place: Place
    usage: Usage = field(default_factory=Usage)

    def usage_of(self, text: str) -> dict[str, int]:
        """OpenAI's ``usage`` of the complete answer ``text``: the model's counts, or counted."""
        return self.usage.settle(self.retrieval, text)

    def releasing(self) -> BackgroundTask:
        """The place given back when a streaming response ends, or never starts."""
        return BackgroundTask(self.place.release)

    async def __aenter__(self) -> Answer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.place.release()


def get_service(request: Request) -> Service:
    return request.app.state.service
