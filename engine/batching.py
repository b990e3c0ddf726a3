"""The waiting queue and `take_batch`: which prompts run together in the next forward.

Both are plain data structures with no I/O and no clock, so every scheduling rule is tested
case by case without a model or an event loop.
"""

from __future__ import annotations

import heapq

from engine.entry import Entry


class WaitingQueue:
    """Prompts ordered by (priority, arrival). Lower priority values run first."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Entry]] = []
        self._arrivals = 0
        # Tokens of the prompts in the queue (cancelled ones included until they are dropped).
        self.tokens = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, entry: Entry) -> None:
        self._arrivals += 1
        entry.seq = self._arrivals
        self._insert(entry)

    def push_front(self, entry: Entry) -> None:
        """Put back an entry that was taken but did not fit: it keeps its place (its key)."""
        self._insert(entry)

    def pop(self) -> Entry:
        entry = heapq.heappop(self._heap)[2]
        self.tokens -= entry.length
        return entry

    def drain(self) -> list[Entry]:
        """Remove and return everything, in run order (used at shutdown)."""
        entries = [self.pop() for _ in range(len(self._heap))]
        return entries

    def _insert(self, entry: Entry) -> None:
        # seq is unique, so the tuple comparison never reaches the Entry itself.
        heapq.heappush(self._heap, (entry.priority, entry.seq, entry))
        self.tokens += entry.length


def take_batch(waiting: WaitingQueue, max_batch_tokens: int, max_num_seqs: int) -> list[Entry]:
    """Take the next batch in queue order, within a padded-token budget and a sequence cap.

    A batch costs len(batch) × its longest prompt, which is what a padded forward computes.
    The first entry that would break either limit goes back to the front, so nothing behind
    it overtakes it. Cancelled entries are dropped here and never reach the model. The first
    live entry is always taken, so a prompt longer than the budget cannot stall the queue.
    """
    batch: list[Entry] = []
    longest = 0
    while waiting:
        entry = waiting.pop()
        if entry.cancelled:
            continue
        widest = max(longest, entry.length)
        if batch and (len(batch) >= max_num_seqs or (len(batch) + 1) * widest > max_batch_tokens):
            waiting.push_front(entry)
            break
        batch.append(entry)
        longest = widest
    return batch
