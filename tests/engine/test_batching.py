"""take_batch and WaitingQueue, case by case: no model, no running loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from engine.batching import WaitingQueue, take_batch
from engine.entry import Entry

Make = Callable[..., Entry]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def make(loop: asyncio.AbstractEventLoop) -> Make:
    def make(length: int, priority: int = 0, tag: int = 1) -> Entry:
        return Entry([tag] * length, loop.create_future(), priority)

    return make


def queue_of(*entries: Entry) -> WaitingQueue:
    waiting = WaitingQueue()
    for entry in entries:
        waiting.push(entry)
    return waiting


def test_empty_queue_gives_empty_batch() -> None:
    waiting = WaitingQueue()
    assert take_batch(waiting, 100, 10) == []
    assert len(waiting) == 0
    assert waiting.tokens == 0


def test_order_is_priority_then_arrival(make: Make) -> None:
    a, b, c, d = make(1, priority=5), make(1, priority=0), make(1, priority=5), make(1, priority=-1)
    waiting = queue_of(a, b, c, d)
    assert take_batch(waiting, 100, 10) == [d, b, a, c]


def test_budget_equal_is_allowed(make: Make) -> None:
    # 4 × 5 = 20 padded tokens: exactly the budget.
    entries = [make(5) for _ in range(4)]
    waiting = queue_of(*entries)
    assert take_batch(waiting, 20, 100) == entries
    assert len(waiting) == 0


def test_budget_one_over_is_refused(make: Make) -> None:
    entries = [make(5) for _ in range(4)]
    waiting = queue_of(*entries)
    assert take_batch(waiting, 19, 100) == entries[:3]
    assert len(waiting) == 1


def test_budget_counts_padding_to_the_longest(make: Make) -> None:
    # Real tokens 1 + 1 + 8 = 10, but padded 3 × 8 = 24 > 20: the long one waits.
    short1, short2, long = make(1), make(1), make(8)
    waiting = queue_of(short1, short2, long)
    assert take_batch(waiting, 20, 100) == [short1, short2]
    assert take_batch(waiting, 20, 100) == [long]
    # Padded 3 × 8 = 24 ≤ 24: all three fit.
    waiting = queue_of(short1, short2, long)
    assert take_batch(waiting, 24, 100) == [short1, short2, long]


def test_longest_first_then_short_ones_pad_to_it(make: Make) -> None:
    long, s1, s2 = make(10), make(1), make(1)
    waiting = queue_of(long, s1, s2)
    # 2 × 10 = 20 fits, 3 × 10 = 30 does not.
    assert take_batch(waiting, 20, 100) == [long, s1]
    assert take_batch(waiting, 20, 100) == [s2]


def test_sequence_cap(make: Make) -> None:
    entries = [make(1) for _ in range(7)]
    waiting = queue_of(*entries)
    assert take_batch(waiting, 1000, 3) == entries[:3]
    assert take_batch(waiting, 1000, 3) == entries[3:6]
    assert take_batch(waiting, 1000, 3) == entries[6:]
    assert take_batch(waiting, 1000, 3) == []


def test_entry_that_does_not_fit_goes_back_to_the_front(make: Make) -> None:
    # `big` does not fit after `a`; `c` behind it would fit but must not overtake it.
    a, big, c = make(2), make(9), make(1)
    waiting = queue_of(a, big, c)
    assert take_batch(waiting, 10, 100) == [a]
    assert len(waiting) == 2
    assert take_batch(waiting, 10, 100) == [big]
    assert take_batch(waiting, 10, 100) == [c]


def test_pushed_back_entry_keeps_its_place_against_later_arrivals(make: Make) -> None:
    a, big = make(2), make(9)
    waiting = queue_of(a, big)
    assert take_batch(waiting, 10, 100) == [a]
    late = make(1)
    waiting.push(late)
    assert take_batch(waiting, 10, 100) == [big]
    assert take_batch(waiting, 10, 100) == [late]


def test_lone_entry_longer_than_budget_is_taken(make: Make) -> None:
    huge, small = make(50), make(1)
    waiting = queue_of(huge, small)
    assert take_batch(waiting, 10, 100) == [huge]
    assert take_batch(waiting, 10, 100) == [small]
    assert len(waiting) == 0


def test_cancelled_entries_are_dropped(make: Make) -> None:
    a, b, c, d = make(1), make(1), make(1), make(1)
    b.future.cancel()
    d.future.cancel()
    waiting = queue_of(a, b, c, d)
    assert take_batch(waiting, 100, 10) == [a, c]
    assert len(waiting) == 0
    assert waiting.tokens == 0
    assert take_batch(waiting, 100, 10) == []


def test_cancelled_entries_do_not_count_against_the_caps(make: Make) -> None:
    a, gone, b = make(1), make(50), make(1)
    gone.future.cancel()
    waiting = queue_of(a, gone, b)
    assert take_batch(waiting, 2, 2) == [a, b]


def test_only_cancelled_entries_give_empty_batch(make: Make) -> None:
    a, b = make(3), make(4)
    a.future.cancel()
    b.future.set_result([0.0])
    waiting = queue_of(a, b)
    assert take_batch(waiting, 100, 10) == []
    assert len(waiting) == 0
    assert waiting.tokens == 0


def test_cancelled_after_push_back_is_dropped_next_time(make: Make) -> None:
    a, big, c = make(2), make(9), make(1)
    waiting = queue_of(a, big, c)
    assert take_batch(waiting, 10, 100) == [a]
    big.future.cancel()
    assert take_batch(waiting, 10, 100) == [c]


def test_tokens_accounting(make: Make) -> None:
    waiting = WaitingQueue()
    a, b, c = make(3), make(5), make(7)
    waiting.push(a)
    waiting.push(b)
    assert waiting.tokens == 8
    assert waiting.pop() is a
    assert waiting.tokens == 5
    waiting.push_front(a)
    assert waiting.tokens == 8
    assert len(waiting) == 2
    waiting.push(c)
    assert waiting.tokens == 15
    assert waiting.drain() == [a, b, c]
    assert waiting.tokens == 0
    assert len(waiting) == 0


def test_tokens_after_take_batch_with_push_back(make: Make) -> None:
    waiting = queue_of(make(4), make(4), make(4))
    assert len(take_batch(waiting, 8, 100)) == 2
    assert waiting.tokens == 4
    assert len(take_batch(waiting, 8, 100)) == 1
    assert waiting.tokens == 0


def test_push_assigns_increasing_arrival(make: Make) -> None:
    a, b = make(1), make(1)
    queue_of(a, b)
    assert 0 < a.seq < b.seq


# -- length grouping (scan > 1) ----------------------------------------------------------


def test_grouping_takes_similar_lengths_around_the_head(make: Make) -> None:
    head, long1, short1, long2, short2 = make(10), make(50), make(11), make(52), make(10)
    waiting = queue_of(head, long1, short1, long2, short2)
    batch = take_batch(waiting, 1000, 10, scan=16)
    assert batch == [head, short1, short2]
    # The long ones stay, in their places, and form the next batch together.
    assert take_batch(waiting, 1000, 10, scan=16) == [long1, long2]
    assert not waiting


def test_grouping_always_includes_the_oldest(make: Make) -> None:
    # The head is an outlier: it runs (alone) rather than wait behind the crowd.
    head = make(100)
    crowd = [make(5) for _ in range(6)]
    waiting = queue_of(head, *crowd)
    assert take_batch(waiting, 10_000, 10, scan=16) == [head]
    assert take_batch(waiting, 10_000, 10, scan=16) == crowd


@pytest.mark.parametrize("slack", [0.0, 0.15, 0.5])
def test_grouping_bounds_padding(make: Make, slack: float) -> None:
    lengths = [7, 33, 12, 40, 9, 35, 18, 20, 21, 60, 8, 19, 22, 36, 10, 11]
    waiting = queue_of(*(make(n) for n in lengths))
    batches = []
    while waiting:
        batch = take_batch(waiting, 10_000, 64, scan=64, padding_slack=slack)
        padded = len(batch) * max(e.length for e in batch)
        assert padded <= (1 + slack) * sum(e.length for e in batch) + 1e-9
        batches.append(batch)
    assert sorted(e.length for b in batches for e in b) == sorted(lengths)


def test_grouping_respects_budget_and_cap(make: Make) -> None:
    entries = [make(10) for _ in range(8)]
    waiting = queue_of(*entries)
    assert take_batch(waiting, 30, 10, scan=16) == entries[:3]
    assert take_batch(waiting, 1000, 2, scan=16) == entries[3:5]


def test_grouping_stays_within_the_head_priority(make: Make) -> None:
    urgent = make(10, priority=-1)
    same_length_later = make(10, priority=0)
    waiting = queue_of(same_length_later, urgent)
    assert take_batch(waiting, 1000, 10, scan=16) == [urgent]
    assert take_batch(waiting, 1000, 10, scan=16) == [same_length_later]


def test_grouping_drops_cancelled(make: Make) -> None:
    a, b, c = make(10), make(10), make(10)
    b.future.cancel()
    waiting = queue_of(a, b, c)
    assert take_batch(waiting, 1000, 10, scan=16) == [a, c]
    assert waiting.tokens == 0


def test_grouping_passes_over_an_entry_a_bounded_number_of_times(make: Make) -> None:
    # A steady stream of short prompts cannot starve one long prompt: once it is the
    # oldest, the next batch takes it.
    waiting = WaitingQueue()
    long = make(80)
    waiting.push(long)
    taken_at = None
    for step in range(50):
        for _ in range(4):
            waiting.push(make(5))
        batch = take_batch(waiting, 10_000, 8, scan=64)
        if long in batch:
            taken_at = step
            break
    assert taken_at == 0


def test_grouping_skips_a_too_short_neighbour_for_a_fitting_longer_one(make: Make) -> None:
    head, tiny, twin = make(10), make(2), make(10)
    waiting = queue_of(head, tiny, twin)
    assert take_batch(waiting, 1000, 10, scan=16) == [head, twin]
    assert take_batch(waiting, 1000, 10, scan=16) == [tiny]


def test_packed_costs_real_tokens_in_queue_order(make: Make) -> None:
    # Padded, 3 × 8 = 24 > 10 would stop at the long one; packed, 1 + 8 + 1 = 10 fits,
    # and a further 1 (11) does not.
    a, long, b, c = make(1), make(8), make(1), make(1)
    waiting = queue_of(a, long, b, c)
    assert take_batch(waiting, 10, 100, packed=True) == [a, long, b]
    assert take_batch(waiting, 10, 100, packed=True) == [c]


def test_packed_ignores_the_length_scan(make: Make) -> None:
    # With a scan, lengths 2 and 30 would never share a padded batch (slack 0.15); packed
    # they mix freely, in arrival order.
    entries = [make(n) for n in (2, 30, 3, 29, 2)]
    waiting = queue_of(*entries)
    assert take_batch(waiting, 10_000, 100, scan=256, padding_slack=0.15, packed=True) == entries


def test_packed_head_over_budget_runs_alone(make: Make) -> None:
    big, small = make(50), make(1)
    waiting = queue_of(big, small)
    assert take_batch(waiting, 10, 100, packed=True) == [big]
    assert take_batch(waiting, 10, 100, packed=True) == [small]


def test_packed_respects_max_num_seqs(make: Make) -> None:
    entries = [make(1) for _ in range(5)]
    waiting = queue_of(*entries)
    assert take_batch(waiting, 100, 2, packed=True) == entries[:2]
