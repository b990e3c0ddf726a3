"""isolate: run a batch as one call, and when one bad item fails the whole call, find which
items are bad so that only they fail.

    outcomes = await isolate(texts, classify, blame)
    # one per text, in order: classify's result for it, or an ItemFailed with its error

`blame` reads a failed call's error: the position of the item at fault when the error names
it, SOMEONE when an item is at fault but the error does not say which, None when the call
failed as a whole (then the error is raised). A named item fails and the rest are tried
together once more; an error that names none, or a second bad item, has each item tried
alone, so a batch never costs more than one call over its number of items.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

T = TypeVar("T")
R = TypeVar("R")

SOMEONE: Final = "someone"
# What a failed call's error says of the batch (see the module docstring).
Blame = int | Literal["someone"] | None


@dataclass(frozen=True, slots=True)
class ItemFailed:
    """The error that failed one item: its own call's, or the batch's that named it."""

    error: Exception


async def isolate(
    items: Sequence[T],
    attempt: Callable[[list[T]], Awaitable[Sequence[R]]],
    blame: Callable[[Exception], Blame],
) -> list[R | ItemFailed]:
    """One outcome per item, in order. `attempt` maps a list of items to one result each;
    an error `blame` lays on no item is raised as it is."""
    return await _isolate(list(items), attempt, blame, named_once=False)


async def _isolate(
    items: list[T],
    attempt: Callable[[list[T]], Awaitable[Sequence[R]]],
    blame: Callable[[Exception], Blame],
    *,
    named_once: bool,
) -> list[R | ItemFailed]:
    try:
        return list(await attempt(items))
    except Exception as exc:
        at = blame(exc)
        if at is None:
            raise
        if len(items) == 1:
            return [ItemFailed(exc)]
        if isinstance(at, int) and not named_once and 0 <= at < len(items):
            rest = await _isolate(items[:at] + items[at + 1 :], attempt, blame, named_once=True)
            return [*rest[:at], ItemFailed(exc), *rest[at:]]
        # No call can run the others while a bad item rides along: try each alone.
        alone = await asyncio.gather(
            *(_isolate([item], attempt, blame, named_once=True) for item in items)
        )
        return [outcome for one in alone for outcome in one]
