"""What api/streaming.py's shutdown race costs per SSE event, against iterating the bare producer.

In-process, no server: 20,000 events through the bare async generator (the peer) and through
``_until_shutdown``, three rounds. Usage:

    .venv/bin/python benchmarks/stream_overhead.py
"""

from __future__ import annotations

import asyncio
import time

import anyio
from sse_starlette import ServerSentEvent

from karpathy_gpt.api.streaming import SHUTTING_DOWN, _until_shutdown

EVENTS = 20_000


async def produce(n: int):
    for _ in range(n):
        yield ServerSentEvent(data=" token")


async def timed(stream) -> float:
    started = time.perf_counter()
    async for _ in stream:
        pass
    return (time.perf_counter() - started) / EVENTS * 1e6


async def main() -> None:
    for _ in range(3):
        bare = await timed(produce(EVENTS))
        raced = await timed(_until_shutdown(produce(EVENTS), anyio.Event(), SHUTTING_DOWN))
        print(f"bare {bare:.1f} us/event, with the shutdown race {raced:.1f} us/event")


if __name__ == "__main__":
    asyncio.run(main())
