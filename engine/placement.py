"""Where the next batch runs: which worker, on how many torch threads, and how big.

With several CPU workers (one copy of the weights) there are two ways to run, chosen
whenever nothing is running: one batch at a time on every torch thread while fewer than
`parallel_from` prompts wait (a lone request's latency), or one batch per worker side by
side, each on num_threads // workers threads, under load (throughput: no OpenMP barrier
stalls when the event loop takes a core). The thread count changes only while nothing runs,
because some torch kernels size per-thread buffers by the process-wide count.

Plain bookkeeping with no clock and no I/O: the scheduler tells it what started and what
finished, and asks where the next batch goes, so every decision is tested case by case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

# Prompts from which a batch's forward runs near its best per prompt on one CPU thread:
# fewer pay the per-forward overhead more often, more stop gaining and hold the others back.
EFFICIENT_BATCH = 32

W = TypeVar("W")


@dataclass(frozen=True)
class Slot(Generic[W]):
    """A batch's place: its worker, its torch threads (None: leave them as they are) and
    the limits it is taken under."""

    worker: W
    threads: int | None
    max_batch_tokens: int
    max_num_seqs: int


class Placement(Generic[W]):
    """The thread-allocation policy over a fixed set of workers."""

    def __init__(
        self,
        workers: Sequence[W],
        *,
        max_inflight: int,
        threads: tuple[int, int] | None = None,
        parallel_from: int = 1,
    ) -> None:
        """`threads`: (all threads, threads per worker side by side); ignored with one
        worker, whose thread count is never changed."""
        if not workers:
            raise ValueError("a placement needs at least one worker")
        self._workers = list(workers)
        self._max_inflight = max_inflight
        self._threads = threads if len(self._workers) > 1 else None
        self._parallel_from = parallel_from
        # Batches in flight per worker, by identity.
        self._busy: dict[int, int] = {id(w): 0 for w in self._workers}
        self._inflight = 0
        # Whether the batches running now run side by side (only ever set with several
        # workers, when a batch starts with nothing running).
        self._side_by_side = False

    @property
    def inflight(self) -> int:
        """Batches handed to a worker and not yet finished."""
        return self._inflight

    @property
    def side_by_side(self) -> bool:
        return self._side_by_side

    def busy(self, worker: W) -> int:
        """Batches in flight on `worker`."""
        return self._busy[id(worker)]

    def next_slot(
        self, waiting: int, max_batch_tokens: int, max_num_seqs: int, *, fresh: bool
    ) -> Slot[W] | None:
        """Where the next batch runs, or None: wait for a worker to finish.

        `waiting`: prompts waiting now; `fresh`: nothing was running when this round of
        batches began, so they all start together."""
        if self._inflight >= self._max_inflight:
            return None
        worker = min(self._workers, key=self.busy)
        if self._threads is None:
            return Slot(worker, None, max_batch_tokens, max_num_seqs)
        wide, narrow = self._threads
        if not self._inflight:
            self._side_by_side = self._max_inflight > 1 and waiting >= self._parallel_from
        elif not self._side_by_side:
            return None  # one batch on every thread: nothing runs beside it
        if not self._side_by_side:
            return Slot(worker, wide, max_batch_tokens, max_num_seqs)
        # Side by side, the batches share the token budget: what runs at once, and so the
        # activation memory, stays within --max-batch-tokens.
        return Slot(
            worker,
            narrow,
            max(1, max_batch_tokens // len(self._workers)),
            min(max_num_seqs, self.share(waiting, fresh=fresh)),
        )

    def share(self, waiting: int, *, fresh: bool) -> int:
        """Prompts one batch side by side may take of the `waiting` ones.

        Starting side by side (nothing was running), the idle workers split what waits
        evenly, so every core starts at once. After that a freeing worker takes its share
        (1/workers) or EFFICIENT_BATCH, whichever is more, and leaves the rest for the
        others, which free up soon: taking everything (a packed batch has no padding to
        stop it) would leave the other workers running stragglers a few at a time.
        """
        if fresh:
            idle = sum(1 for w in self._workers if self.busy(w) == 0)
            return max(1, -(-waiting // max(1, idle)))
        return max(1, -(-waiting // len(self._workers)), min(waiting, EFFICIENT_BATCH))

    def started(self, worker: W) -> None:
        """A batch was handed to `worker`."""
        self._busy[id(worker)] += 1
        self._inflight += 1

    def finished(self, worker: W) -> None:
        """`worker` is done with one of its batches."""
        self._busy[id(worker)] -= 1
        self._inflight -= 1

    def clear(self) -> None:
        """Nothing runs any more (every batch in flight was failed)."""
        self._busy = dict.fromkeys(self._busy, 0)
        self._inflight = 0
