"""LoopThread: an event loop on a daemon thread, so blocking code can drive async code."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for it; interrupted (Ctrl-C), it is cancelled."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        """`items`' values, each awaited on the loop. Leaving early (break, an error, Ctrl-C)
        cancels the step in progress and closes `items`, so its clean-up runs."""
        steps: list[asyncio.Task[Any]] = []

        async def step() -> T:
            task = asyncio.current_task()
            assert task is not None
            steps[:] = [task]
            return await anext(items)

        async def close() -> None:
            for task in steps:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()

        try:
            while True:
                try:
                    value = self.run(step())
                except StopAsyncIteration:
                    return
                yield value
        finally:
            if not self.loop.is_closed():
                asyncio.run_coroutine_threadsafe(close(), self.loop).result()

    def close(self) -> None:
        """Cancel what still runs, close open async generators (their clean-up runs), then
        stop the loop and its thread: asyncio.run's ending, for a loop on a thread."""
        if self.loop.is_closed():
            return
        with contextlib.suppress(BaseException):
            asyncio.run_coroutine_threadsafe(_wind_down(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _wind_down() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()
