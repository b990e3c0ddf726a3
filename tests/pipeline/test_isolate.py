"""pipeline.isolate: which items of a batch fail it, and what that costs in calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import pytest

from pipeline import SOMEONE, Blame, ItemFailed, isolate


class Bad(Exception):
    def __init__(self, at: int | None) -> None:
        super().__init__(f"bad at {at}")
        self.at = at


class Whole(Exception):
    pass


Attempt = Callable[[list[str]], Awaitable[Sequence[str]]]


def _caller(named: bool) -> tuple[list[list[str]], Attempt]:
    calls: list[list[str]] = []

    async def attempt(items: list[str]) -> Sequence[str]:
        calls.append(list(items))
        for i, item in enumerate(items):
            if item.startswith("bad"):
                raise Bad(i if named else None)
            if item == "whole":
                raise Whole()
        return [item.upper() for item in items]

    return calls, attempt


def blame(exc: Exception) -> Blame:
    if isinstance(exc, Bad):
        return SOMEONE if exc.at is None else exc.at
    return None


def _shown(outcomes: list[str | ItemFailed]) -> list[str]:
    return [f"failed:{o.error}" if isinstance(o, ItemFailed) else o for o in outcomes]


async def test_a_clean_batch_is_one_call() -> None:
    calls, attempt = _caller(named=True)
    assert await isolate(["a", "b"], attempt, blame) == ["A", "B"]
    assert calls == [["a", "b"]]


async def test_a_named_item_fails_and_the_rest_run_together() -> None:
    calls, attempt = _caller(named=True)
    outcomes = await isolate(["a", "bad1", "c", "d"], attempt, blame)
    assert _shown(outcomes) == ["A", "failed:bad at 1", "C", "D"]
    assert calls == [["a", "bad1", "c", "d"], ["a", "c", "d"]]


async def test_a_second_bad_item_has_each_tried_alone() -> None:
    calls, attempt = _caller(named=True)
    outcomes = await isolate(["bad1", "b", "bad2", "d"], attempt, blame)
    assert _shown(outcomes) == ["failed:bad at 0", "B", "failed:bad at 0", "D"]
    # The batch, the rest, then each of the rest alone: one call more than there are items.
    assert len(calls) == 2 + 3


async def test_an_unnamed_item_error_has_each_tried_alone() -> None:
    calls, attempt = _caller(named=False)
    outcomes = await isolate(["a", "bad", "c"], attempt, blame)
    assert _shown(outcomes) == ["A", "failed:bad at None", "C"]
    assert sorted(map(tuple, calls[1:])) == [("a",), ("bad",), ("c",)]


async def test_an_error_of_the_whole_call_is_raised() -> None:
    _, attempt = _caller(named=True)
    with pytest.raises(Whole):
        await isolate(["a", "whole"], attempt, blame)
