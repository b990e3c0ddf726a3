"""The thread-allocation policy (engine/placement.py), case by case, without workers or a loop:
which worker takes the next batch, on how many threads, and how much of the queue."""

from __future__ import annotations

import pytest

from engine.placement import EFFICIENT_BATCH, Placement, Slot

BUDGET, SEQS = 1024, 256


def two(*, max_inflight: int = 2, parallel_from: int = 4) -> tuple[Placement[str], tuple[str, str]]:
    workers = ("w0", "w1")
    placement = Placement(
        workers, max_inflight=max_inflight, threads=(2, 1), parallel_from=parallel_from
    )
    return placement, workers


def test_one_worker_never_changes_threads_or_limits() -> None:
    placement = Placement(["only"], max_inflight=2, threads=(2, 1), parallel_from=1)
    assert placement.next_slot(100, BUDGET, SEQS, fresh=True) == Slot("only", None, BUDGET, SEQS)
    placement.started("only")
    # A second batch in flight (a GPU's prefetch) gets the same.
    assert placement.next_slot(100, BUDGET, SEQS, fresh=False) == Slot("only", None, BUDGET, SEQS)
    placement.started("only")
    assert placement.next_slot(100, BUDGET, SEQS, fresh=False) is None
    assert not placement.side_by_side


def test_few_waiting_run_alone_on_every_thread_and_nothing_beside() -> None:
    placement, (w0, _) = two()
    slot = placement.next_slot(3, BUDGET, SEQS, fresh=True)
    assert slot == Slot(w0, 2, BUDGET, SEQS)
    assert not placement.side_by_side
    placement.started(w0)
    # Whatever arrives meanwhile waits for it: a thread taken from it would slow it down.
    assert placement.next_slot(50, BUDGET, SEQS, fresh=False) is None
    placement.finished(w0)
    # Once it is done, what waits decides afresh.
    slot = placement.next_slot(50, BUDGET, SEQS, fresh=True)
    assert slot is not None and slot.threads == 1
    assert placement.side_by_side


def test_under_load_batches_run_side_by_side_sharing_the_budget() -> None:
    placement, (w0, w1) = two()
    first = placement.next_slot(8, BUDGET, SEQS, fresh=True)
    assert first == Slot(w0, 1, BUDGET // 2, 4)
    placement.started(w0)
    # The second batch of the round goes to the idle worker, which takes what is left.
    second = placement.next_slot(4, BUDGET, SEQS, fresh=True)
    assert second == Slot(w1, 1, BUDGET // 2, 4)
    placement.started(w1)
    assert placement.next_slot(4, BUDGET, SEQS, fresh=True) is None
    assert (placement.inflight, placement.busy(w0), placement.busy(w1)) == (2, 1, 1)
    # One frees while the other runs: it goes on side by side, narrow, with a share.
    placement.finished(w1)
    assert placement.next_slot(100, BUDGET, SEQS, fresh=False) == Slot(w1, 1, BUDGET // 2, 50)


def test_parallel_from_is_the_threshold() -> None:
    for waiting, side_by_side in ((3, False), (4, True), (5, True)):
        placement, _ = two(parallel_from=4)
        placement.next_slot(waiting, BUDGET, SEQS, fresh=True)
        assert placement.side_by_side is side_by_side, waiting


def test_one_batch_in_flight_never_runs_side_by_side() -> None:
    placement, (w0, _) = two(max_inflight=1)
    assert placement.next_slot(100, BUDGET, SEQS, fresh=True) == Slot(w0, 2, BUDGET, SEQS)
    assert not placement.side_by_side


def test_side_by_side_limits_never_exceed_the_asked_ones() -> None:
    placement, _ = two()
    slot = placement.next_slot(100, 1, 3, fresh=True)
    # One token each at least; never more prompts than asked for.
    assert slot is not None and (slot.max_batch_tokens, slot.max_num_seqs) == (1, 3)


def test_clear_forgets_every_batch_in_flight() -> None:
    placement, (w0, w1) = two()
    placement.next_slot(8, BUDGET, SEQS, fresh=True)
    placement.started(w0)
    placement.started(w1)
    placement.clear()
    assert (placement.inflight, placement.busy(w0), placement.busy(w1)) == (0, 0, 0)


def test_a_placement_needs_a_worker() -> None:
    with pytest.raises(ValueError):
        Placement([], max_inflight=1)


def test_the_share_a_batch_side_by_side_takes() -> None:
    placement, (_, w1) = two()

    def share(waiting: int, *, fresh: bool, busy: int = 0) -> int:
        while placement.busy(w1) < busy:
            placement.started(w1)
        while placement.busy(w1) > busy:
            placement.finished(w1)
        return placement.share(waiting, fresh=fresh)

    # Starting together: what waits is split among the idle workers.
    assert share(8, fresh=True) == 4
    assert share(7, fresh=True) == 4
    assert share(100, fresh=True) == 50
    assert share(1, fresh=True) == 1
    # The second batch of that round: one worker left idle takes the rest.
    assert share(50, fresh=True, busy=1) == 50
    # One freeing while the other runs: half, or 32 when half is fewer, or all when fewer
    # than 32 wait.
    assert share(100, fresh=False, busy=1) == 50
    assert share(40, fresh=False, busy=1) == EFFICIENT_BATCH == 32
    assert share(10, fresh=False, busy=1) == 10
