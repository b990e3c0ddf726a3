"""The scheduler: the one task that owns the waiting queue and feeds the workers.

It takes a batch whenever a worker has a free slot and something waits, so batches form
from whatever queued up while the previous batch ran: no timer, no fixed window. Where each
batch runs, on how many threads, is engine/placement.py's decision. Every method runs on the
event loop thread; nothing else touches the queue, and the engine reads and cancels through
the methods here only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from engine.batching import WaitingQueue, take_batch
from engine.config import EngineConfig
from engine.entry import Entry
from engine.errors import EngineUnavailable, InferenceError
from engine.metrics import EngineMetrics
from engine.placement import Placement
from engine.worker import BatchOutput, Worker


class Scheduler:
    def __init__(self, config: EngineConfig, metrics: EngineMetrics) -> None:
        self._config = config
        self._metrics = metrics
        self._waiting = WaitingQueue()
        self._running = 0
        # Batches handed to a worker and not yet answered, by identity, with their worker.
        self._inflight: dict[int, tuple[list[Entry], Worker]] = {}
        self._placement: Placement[Worker] | None = None
        self._wake = asyncio.Event()
        # Packed forwards (engine/model/packed.py): a batch costs its real tokens.
        self._packed = False
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._stop_error = EngineUnavailable("The server is shutting down.")

    @property
    def waiting_count(self) -> int:
        """Prompts waiting that still count (a cancelled one stops counting at once)."""
        return self._waiting.live

    @property
    def waiting_tokens(self) -> int:
        """The tokens of those prompts."""
        return self._waiting.tokens

    @property
    def running(self) -> int:
        """Prompts in batches handed to a worker and not yet answered."""
        return self._running

    def start(
        self,
        workers: list[Worker],
        max_inflight_batches: int,
        threads: tuple[int, int] | None = None,
        *,
        packed: bool = False,
    ) -> None:
        self._packed = packed
        self._placement = Placement(
            workers,
            max_inflight=max_inflight_batches,
            threads=threads,
            parallel_from=self._config.parallel_from,
        )
        self._task = asyncio.create_task(self._run(), name="classifyd-scheduler")

    def enqueue(self, entries: list[Entry]) -> None:
        if self._stopped:
            # A request that finished tokenizing after stop(): nothing will take it any more.
            _fail(entries, self._stop_error)
            return
        now = time.perf_counter()
        for entry in entries:
            entry.enqueued_at = now
            self._waiting.push(entry)
        self._wake.set()

    def cancel(self, entries: Iterable[Entry]) -> None:
        """Give up on these prompts: those not yet answered never reach the model, and those
        still waiting stop counting now (they leave the queue when a batch is taken)."""
        for entry in entries:
            entry.future.cancel()
            self._waiting.forget(entry)

    def complete(self, batch: list[Entry], output: BatchOutput) -> None:
        """Called on the loop (via call_soon_threadsafe) when the worker is done with a batch."""
        taken = self._inflight.pop(id(batch), None)
        if taken is None or self._placement is None:
            return  # already failed by fail_all()
        self._placement.finished(taken[1])
        self._running -= len(batch)
        now = time.perf_counter()
        if isinstance(output, BaseException):
            self._metrics.failed_batches.inc()
            error = InferenceError(f"The model failed on this input's batch: {output}")
            for entry in batch:
                entry.finished_at = now
                if not entry.future.done():
                    entry.future.set_exception(error)
                # The rest of its request cannot succeed: cancel it before it is batched.
                self.cancel(entry.siblings or ())
        else:
            for entry, row in zip(batch, output, strict=True):
                entry.finished_at = now
                if not entry.future.done():
                    entry.future.set_result(row)
        # The worker is idle: hand it its next batch now (after the cancellations above).
        # Waking the scheduler task instead queued it behind the callbacks of every future
        # just resolved, each request's response, while the worker waited.
        self._fill()

    def fail_all(self, error: EngineUnavailable) -> None:
        """Fail everything in flight and waiting; take nothing more."""
        self._stopped = True
        self._stop_error = error
        for batch, _ in self._inflight.values():
            _fail(batch, error)
            self._running -= len(batch)
        self._inflight.clear()
        if self._placement is not None:
            self._placement.clear()
        _fail(self._waiting.drain(), error)
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        """Stop taking batches and fail whatever still waits."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        _fail(self._waiting.drain(), self._stop_error)

    async def _run(self) -> None:
        while True:
            self._fill()
            self._wake.clear()
            await self._wake.wait()

    def _fill(self) -> None:
        """Hand batches to the workers while a slot is free and something waits."""
        placement = self._placement
        assert placement is not None
        cfg = self._config
        # Nothing running: the batches taken now all start together.
        fresh = not self._inflight
        while self._waiting and not self._stopped:
            slot = placement.next_slot(
                self._waiting.live, cfg.max_batch_tokens, cfg.max_num_seqs, fresh=fresh
            )
            if slot is None:
                return
            batch = take_batch(
                self._waiting,
                slot.max_batch_tokens,
                slot.max_num_seqs,
                scan=cfg.batch_scan,
                padding_slack=cfg.padding_slack,
                packed=self._packed,
            )
            if not batch:
                continue
            now = time.perf_counter()
            real = 0
            for entry in batch:
                entry.started_at = now
                real += entry.length
            # Packed, the dense layers compute the real tokens only.
            padded = real if self._packed else len(batch) * max(e.length for e in batch)
            self._metrics.observe_batch(len(batch), real, padded)
            self._inflight[id(batch)] = (batch, slot.worker)
            placement.started(slot.worker)
            self._running += len(batch)
            slot.worker.submit(batch, slot.threads)


def _fail(entries: list[Entry], error: BaseException) -> None:
    for entry in entries:
        if not entry.future.done():
            entry.future.set_exception(error)
