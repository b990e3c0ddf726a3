"""The scheduler: the one task that owns the waiting queue and feeds the worker.

It takes a batch whenever a worker has a free slot and something waits, so batches form
from whatever queued up while the previous batch ran: no timer, no fixed window. Every
method runs on the event loop thread; nothing else touches the queue.

With several CPU workers (one copy of the weights) there are two ways to run, chosen
whenever nothing is running: one batch at a time on every torch thread while fewer than
`parallel_from` prompts wait (a lone request's latency), or one batch per worker side by
side, each on num_threads // workers threads, under load (throughput: no OpenMP barrier
stalls when the event loop takes a core). The thread count changes only while nothing runs,
because some torch kernels size per-thread buffers by the process-wide count.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from engine.batching import WaitingQueue, take_batch
from engine.config import EngineConfig
from engine.entry import Entry
from engine.errors import EngineUnavailable, InferenceError
from engine.metrics import EngineMetrics
from engine.worker import Outcome, Worker

# Prompts from which a batch's forward runs near its best per prompt on one CPU thread
# (MiniLM-L6 in-process, side by side: 16 → 228 texts/s, 32 → 250, 64 → 227).
EFFICIENT_BATCH = 32


class Scheduler:
    def __init__(self, config: EngineConfig, metrics: EngineMetrics) -> None:
        self._config = config
        self._metrics = metrics
        self.waiting = WaitingQueue()
        self.running = 0
        # Batches handed to a worker and not yet answered, by identity, with their worker.
        self._inflight: dict[int, tuple[list[Entry], Worker]] = {}
        self._max_inflight = 1
        self._wake = asyncio.Event()
        self._workers: list[Worker] = []
        # Batches in flight per worker, by identity.
        self._busy: dict[int, int] = {}
        # (all threads, threads per worker side by side); None: one worker, never changed.
        self._threads: tuple[int, int] | None = None
        # Whether the batches running now run side by side (only ever set with several
        # workers, by _slot()).
        self._side_by_side = False
        # Packed forwards (engine/model/packed.py): a batch costs its real tokens.
        self._packed = False
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._stop_error = EngineUnavailable("The server is shutting down.")

    def start(
        self,
        workers: list[Worker],
        max_inflight_batches: int,
        threads: tuple[int, int] | None = None,
        *,
        packed: bool = False,
    ) -> None:
        self._workers = workers
        self._packed = packed
        self._busy = {id(w): 0 for w in workers}
        self._max_inflight = max_inflight_batches
        self._threads = threads if len(workers) > 1 else None
        self._task = asyncio.create_task(self._run(), name="classifyd-scheduler")

    def enqueue(self, entries: list[Entry]) -> None:
        if self._stopped:
            # A request that finished tokenizing after stop(): nothing will take it any more.
            _fail(entries, self._stop_error)
            return
        now = time.perf_counter()
        for entry in entries:
            entry.enqueued_at = now
            self.waiting.push(entry)
        self._wake.set()

    def complete(self, batch: list[Entry], outcome: Outcome) -> None:
        """Called on the loop (via call_soon_threadsafe) when the worker is done with a batch."""
        taken = self._inflight.pop(id(batch), None)
        if taken is None:
            return  # already failed by fail_all()
        self._busy[id(taken[1])] -= 1
        self.running -= len(batch)
        now = time.perf_counter()
        if isinstance(outcome, BaseException):
            self._metrics.failed_batches.inc()
            error = InferenceError(f"The model failed on this input's batch: {outcome}")
            for entry in batch:
                entry.finished_at = now
                if not entry.future.done():
                    entry.future.set_exception(error)
                for sibling in entry.siblings or ():
                    if not sibling.future.done():
                        sibling.future.cancel()
        else:
            for entry, row in zip(batch, outcome, strict=True):
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
            self.running -= len(batch)
        self._inflight.clear()
        self._busy = dict.fromkeys(self._busy, 0)
        _fail(self.waiting.drain(), error)
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
        _fail(self.waiting.drain(), self._stop_error)

    async def _run(self) -> None:
        assert self._workers
        while True:
            self._fill()
            self._wake.clear()
            await self._wake.wait()

    def _fill(self) -> None:
        """Hand batches to the workers while a slot is free and something waits."""
        cfg = self._config
        # Nothing running: the batches taken now all start together.
        fresh = not self._inflight
        while self.waiting and not self._stopped:
            slot = self._slot()
            if slot is None:
                return
            worker, threads = slot
            budget, seqs = cfg.max_batch_tokens, cfg.max_num_seqs
            if self._side_by_side:
                # Side by side, the batches share the token budget: what runs at once, and
                # so the activation memory, stays within --max-batch-tokens.
                budget = max(1, budget // len(self._workers))
                seqs = min(seqs, self._share(fresh))
            batch = take_batch(
                self.waiting,
                budget,
                seqs,
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
            self._inflight[id(batch)] = (batch, worker)
            self._busy[id(worker)] += 1
            self.running += len(batch)
            worker.submit(batch, threads)

    def _share(self, fresh: bool) -> int:
        """Prompts one batch side by side may take of those waiting.

        Starting side by side (nothing was running), the idle workers split what waits
        evenly, so every core starts at once. After that a freeing worker takes its share
        (1/workers) or EFFICIENT_BATCH, whichever is more, and leaves the rest for the
        others, which free up soon. Taking everything (a packed batch has no padding to
        stop it) left the other worker running stragglers a few at a time and the queue
        empty whenever a worker freed: at c64, batches of 3 prompts and 149 texts/s
        against 174. The bare share gave batches of 15 at c64 and of 22 at 4 × 32
        (requests of 32 run in halves); with the floor, 20 and 32, and 4 × 32 went from
        206–234 to 235–237 texts/s (bench/README.md).
        """
        live = self.waiting.live
        if fresh:
            idle = sum(1 for w in self._workers if self._busy[id(w)] == 0)
            return max(1, -(-live // max(1, idle)))
        return max(1, -(-live // len(self._workers)), min(live, EFFICIENT_BATCH))

    def _slot(self) -> tuple[Worker, int | None] | None:
        """The worker for the next batch and its thread count, or None: wait for one."""
        if len(self._inflight) >= self._max_inflight:
            return None
        worker = min(self._workers, key=lambda w: self._busy[id(w)])
        if self._threads is None:
            return worker, None
        wide, narrow = self._threads
        if not self._inflight:
            self._side_by_side = (
                self._max_inflight > 1 and self.waiting.live >= self._config.parallel_from
            )
        elif not self._side_by_side:
            return None  # one batch on every thread: nothing runs beside it
        return worker, narrow if self._side_by_side else wide


def _fail(entries: list[Entry], error: BaseException) -> None:
    for entry in entries:
        if not entry.future.done():
            entry.future.set_exception(error)
