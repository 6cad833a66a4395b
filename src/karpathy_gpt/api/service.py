"""What a running server holds: settings, the retriever over the index, and the answerer."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..answer import Answerer, Ticket, make_answerer
from ..config import Settings
from ..corpus import CorpusError
from ..embedding import Embedder
from ..indexing import open_index
from ..retrieval import Retrieval, Retriever

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    retriever: Retriever
    answerer: Answerer
    chunks: int

    @classmethod
    def start(cls, settings: Settings) -> Service:
        started = time.perf_counter()
        embedder = Embedder(threads=1)
        try:
            store = open_index(settings, embedder)
        except CorpusError:
            if not settings.database_url:
                raise
            # An API replica needs no corpus when the index lives in the database.
            from ..pg_indexing import open_published

            store = open_published(settings)
        service = cls(
            settings=settings,
            retriever=Retriever(store, embedder),
            answerer=make_answerer(settings),
            chunks=len(store),
        )
        log.info(
            "ready in %.2fs: %d chunks, answerer %s",
            time.perf_counter() - started,
            service.chunks,
            service.answerer.name,
        )
        return service

    def admit_answer(self) -> Ticket:
        """A place for one answer stream; raises AnswerBusy (-> 503) when there is none.

        Every endpoint that streams an answer calls this before its response starts (see
        answer/admission.py). A per-process cap for all providers belongs here too.
        """
        return self.answerer.admit()

    async def retrieve(self, question: str, k: int) -> Retrieval:
        """Search off the event loop: every endpoint retrieves through here."""
        retrieval = await run_in_threadpool(self.retriever.search, question, k)
        if log.isEnabledFor(logging.DEBUG):  # questions and passages: only at debug level
            log.debug(
                "question %r (k=%d) -> %s",
                question,
                k,
                [(h.chunk.metadata.get("source"), h.chunk.text[:80]) for h in retrieval.hits],
            )
        return retrieval


def get_service(request: Request) -> Service:
    return request.app.state.service
