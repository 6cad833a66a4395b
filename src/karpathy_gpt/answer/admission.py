"""Admission: how many answers are written at once, how many may wait, and "busy" beyond that.

One mechanism for every endpoint that streams an answer (/karpathy-stream, the OpenAI-compatible
chat endpoint) and every limit: the server's cap on open answer streams (``KGPT_MAX_STREAMS``,
whatever the provider) and the provider's own (the in-process GGUF model writes one answer at a
time). An ``Admission`` has ``slots`` (answers written at once) and a ``queue`` (requests allowed
to wait for a slot); ``JointTicket`` holds a place in several at once, taken in order (the
server's cap first) and given back together. The endpoint asks for a place *before* its
response starts, so "full" can still become a plain 503::

    ticket = service.admit_answer()       # raises AnswerBusy -> 503 + Retry-After (api/errors.py)
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
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import TypeVar

from .errors import AnswerBusy

T = TypeVar("T")

#: Before any answer has been timed, a guess of how long one holds its slot (s).
FIRST_GUESS = 10.0


class Admission:
    def __init__(
        self,
        slots: int | None,
        queue: int = 0,
        what: str = "the model",
        setting: str = "",
        writes: bool = False,
    ):
        """``slots=None`` admits everyone; ``setting`` is the knob that sizes it, as it is set
        (``KGPT_GGUF_QUEUE=4``), for the busy message; ``writes``: its slots are answers being
        written (a model's), which the busy message counts apart from those waiting, even with
        no queue, rather than as streams open."""
        if slots is not None and slots < 1:
            raise ValueError(f"slots must be at least 1, or None for no limit (got {slots})")
        self.slots = slots
        self.queue = queue
        self.what = what
        self.setting = setting
        self.writes = writes or queue > 0
        self._free = asyncio.Semaphore(slots) if slots is not None else None
        self._admitted = 0
        self._holding = 0
        self._mean_hold = FIRST_GUESS

    @property
    def running(self) -> int:
        return self._holding

    @property
    def waiting(self) -> int:
        return self._admitted - self._holding

    @property
    def admitted(self) -> int:
        """Places taken: running and waiting."""
        return self._admitted

    def admit(self) -> Ticket:
        """A place in the line, or AnswerBusy when every slot is taken and the queue is full."""
        if self.slots is not None and self._admitted >= self.slots + self.queue:
            retry = self.retry_after()
            limit = f" ({self.setting})" if self.setting else ""
            if self.writes:
                held = f"{self.running} answer(s) being written and {self.waiting} waiting"
            else:
                held = f"{self.admitted} answer stream(s) open"
            raise AnswerBusy(
                f"{self.what} is busy: {held}, as many as allowed{limit}; try again in about "
                f"{retry} s",
                retry_after=retry,
            )
        self._admitted += 1
        return Ticket(self)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the line ahead, at the recent pace."""
        if self.slots is None:
            return 1
        ahead = self._admitted - self.slots + 1
        return min(300, max(1, math.ceil(self._mean_hold * ahead / self.slots)))

    def _held(self, seconds: float) -> None:
        self._mean_hold = 0.7 * self._mean_hold + 0.3 * seconds


class Place(ABC):
    """A place for one answer stream: ``async with`` (waits for a slot), ``release`` and
    ``hold``. Endpoints get one from ``Service.admit_answer`` (a JointTicket)."""

    @abstractmethod
    async def __aenter__(self) -> Place: ...

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    @abstractmethod
    def release(self) -> None:
        """Give the place back; a second call does nothing."""

    async def hold(self, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """``items`` once a slot is free; the slot is held until they end or are abandoned."""
        try:
            async with self, aclosing(items):
                async for item in items:
                    yield item
        finally:
            self.release()


class Ticket(Place):
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

    def release(self) -> None:
        """Give back the slot (if held) and the place in line; a second call does nothing."""
        if self._released:
            return
        self._released = True
        admission = self._admission
        if self._since is not None:  # a slot was taken (never, without a limit)
            admission._held(time.monotonic() - self._since)
            admission._holding -= 1
            admission._free.release()
        admission._admitted -= 1


class JointTicket(Place):
    """Places in several admissions, entered in order and released in reverse order."""

    def __init__(self, tickets: Sequence[Ticket]):
        self._tickets = tuple(tickets)

    async def __aenter__(self) -> JointTicket:
        for ticket in self._tickets:
            await ticket.__aenter__()
        return self

    def release(self) -> None:
        for ticket in reversed(self._tickets):
            ticket.release()


def admit_all(*admit: Callable[[], Ticket]) -> JointTicket:
    """A place from each of ``admit`` in turn; AnswerBusy from one gives back those taken."""
    taken: list[Ticket] = []
    try:
        for take in admit:
            taken.append(take())
    except BaseException:
        for ticket in reversed(taken):
            ticket.release()
        raise
    return JointTicket(taken)


#: The admission of providers without a limit of their own.
UNLIMITED = Admission(slots=None)
