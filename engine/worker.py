"""The worker: a dedicated thread that owns the model and runs one batch after another.

Batches arrive through a thread-safe inbox; results go back to the event loop with
`call_soon_threadsafe`, so futures are only ever touched on the loop. With an asynchronous
runner (CUDA) the worker launches batch N+1 before it waits for batch N, so the device never
idles while the host collates.

On CPU several workers may share one loaded runner (`Worker.sharing`): each thread runs its
own batch on its own torch threads, with one copy of the weights (see engine/placement.py
for when batches run side by side).
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
from engine.memory import release_free_memory
from engine.model.runner import ModelInfo, ModelRunner

logger = logging.getLogger("classifyd.worker")

# A batch's logits rows in its order, or the exception that failed it.
BatchOutput = list[list[float]] | BaseException
DoneCallback = Callable[[list[Entry], BatchOutput], None]
# Called with each batch's token ids just before its forward; raising fails that batch as the
# model would. Tests use it to inject failures and out-of-memory errors.
FaultHook = Callable[[list[list[int]]], None]

_STOP = object()


class Worker:
    def __init__(
        self,
        runner_factory: Callable[[], ModelRunner],
        loop: asyncio.AbstractEventLoop,
        on_done: DoneCallback,
        on_dead: Callable[[BaseException], None],
        fault_hook: FaultHook | None = None,
        *,
        name: str = "classifyd-worker",
        shared: ModelInfo | None = None,
    ) -> None:
        self._runner_factory = runner_factory
        # Set for a worker that runs a runner another worker loaded (and will close).
        self._shared = shared
        self.runner: ModelRunner | None = None
        self._loop = loop
        self._on_done = on_done
        self._on_dead = on_dead
        self._fault_hook = fault_hook
        self._stopping = False
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._loaded: Future[ModelInfo] = Future()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        # torch threads this worker's forwards use now; None until the scheduler says.
        self._threads: int | None = None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> Future[ModelInfo]:
        """Start the thread; the future resolves once the model is loaded and warmed up."""
        self._thread.start()
        return self._loaded

    def sharing(self, name: str) -> Worker:
        """Another worker on this worker's loaded runner (call once this one has started)."""
        assert self.runner is not None and self._loaded.done()
        runner = self.runner
        return Worker(
            lambda: runner,
            self._loop,
            self._on_done,
            self._on_dead,
            self._fault_hook,
            name=name,
            shared=self._loaded.result(),
        )

    def submit(self, batch: list[Entry], threads: int | None = None) -> None:
        """Queue a batch; `threads`: torch threads for its forward (None: leave as is)."""
        self._inbox.put((batch, threads))

    def stop(self, timeout: float | None = None) -> None:
        """Let the batches already submitted finish, then end the thread."""
        self._stopping = True
        if self._thread.is_alive():
            self._inbox.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            runner = self._runner_factory()
            info = runner.load() if self._shared is None else self._shared
        except BaseException as exc:
            self._loaded.set_exception(exc)
            return
        self.runner = runner
        self._loaded.set_result(info)
        try:
            self._serve(runner)
        except BaseException as exc:
            # Not a failing batch (those are caught per batch): the thread itself is going.
            # Tell the engine, so waiting requests fail now and health turns 503.
            logger.critical("the model worker died: %r", exc)
            if not self._stopping:
                self._call_loop(self._on_dead, exc)
        finally:
            if self._shared is None:
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
                batch: list[Entry] = item[0]
                threads: int | None = item[1]
                if threads is not None and threads != self._threads:
                    runner.set_threads(threads)
                    self._threads = threads
                try:
                    launched = (batch, self._launch(runner, batch))
                except Exception as exc:
                    if pending is not None:
                        # Let the batch in flight finish first: it holds device memory.
                        self._collect(runner, *pending)
                        pending = None
                    self._hand_back(batch, self._recover(runner, batch, exc))
            if pending is not None:
                self._collect(runner, *pending)
                pending = None
            if launched is not None:
                if runner.is_async:
                    pending = launched
                else:
                    self._collect(runner, *launched)

    def _launch(self, runner: ModelRunner, batch: list[Entry]) -> Any:
        ids = [e.ids for e in batch]
        if self._fault_hook is not None:
            self._fault_hook(ids)
        adapters = [e.adapter for e in batch]
        if any(adapters):
            return runner.launch(ids, _type_ids(batch), adapters)
        return runner.launch(ids, _type_ids(batch))

    def _collect(self, runner: ModelRunner, batch: list[Entry], handle: Any) -> None:
        try:
            output: BatchOutput = runner.finish(handle)
        except Exception as exc:
            output = self._recover(runner, batch, exc)
        self._hand_back(batch, output)
        # What batches freed, back to the OS once memory grew (engine/memory.py).
        release_free_memory()

    def _recover(self, runner: ModelRunner, batch: list[Entry], exc: Exception) -> BatchOutput:
        """A failed forward: out of memory is retried in halves; anything else fails."""
        if not _is_out_of_memory(exc) or len(batch) == 1:
            logger.error("forward failed on a batch of %d: %r", len(batch), exc)
            return exc
        logger.warning("out of memory on a batch of %d; retrying in halves", len(batch))
        half = len(batch) // 2
        rows: list[list[float]] = []
        for part in (batch[:half], batch[half:]):
            try:
                output: BatchOutput = runner.finish(self._launch(runner, part))
            except Exception as inner:
                output = self._recover(runner, part, inner)
            if isinstance(output, BaseException):
                return output
            rows.extend(output)
        return rows

    def _hand_back(self, batch: list[Entry], output: BatchOutput) -> None:
        self._call_loop(self._on_done, batch, output)

    def _call_loop(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The loop is closed: nobody is left to answer.
            logger.warning("event loop closed; dropping a worker result")


def _is_out_of_memory(exc: BaseException) -> bool:
    # torch.cuda.OutOfMemoryError, or the CPU allocator's RuntimeError; matched by name and
    # text so this module needs no torch import.
    return (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or "out of memory" in str(exc).lower()
    )


def _type_ids(batch: list[Entry]) -> list[list[int]] | None:
    """Segment ids for the batch: pairs carry theirs; single texts beside them get zeros,
    which is what the model assumes when it is given none."""
    if all(e.type_ids is None for e in batch):
        return None
    return [e.type_ids if e.type_ids is not None else [0] * e.length for e in batch]
