"""Entry: one prompt waiting for, or inside, a forward pass."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(eq=False, slots=True)
class Entry:
    ids: list[int]
    future: asyncio.Future[list[float]]
    priority: int = 0
    # Arrival order, set by the scheduler; ties in priority run in this order.
    seq: int = 0
    type_ids: list[int] | None = None
    # The LoRA adapter this prompt runs with (ModelInfo.adapters[adapter - 1]); 0: the base.
    adapter: int = 0
    enqueued_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    # All entries of the same request (this one included): when one fails, the rest are
    # cancelled at once, before the scheduler can batch them.
    siblings: list[Entry] | None = None
    # Counted in the waiting queue's figures (set by WaitingQueue, cleared when it leaves or
    # is forgotten), so an abandoned prompt stops counting before it is dropped.
    queued: bool = False

    @property
    def length(self) -> int:
        return len(self.ids)

    @property
    def cancelled(self) -> bool:
        # The request gave up on this prompt (client gone, or a sibling prompt failed).
        return self.future.done()
