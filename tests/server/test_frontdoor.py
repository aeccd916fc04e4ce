"""The front door's pieces in isolation: the fair gate and the body limits (their attacks are replayed against a
real server in tests/security/test_availability.py)."""

from __future__ import annotations

import asyncio

import pytest

from labserver import frontdoor
from labserver.frontdoor import BodyLimits, FairGate, SlowBody


def test_one_team_never_holds_more_than_its_share():
    async def scenario():
        gate = FairGate(slots=6, per_team=2)
        assert [await gate.acquire("mallory", 0.01) for _ in range(3)] == [True, True, False]
        assert await gate.acquire("red", 0.01) and await gate.acquire("blue", 0.01)
        assert dict(gate.held) == {"mallory": 2, "red": 1, "blue": 1}
        # mallory queues first, then red: when a slot of mallory's frees, mallory's waiter gets it;
        # red's gets a free one
        waiting_mallory = asyncio.create_task(gate.acquire("mallory", 5))
        waiting_red = asyncio.create_task(gate.acquire("red", 5))
        await asyncio.sleep(0.01)
        assert waiting_red.done() and waiting_red.result()  # red was under its share, and slots were free
        assert not waiting_mallory.done()
        gate.release("mallory")
        assert await waiting_mallory
        assert dict(gate.held) == {"mallory": 2, "red": 2, "blue": 1}

    asyncio.run(scenario())


def test_waiters_are_served_in_order_and_a_timed_out_wait_leaves_no_trace():
    async def scenario():
        gate = FairGate(slots=1, per_team=1)
        assert await gate.acquire("a", 0.01)
        assert not await gate.acquire("b", 0.05)  # gave up
        first, second = asyncio.create_task(gate.acquire("c", 5)), asyncio.create_task(gate.acquire("d", 5))
        await asyncio.sleep(0.01)
        gate.release("a")
        assert await first and not second.done()
        gate.release("c")
        assert await second
        gate.release("d")
        assert not gate.held and not gate._waiting

    asyncio.run(scenario())


def _receive(chunks, pause):
    """A client that sends `chunks` with `pause` seconds before each."""
    queue = list(chunks)

    async def receive():
        await asyncio.sleep(pause)
        chunk = queue.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    return receive


def test_a_steady_body_is_read_whole(monkeypatch):
    monkeypatch.setattr(frontdoor, "BODY_GRACE_S", 0.5)
    body = asyncio.run(BodyLimits(_receive([b"x" * 1000] * 5, 0.01)).read_all(10_000))
    assert body == b"x" * 5000


@pytest.mark.parametrize(
    "chunks, pause, grace, why",
    [
        ([b"x"] * 10, 0.2, 0.5, "too slowly"),  # a byte at a time: below the minimum pace once the grace is over
        ([b"x", b"y"], 1.0, 5.0, "stopped arriving"),  # a pause longer than the idle limit
    ],
)
def test_a_slow_body_is_cut_off(monkeypatch, chunks, pause, grace, why):
    monkeypatch.setattr(frontdoor, "BODY_GRACE_S", grace)
    monkeypatch.setattr(frontdoor, "BODY_IDLE_S", 0.6)
    monkeypatch.setattr(frontdoor, "BODY_MIN_BYTES_PER_S", 1000)
    with pytest.raises(SlowBody, match=why):
        asyncio.run(BodyLimits(_receive(chunks, pause)).read_all(10_000))


def test_a_body_larger_than_the_limit_is_refused():
    with pytest.raises(SlowBody, match="larger than 1,000 bytes"):
        asyncio.run(BodyLimits(_receive([b"x" * 600, b"x" * 600], 0)).read_all(1000))
