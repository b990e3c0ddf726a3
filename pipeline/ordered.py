"""ordered_chunks: chunks of a stream go to an async `work` function, several at once, and
their results come back in input order, with a bounded number of items held at any time.

    async for results in ordered_chunks(texts, work, chunk_size=64, window=1024):
        ...  # work(chunk, start) → one result per item, for one chunk, in order

A chunk leaves as soon as the window has room, with as many items as are ready (up to
chunk_size), so a pipe that pauses never holds back what it already gave; while the window
is full, ready items pile up and the next chunk leaves full. A plain (blocking) iterable is
read on a helper thread: reading a file or a pipe must never stall the event loop the work
runs on, nor the results already done. An exception from the input or from `work` comes out
in its place in the order, after every result before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Sequence,
)
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Marker:
    pass


_END = _Marker()
_EMPTY = _Marker()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Window:
    """Items handed to `work` and not yet given back to the caller: at most `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = asyncio.Condition()

    async def acquire(self, count: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + count <= self.limit)
            self.used += count

    async def release(self, count: int) -> None:
        async with self._changed:
            self.used -= count
            self._changed.notify_all()


class _Feed(Generic[T]):
    """The input's items on the loop, at most `read_ahead` of them read and not yet taken."""

    def __init__(self, items: Iterable[T] | AsyncIterable[T], read_ahead: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._stopped = threading.Event()
        self._task: asyncio.Task[None] | None = None
        # A list is all there already: taken straight from it, every chunk leaves full.
        self._sequence: Sequence[T] | None = None
        self._next = 0
        if isinstance(items, Sequence):
            self._sequence = items
        elif isinstance(items, AsyncIterable):
            self._async_room = asyncio.Semaphore(read_ahead)
            self._task = asyncio.create_task(self._read_async(items))
        else:
            self._room = threading.Semaphore(read_ahead)
            threading.Thread(
                target=self._read, args=(items,), name="classifyd-feed", daemon=True
            ).start()

    def _read(self, items: Iterable[T]) -> None:
        try:
            for item in items:
                # Wait for room, waking now and then to notice that nobody listens any more.
                while not self._room.acquire(timeout=0.2):
                    if self._stopped.is_set():
                        return
                if self._stopped.is_set():
                    return
                self._put(item)
        except BaseException as exc:  # the caller's iterable failed: hand it on, in order
            self._put(_Raised(exc))
        else:
            self._put(_END)

    def _put(self, item: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def _read_async(self, items: AsyncIterable[T]) -> None:
        try:
            async for item in items:
                await self._async_room.acquire()
                self._queue.put_nowait(item)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._queue.put_nowait(_Raised(exc))
        else:
            self._queue.put_nowait(_END)

    def _taken(self, item: object) -> object:
        if not isinstance(item, _Marker | _Raised):
            if self._task is None:
                self._room.release()
            else:
                self._async_room.release()
        return item

    def _from_sequence(self, sequence: Sequence[T]) -> object:
        if self._next >= len(sequence):
            return _END
        self._next += 1
        return sequence[self._next - 1]

    async def get(self) -> object:
        """The next item, or _END, or a _Raised."""
        if self._sequence is not None:
            return self._from_sequence(self._sequence)
        return self._taken(await self._queue.get())

    def get_nowait(self) -> object:
        """The next item if one is ready, else _EMPTY."""
        if self._sequence is not None:
            return self._from_sequence(self._sequence)
        try:
            return self._taken(self._queue.get_nowait())
        except asyncio.QueueEmpty:
            return _EMPTY

    def stop(self) -> None:
        self._stopped.set()
        if self._task is not None:
            self._task.cancel()


async def ordered_chunks(
    items: Iterable[T] | AsyncIterable[T],
    work: Callable[[list[T], int], Coroutine[Any, Any, list[R]]],
    *,
    chunk_size: int,
    window: int,
) -> AsyncIterator[list[R]]:
    """`work(chunk, start)` over chunks of `items` (`start`: the index of the chunk's first
    item in the whole input), with at most `window` items between being taken from the input
    and their results being given back; each chunk's results, in input order."""
    if chunk_size < 1 or window < 1:
        raise ValueError("chunk_size and window must be at least 1")
    chunk_size = min(chunk_size, window)
    feed = _Feed(items, read_ahead=chunk_size)
    room = _Window(window)
    ordered: asyncio.Queue[tuple[int, asyncio.Task[list[R]]] | _Raised | None] = asyncio.Queue()
    producer = asyncio.create_task(_produce(feed, room, ordered, work, chunk_size))
    try:
        while True:
            got = await ordered.get()
            if got is None:
                return
            if isinstance(got, _Raised):
                raise got.exc
            size, task = got
            results = await task
            # Released before the caller has them: its handling overlaps the next work.
            await room.release(size)
            yield results
    finally:
        # Done, failed, or the caller stopped early: nothing more is read or worked on.
        _discard(producer)
        feed.stop()
        while not ordered.empty():
            left = ordered.get_nowait()
            if isinstance(left, tuple):
                _discard(left[1])


def _discard(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and take whatever it ends with: an exception nobody takes would be
    logged with its traceback from the loop's thread."""
    task.cancel()
    task.add_done_callback(_taken)


def _taken(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _produce(
    feed: _Feed[T],
    room: _Window,
    ordered: asyncio.Queue[tuple[int, asyncio.Task[list[R]]] | _Raised | None],
    work: Callable[[list[T], int], Coroutine[Any, Any, list[R]]],
    chunk_size: int,
) -> None:
    start = 0
    try:
        while True:
            first = await feed.get()
            if first is _END or isinstance(first, _Raised):
                ordered.put_nowait(first if isinstance(first, _Raised) else None)
                return
            # Room for a whole chunk first: while waiting, more items get ready.
            await room.acquire(chunk_size)
            chunk: list[T] = [first]  # type: ignore[list-item]
            last: object = None
            while len(chunk) < chunk_size:
                item = feed.get_nowait()
                if item is _EMPTY:
                    break
                if item is _END or isinstance(item, _Raised):
                    last = item
                    break
                chunk.append(item)  # type: ignore[arg-type]
            await room.release(chunk_size - len(chunk))
            task = asyncio.create_task(work(chunk, start))
            # Its error reaches the caller through `await`; unawaited (the caller left), it is
            # still taken, so the loop never logs it.
            task.add_done_callback(_taken)
            ordered.put_nowait((len(chunk), task))
            start += len(chunk)
            if last is not None:
                ordered.put_nowait(last if isinstance(last, _Raised) else None)
                return
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        ordered.put_nowait(_Raised(exc))
