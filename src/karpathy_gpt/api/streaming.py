"""Every SSE response goes out through ``event_stream``: streams that end cleanly at shutdown.

On SIGTERM uvicorn stops accepting connections and waits for the open ones. sse-starlette notices
the shutdown (within half a second) and sets the response's ``shutdown_event``; the stream then
stops waiting on its producer (a model that may take a minute), sends ``farewell`` (an
``error`` event saying to ask again) and ends, well inside the grace period after which
sse-starlette would cut it off without a word.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent

PING_SECONDS = 15
SHUTDOWN_GRACE_SECONDS = 3.0
SHUTTING_DOWN_MESSAGE = "the server is shutting down; ask again in a moment"
SHUTTING_DOWN = ServerSentEvent(event="error", data=json.dumps({"message": SHUTTING_DOWN_MESSAGE}))


def event_stream(
    events: AsyncIterator[ServerSentEvent | dict],
    farewell: ServerSentEvent | dict = SHUTTING_DOWN,
    **options: Any,
) -> EventSourceResponse:
    """The response for ``events``; ``options`` go to EventSourceResponse (``sep``, ``headers``,
    ``background``: e.g. the release of an answer's admission ticket)."""
    shutdown = anyio.Event()
    return EventSourceResponse(
        _until_shutdown(events, shutdown, farewell),
        ping=PING_SECONDS,
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
        **options,
    )


async def _until_shutdown(
    events: AsyncIterator[ServerSentEvent | dict],
    shutdown: anyio.Event,
    farewell: ServerSentEvent | dict,
) -> AsyncIterator[ServerSentEvent | dict]:
    """``events`` as they come, until ``shutdown`` is set: then ``farewell`` and the end."""
    stopping = asyncio.ensure_future(shutdown.wait())
    step: asyncio.Future | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(events))
            await asyncio.wait({step, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                yield farewell
                return
            try:
                event = step.result()
            except StopAsyncIteration:
                return
            step = None
            yield event
            if shutdown.is_set():
                yield farewell
                return
    finally:
        # Cancelled (client gone, shutdown) or done: stop the producer so its work is freed.
        stopping.cancel()
        if step is not None and not step.done():
            step.cancel()
            await asyncio.wait({step})
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
