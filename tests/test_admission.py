"""Admission's bookkeeping: slots, the wait queue, AnswerBusy beyond it, and every way a ticket
ends (finished, abandoned while waiting, abandoned mid-stream, never started) giving its place
back exactly once."""

from __future__ import annotations

import asyncio

import pytest

from karpathy_gpt.answer import Admission, AnswerBusy, AnswerError, admit_all
from karpathy_gpt.answer.admission import UNLIMITED


def test_one_slot_one_waiting_then_busy_with_a_retry_estimate():
    async def run() -> None:
        admission = Admission(slots=1, queue=1, what="tiny.gguf", setting="KGPT_GGUF_QUEUE=1")
        first, second = admission.admit(), admission.admit()
        with pytest.raises(AnswerBusy) as busy:
            admission.admit()
        assert isinstance(busy.value, AnswerError)
        assert busy.value.retry_after >= 1
        assert "tiny.gguf is busy" in str(busy.value) and "KGPT_GGUF_QUEUE=1" in str(busy.value)

        await first.__aenter__()
        assert (admission.running, admission.waiting) == (1, 1)
        entered = asyncio.Event()

        async def wait_for_slot() -> None:
            async with second:
                entered.set()

        waiter = asyncio.create_task(wait_for_slot())
        await asyncio.sleep(0.05)
        assert not entered.is_set()  # the slot is taken
        first.release()
        first.release()  # a second release changes nothing
        await asyncio.wait_for(waiter, 1)
        assert entered.is_set() and (admission.running, admission.waiting) == (0, 0)
        admission.admit(), admission.admit()  # both places are free again

    asyncio.run(run())


def test_a_stream_abandoned_while_waiting_or_midway_gives_its_place_back():
    async def tokens():
        for token in ("a", "b", "c"):
            await asyncio.sleep(0.01)
            yield token

    async def run() -> None:
        admission = Admission(slots=1, queue=1)
        holder = admission.admit()
        await holder.__aenter__()

        waiting = admission.admit()
        task = asyncio.create_task(anext(waiting.hold(tokens())))
        await asyncio.sleep(0.05)
        task.cancel()  # the client left while waiting for the model
        with pytest.raises(asyncio.CancelledError):
            await task
        holder.release()
        assert (admission.running, admission.waiting) == (0, 0)

        midway = admission.admit()
        stream = midway.hold(tokens())
        assert await anext(stream) == "a" and admission.running == 1
        await stream.aclose()  # the client left mid-answer
        assert (admission.running, admission.waiting) == (0, 0)

        never_started = admission.admit()
        never_started.release()  # what the response's background task does
        assert admission.waiting == 0
        finished = admission.admit()
        assert [t async for t in finished.hold(tokens())] == ["a", "b", "c"]
        finished.release()
        assert (admission.running, admission.waiting) == (0, 0)

    asyncio.run(run())


def test_retry_after_follows_how_long_answers_held_their_slot():
    async def run() -> int:
        admission = Admission(slots=1, queue=0)
        for _ in range(8):
            async with admission.admit():
                await asyncio.sleep(0.01)
        admission.admit()
        with pytest.raises(AnswerBusy) as busy:
            admission.admit()
        return busy.value.retry_after

    assert asyncio.run(run()) == 1  # ~10 ms answers: retry in a second, not the first guess


def test_a_model_with_no_queue_is_busy_writing_not_busy_with_streams():
    async def run() -> None:
        model = Admission(1, queue=0, what="tiny.gguf", setting="KGPT_GGUF_QUEUE=0", writes=True)
        async with model.admit():
            with pytest.raises(AnswerBusy) as busy:
                model.admit()
        assert "tiny.gguf is busy: 1 answer(s) being written and 0 waiting" in str(busy.value)
        assert "KGPT_GGUF_QUEUE=0" in str(busy.value)

    asyncio.run(run())


def test_unlimited_admits_everyone():
    before = UNLIMITED.admitted
    tickets = [UNLIMITED.admit() for _ in range(1000)]
    assert UNLIMITED.admitted == before + 1000
    for ticket in tickets:
        ticket.release()
    assert UNLIMITED.admitted == before


def test_a_joint_ticket_takes_the_servers_place_first_and_gives_all_back():
    """The server's stream cap composed with a model's line, as Service.admit_answer does."""

    async def run() -> None:
        streams = Admission(slots=2, what="this server", setting="KGPT_MAX_STREAMS=2")
        model = Admission(slots=1, queue=4, what="tiny.gguf", setting="KGPT_GGUF_QUEUE=4")
        first = admit_all(streams.admit, model.admit)
        second = admit_all(streams.admit, model.admit)
        with pytest.raises(AnswerBusy) as busy:
            admit_all(streams.admit, model.admit)
        assert "this server is busy: 2 answer stream(s) open" in str(busy.value)
        assert "KGPT_MAX_STREAMS=2" in str(busy.value)
        assert (streams.admitted, model.admitted) == (2, 2)

        await first.__aenter__()
        await first.__aenter__()  # entered twice (a rewrite, then the answer): one slot
        assert (model.running, model.waiting) == (1, 1)
        waiter = asyncio.create_task(second.__aenter__())
        await asyncio.sleep(0.05)
        assert not waiter.done()  # the model is taken; the server's place is held meanwhile
        first.release()
        await asyncio.wait_for(waiter, 1)
        assert model.running == 1 and streams.admitted == 1
        second.release()
        second.release()
        assert (streams.admitted, model.admitted, model.running) == (0, 0, 0)

        # The model's line full: the server's place taken for it is given back at once.
        full = Admission(slots=1, queue=0, what="tiny.gguf", setting="KGPT_GGUF_QUEUE=0")
        held = admit_all(streams.admit, full.admit)
        with pytest.raises(AnswerBusy, match="tiny.gguf is busy"):
            admit_all(streams.admit, full.admit)
        assert streams.admitted == 1
        held.release()
        assert (streams.admitted, full.admitted) == (0, 0)

    asyncio.run(run())
