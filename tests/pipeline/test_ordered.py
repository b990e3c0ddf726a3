"""pipeline/: order, the window, availability-sized chunks, errors in place, early exit."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from pipeline import LoopThread, ordered_chunks


async def _double(chunk: list[int], start: int) -> list[tuple[int, int]]:
    # Later chunks finish first: order must come from the pipeline, not from timing.
    await asyncio.sleep(0.02 / (1 + start % 5))
    return [(start + i, 2 * x) for i, x in enumerate(chunk)]


async def test_results_in_order_within_the_window() -> None:
    active = peak = 0

    async def work(chunk: list[int], start: int) -> list[tuple[int, int]]:
        nonlocal active, peak
        active += len(chunk)
        peak = max(peak, active)
        try:
            return await _double(chunk, start)
        finally:
            active -= len(chunk)

    out = [r async for rs in ordered_chunks(range(200), work, chunk_size=7, window=30) for r in rs]
    assert out == [(i, 2 * i) for i in range(200)]
    assert peak <= 30


async def test_a_list_leaves_in_full_chunks_and_async_input_works() -> None:
    sizes: list[int] = []

    async def work(chunk: list[int], start: int) -> list[int]:
        sizes.append(len(chunk))
        return chunk

    got = [x async for xs in ordered_chunks(list(range(50)), work, chunk_size=8, window=64)
           for x in xs]  # fmt: skip
    assert got == list(range(50)) and sizes == [8] * 6 + [2]

    async def numbers() -> AsyncIterator[int]:
        for i in range(20):
            yield i

    got = [x async for xs in ordered_chunks(numbers(), work, chunk_size=3, window=6) for x in xs]
    assert got == list(range(20))


async def test_a_paused_input_does_not_hold_back_what_it_gave() -> None:
    gate = threading.Event()

    def paused() -> Iterator[int]:
        yield from range(5)
        gate.wait(10)  # a pipe with nothing more for now
        yield 5

    async def work(chunk: list[int], start: int) -> list[int]:
        return chunk

    stream = ordered_chunks(paused(), work, chunk_size=64, window=256)
    got: list[int] = []
    while len(got) < 5:
        got += await asyncio.wait_for(anext(stream), 5)
    assert got == [0, 1, 2, 3, 4]
    gate.set()
    got += [x async for xs in stream for x in xs]
    assert got == list(range(6))


async def test_errors_come_in_their_place() -> None:
    def failing() -> Iterator[int]:
        yield from range(10)
        raise OSError("disk gone")

    async def work(chunk: list[int], start: int) -> list[int]:
        if 25 in chunk:
            raise ValueError("bad chunk")
        return chunk

    seen: list[int] = []
    with pytest.raises(OSError, match="disk gone"):
        async for xs in ordered_chunks(failing(), work, chunk_size=4, window=8):
            seen += xs
    assert seen == list(range(10))
    seen = []
    with pytest.raises(ValueError, match="bad chunk"):
        async for xs in ordered_chunks(list(range(40)), work, chunk_size=5, window=10):
            seen += xs
    assert seen == list(range(25))


def test_loop_thread_iterates_and_stops_reading_when_left_early() -> None:
    pulled = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield i

    async def work(chunk: list[int], start: int) -> list[int]:
        return chunk

    loop = LoopThread("test-loop")
    try:
        got: list[int] = []
        for xs in loop.iterate(ordered_chunks(endless(), work, chunk_size=10, window=20)):
            got += xs
            if len(got) >= 30:
                break
        time.sleep(0.5)  # the reader notices it is no longer wanted
        stopped_at = pulled
        time.sleep(0.5)
        assert pulled == stopped_at < 100
        assert got[:30] == list(range(30))
        assert loop.run(asyncio.sleep(0, result=7)) == 7
    finally:
        loop.close()
