"""Running the scheduler through the Engine, with a FakeRunner whose gate holds the worker
busy: the helpers the scheduler's tests share.

Prompts are token ids, so a request enqueues without waiting on the tokenizer; the real
tokenizer of the tiny bert model is still loaded by Engine.start().
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from engine import ClassifyOptions, ClassifyResult, Engine, EngineConfig
from tests.fakes import FakeRunner

OPTS = ClassifyOptions()
T = 5.0  # seconds: no single step of these tests should come near it


@asynccontextmanager
async def serving(bert_dir: Path, fake: FakeRunner, **config: Any) -> AsyncIterator[Engine]:
    # One worker unless a test asks for more (tests/engine/test_side_by_side.py).
    config.setdefault("workers", 1)
    engine = Engine(
        EngineConfig(model=str(bert_dir), device="cpu", **config), runner_factory=fake.factory()
    )
    await asyncio.wait_for(engine.start(), 30)
    try:
        yield engine
    finally:
        if fake.gate is not None:
            fake.gate.set()
        await asyncio.wait_for(engine.stop(), 30)


async def until(cond: Callable[[], bool], timeout: float = T) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)


def gauge(engine: Engine, name: str, **labels: str) -> float | None:
    return engine.metrics.registry.get_sample_value(name, labels)


def waiting(engine: Engine) -> float | None:
    return gauge(engine, "classifyd_queue_waiting_sequences")


def running(engine: Engine) -> float | None:
    return gauge(engine, "classifyd_running_sequences")


def admitted(engine: Engine) -> float | None:
    return gauge(engine, "classifyd_admitted_sequences")


def submit(engine: Engine, *prompts: list[int], priority: int = 0) -> asyncio.Task[ClassifyResult]:
    return asyncio.create_task(engine.classify(list(prompts), ClassifyOptions(priority=priority)))


async def settle() -> None:
    """Give the scheduler a few loop turns to do something it should not."""
    for _ in range(5):
        await asyncio.sleep(0.01)


async def behind_one_running(
    engine: Engine, fake: FakeRunner, gate: threading.Event, prompts: list[list[int]]
) -> list[ClassifyResult]:
    """Hold one prompt in the model, queue `prompts` behind it, then let everything run."""
    hold = submit(engine, [1])
    await until(lambda: fake.entered == 1)
    queued = [submit(engine, p) for p in prompts]
    await until(lambda: waiting(engine) == len(prompts))
    gate.set()
    return list(await asyncio.wait_for(asyncio.gather(hold, *queued), T))
