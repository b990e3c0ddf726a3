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
        # Prompts and tokens that still count: abandoned ones are forgotten at once, though
        # they leave the heap only when a batch is taken.
        self.live = 0
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
        self.forget(entry)
        return entry

    def forget(self, entry: Entry) -> None:
        """Stop counting an entry (it left, or its request gave up while it waited)."""
        if entry.queued:
            entry.queued = False
            self.live -= 1
            self.tokens -= entry.length

    def drain(self) -> list[Entry]:
        """Remove and return everything, in run order (used at shutdown)."""
        entries = [self.pop() for _ in range(len(self._heap))]
        return entries

    def _insert(self, entry: Entry) -> None:
        # seq is unique, so the tuple comparison never reaches the Entry itself.
        heapq.heappush(self._heap, (entry.priority, entry.seq, entry))
        if not entry.queued:
            entry.queued = True
            self.live += 1
            self.tokens += entry.length


def take_batch(
    waiting: WaitingQueue,
    max_batch_tokens: int,
    max_num_seqs: int,
    *,
    scan: int = 1,
    padding_slack: float = 0.15,
    packed: bool = False,
) -> list[Entry]:
    """Take the next batch: the oldest entry of the best priority, plus what fits with it.

    A batch costs len(batch) × its longest prompt, which is what a padded forward computes,
    or with `packed` (engine/model/packed.py) the sum of its prompts' lengths, which is what a
    packed one computes; it stays within `max_batch_tokens` and `max_num_seqs`. The first
    live entry (the head) is always taken, so nothing waits behind more batches than there
    are entries ahead of it, and a prompt longer than the budget cannot stall the queue.
    Cancelled entries are dropped here and never reach the model.

    scan == 1: strict queue order; the first entry that does not fit goes back to the front.
    packed: strict queue order too, as lengths cost nothing to mix.
    scan > 1: look at up to `scan` entries of the head's priority, sort them by length and
    grow the batch from the head towards whichever neighbour pads less, while padded tokens
    stay within (1 + padding_slack) × real tokens. Similar lengths run together; the rest
    wait, in their places, for the batch their own head forms.
    """
    head = _pop_live(waiting)
    if head is None:
        return []
    if scan <= 1 or packed:
        return _take_in_order(waiting, head, max_batch_tokens, max_num_seqs, packed)
    candidates = [head]
    while waiting and len(candidates) < scan:
        entry = waiting.pop()
        if entry.cancelled:
            continue
        if entry.priority != head.priority:
            waiting.push_front(entry)  # everything after it ranks lower still
            break
        candidates.append(entry)
    # Stable: among equal lengths, arrival order.
    ranked = sorted(candidates, key=lambda e: e.length)
    lo = hi = next(i for i, e in enumerate(ranked) if e is head)
    count, longest, real = 1, head.length, head.length
    while count < max_num_seqs:
        # Feasible neighbours as (padding after adding, side, length): the shorter one pads
        # itself up to `longest`; the longer one pads every row up to its own length.
        options: list[tuple[int, int, int]] = []
        for side, index in ((-1, lo - 1), (1, hi + 1)):
            if 0 <= index < len(ranked):
                length = ranked[index].length
                padded = (count + 1) * max(longest, length)
                if padded <= max_batch_tokens and padded <= (1 + padding_slack) * (real + length):
                    options.append((padded - real - length, side, length))
        if not options:
            break
        _, side, length = min(options)
        if side < 0:
            lo -= 1
        else:
            hi += 1
            longest = length
        count += 1
        real += length
    batch = ranked[lo : hi + 1]
    for entry in ranked[:lo] + ranked[hi + 1 :]:
        waiting.push_front(entry)
    # Run order inside the batch does not matter to results; arrival order reads best.
    batch.sort(key=lambda e: e.seq)
    return batch


def _pop_live(waiting: WaitingQueue) -> Entry | None:
    while waiting:
        entry = waiting.pop()
        if not entry.cancelled:
            return entry
    return None


def _take_in_order(
    waiting: WaitingQueue, head: Entry, max_batch_tokens: int, max_num_seqs: int, packed: bool
) -> list[Entry]:
    batch = [head]
    longest = real = head.length
    while waiting:
        entry = waiting.pop()
        if entry.cancelled:
            continue
        widest = max(longest, entry.length)
        cost = real + entry.length if packed else (len(batch) + 1) * widest
        if len(batch) >= max_num_seqs or cost > max_batch_tokens:
            waiting.push_front(entry)
            break
        batch.append(entry)
        longest = widest
        real += entry.length
    return batch
