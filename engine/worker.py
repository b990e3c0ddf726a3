"""The worker: a dedicated thread that owns the model and runs one batch after another.

Batches arrive through a thread-safe inbox; results go back to the event loop with
`call_soon_threadsafe`, so futures are only ever touched on the loop. With an asynchronous
runner (CUDA) the worker launches batch N+1 before it waits for batch N, so the device never
idles while the host collates.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from engine.entry import Entry
from engine.runner import ModelInfo, ModelRunner

logger = logging.getLogger("classifyd.worker")

Outcome = list[list[float]] | BaseException
DoneCallback = Callable[[list[Entry], Outcome], None]

_STOP = object()


class Worker:
    def __init__(
        self,
        runner_factory: Callable[[], ModelRunner],
        loop: asyncio.AbstractEventLoop,
        on_done: DoneCallback,
    ) -> None:
        self._runner_factory = runner_factory
        self._loop = loop
        self._on_done = on_done
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._loaded: Future[ModelInfo] = Future()
        self._thread = threading.Thread(target=self._run, name="classifyd-worker", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> Future[ModelInfo]:
        """Start the thread; the future resolves once the model is loaded and warmed up."""
        self._thread.start()
        return self._loaded

    def submit(self, batch: list[Entry]) -> None:
        self._inbox.put(batch)

    def stop(self, timeout: float | None = None) -> None:
        """Let the batches already submitted finish, then end the thread."""
        if self._thread.is_alive():
            self._inbox.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            runner = self._runner_factory()
            info = runner.load()
        except BaseException as exc:
            self._loaded.set_exception(exc)
            return
        self._loaded.set_result(info)
        try:
            self._serve(runner)
        finally:
            runner.close()

    def _serve(self, runner: ModelRunner) -> None:
        # (batch, handle) launched on the device and not yet collected.
        pending: tuple[list[Entry], Any] | None = None
        while True:
            # Block for work only when nothing is in flight; otherwise just peek.
            try:
                item = self._inbox.get(block=pending is None)
            except queue.Empty:
                item = None
            if item is _STOP:
                if pending is not None:
                    self._collect(runner, *pending)
                return
            launched: tuple[list[Entry], Any] | None = None
            if item is not None:
                batch: list[Entry] = item
                try:
                    launched = (batch, runner.launch([e.ids for e in batch], _type_ids(batch)))
                except Exception as exc:
                    logger.exception("forward failed on a batch of %d", len(batch))
                    self._hand_back(batch, exc)
            if pending is not None:
                self._collect(runner, *pending)
                pending = None
            if launched is not None:
                if runner.is_async:
                    pending = launched
                else:
                    self._collect(runner, *launched)

    def _collect(self, runner: ModelRunner, batch: list[Entry], handle: Any) -> None:
        try:
            outcome: Outcome = runner.finish(handle)
        except Exception as exc:
            logger.exception("forward failed on a batch of %d", len(batch))
            outcome = exc
        self._hand_back(batch, outcome)

    def _hand_back(self, batch: list[Entry], outcome: Outcome) -> None:
        try:
            self._loop.call_soon_threadsafe(self._on_done, batch, outcome)
        except RuntimeError:
            # The loop is closed: nobody is left to answer.
            logger.warning("event loop closed; dropping the result of a batch of %d", len(batch))


def _type_ids(batch: list[Entry]) -> list[list[int]] | None:
    """Segment ids for the batch: pairs carry theirs; single texts beside them get zeros,
    which is what the model assumes when it is given none."""
    if all(e.type_ids is None for e in batch):
        return None
    return [e.type_ids if e.type_ids is not None else [0] * e.length for e in batch]
