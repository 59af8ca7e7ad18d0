"""node.fednode.read_ahead: the requester reads a bundle's units ahead of verifying them,
a bounded number, in order, with the source's error in its place, and stops the source
when the consumer leaves early."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import pytest

from node.fednode import read_ahead


class Source:
    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.produced = 0
        self.closed = False

    async def items(self) -> AsyncGenerator[int]:
        try:
            for i in range(self.count):
                if i == self.fail_at:
                    raise ConnectionError("the peer went away")
                self.produced += 1
                yield i
                await asyncio.sleep(0)
        finally:
            self.closed = True


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def test_items_arrive_in_order_and_the_source_runs_ahead_by_at_most_depth() -> None:
    source = Source(20)

    async def run() -> list[int]:
        got: list[int] = []
        async with contextlib.aclosing(read_ahead(source.items(), 3)) as ahead:
            async for item in ahead:
                if item == 0:
                    await _settle()  # the consumer is busy; the source goes on
                    # one handed over, three queued, one held at the full queue
                    assert source.produced == 5
                got.append(item)
        return got

    assert asyncio.run(run()) == list(range(20))
    assert source.closed


def test_the_source_error_is_raised_after_the_items_before_it() -> None:
    source = Source(10, fail_at=4)

    async def run(got: list[int]) -> None:
        async with contextlib.aclosing(read_ahead(source.items(), 8)) as ahead:
            async for item in ahead:
                got.append(item)

    got: list[int] = []
    with pytest.raises(ConnectionError, match="the peer went away"):
        asyncio.run(run(got))
    assert got == [0, 1, 2, 3]


def test_leaving_early_stops_and_closes_the_source() -> None:
    source = Source(1000)

    async def run() -> None:
        async with contextlib.aclosing(read_ahead(source.items(), 4)) as ahead:
            async for item in ahead:
                if item == 2:
                    break
        assert source.closed  # at once, not when the generator is collected
        produced = source.produced
        await _settle()
        assert source.produced == produced

    asyncio.run(run())
    assert source.produced < 10
