"""Admission: how many answers are written at once, how many may wait, and "busy" beyond that.

One mechanism for every endpoint that streams an answer (/karpathy-stream, the OpenAI-compatible
chat endpoint) and every limit (the in-process GGUF model writes one answer at a time; a
per-process cap on answer streams can use the same class). An ``Admission`` has ``slots``
(answers written at once) and a ``queue`` (requests allowed to wait for a slot). The endpoint
asks for a place *before* its response starts, so a full queue can still become a plain 503::

    ticket = service.admit_answer()       # raises AnswerBusy -> 503 + Retry-After (api/app.py)
    try:
        retrieval = await service.retrieve(question, k)
    except BaseException:
        ticket.release()
        raise
    return EventSourceResponse(
        events(ticket.hold(answerer.stream(retrieval))),
        background=BackgroundTask(ticket.release),
    )

``ticket.hold`` waits for a slot, passes the tokens through, and gives the slot back when the
stream ends, fails or the client goes away (``async with ticket`` does the same around other
work). ``release`` is idempotent: the background task frees the place of a ticket whose stream
never started (a client that left before the first byte). ``AnswerBusy.retry_after`` is an
estimate from how long recent answers held their slot.

Everything here runs on the event loop: no locks beyond the asyncio semaphore.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TypeVar

from .errors import AnswerBusy

T = TypeVar("T")

#: Before any answer has been timed, a guess of how long one holds its slot (s).
FIRST_GUESS = 10.0


class Admission:
    def __init__(
        self, slots: int | None, queue: int = 0, what: str = "the model", setting: str = ""
    ):
        """``slots=None`` admits everyone; ``setting`` names the knob that sizes the queue."""
        self.slots = slots
        self.queue = queue
        self.what = what
        self.setting = setting
        self._free = asyncio.Semaphore(slots) if slots else None
        self._admitted = 0
        self._holding = 0
        self._mean_hold = FIRST_GUESS

    @property
    def running(self) -> int:
        return self._holding

    @property
    def waiting(self) -> int:
        return self._admitted - self._holding

    def admit(self) -> Ticket:
        """A place in the line, or AnswerBusy when every slot is taken and the queue is full."""
        if self.slots is not None and self._admitted >= self.slots + self.queue:
            retry = self.retry_after()
            limit = f" ({self.setting}={self.queue})" if self.setting else ""
            raise AnswerBusy(
                f"{self.what} is busy: {self.running} answer(s) being written and "
                f"{self.waiting} waiting, as many as allowed{limit}; try again in about "
                f"{retry} s",
                retry_after=retry,
            )
        self._admitted += 1
        return Ticket(self)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the line ahead, at the recent pace."""
        if not self.slots:
            return 1
        ahead = self._admitted - self.slots + 1
        return min(300, max(1, math.ceil(self._mean_hold * ahead / self.slots)))

    def _held(self, seconds: float) -> None:
        self._mean_hold = 0.7 * self._mean_hold + 0.3 * seconds


class Ticket:
    """One admitted request: waits for a slot on entry, gives slot and place back on exit."""

    def __init__(self, admission: Admission):
        self._admission = admission
        self._since: float | None = None
        self._released = False

    async def __aenter__(self) -> Ticket:
        admission = self._admission
        if admission._free is not None and self._since is None and not self._released:
            await admission._free.acquire()
            admission._holding += 1
            self._since = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Give back the slot (if held) and the place in line; a second call does nothing."""
        if self._released:
            return
        self._released = True
        admission = self._admission
        if admission.slots is None:
            return
        if self._since is not None:
            admission._held(time.monotonic() - self._since)
            admission._holding -= 1
            admission._free.release()
        admission._admitted -= 1

    async def hold(self, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """``items`` once a slot is free; the slot is held until they end or are abandoned."""
        try:
            async with self, aclosing(items):
                async for item in items:
                    yield item
        finally:
            self.release()


#: The admission of providers without a limit of their own.
UNLIMITED = Admission(slots=None)
