"""Several CPU workers sharing one runner, through the Engine: a lone request runs alone on
every thread, load runs batches side by side on a few threads each, sharing the token budget
and the queue (the rules themselves: tests/engine/test_placement.py).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from engine import Engine, EngineConfig
from tests.engine.scheduling import (
    OPTS,
    T,
    behind_one_running,
    serving,
    settle,
    submit,
    until,
    waiting,
)
from tests.fakes import FakeRunner, fake_logits


async def test_a_lone_request_runs_on_every_thread_with_nothing_beside_it(
    bert_dir: Path,
) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate)
    async with serving(bert_dir, fake, workers=2, num_threads=2, parallel_from=4) as engine:
        first = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        # Fewer than parallel_from were waiting when it was taken: what comes next waits for
        # it to finish instead of running beside it on a thread it would take away.
        rest = [submit(engine, [i]) for i in (2, 3)]
        await until(lambda: waiting(engine) == 2)
        await settle()
        assert fake.entered == 1
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, *rest), T)
    assert fake.launches[0][1:] == (2, 1, 1)  # two threads, alone, one row
    assert fake.changes_while_busy == 0


async def test_under_load_batches_run_side_by_side_one_thread_each(bert_dir: Path) -> None:
    gate = threading.Event()
    # The delay keeps forwards long enough to overlap once the gate opens.
    fake = FakeRunner(gate=gate, delay=0.05)
    config = {"workers": 2, "num_threads": 2, "parallel_from": 4, "max_num_seqs": 3}
    async with serving(bert_dir, fake, **config) as engine:
        results = await behind_one_running(engine, fake, gate, [[i] for i in range(2, 10)])
    # Every prompt got its own row back, whichever worker ran it.
    assert [r.logits for r in results] == [[fake_logits([i])] for i in range(1, 10)]
    first, second, third, *_ = fake.launches
    assert first[1:] == (2, 1, 1)  # alone, on both threads
    # Eight waiting when it ended: the next two batches ran at once, on both workers, one
    # thread each (two threads each would put four on two cores).
    assert {second[0], third[0]} == {"classifyd-worker", "classifyd-worker-1"}
    assert second[1] == third[1] == 1
    assert max(active for _, _, active, _ in fake.launches) == 2
    assert fake.changes_while_busy == 0


async def test_one_worker_never_changes_threads(bert_dir: Path) -> None:
    fake = FakeRunner()
    async with serving(bert_dir, fake, workers=1) as engine:
        await asyncio.wait_for(
            asyncio.gather(*(engine.classify([[i]] * 9, OPTS) for i in range(1, 5))), T
        )
    assert {threads for _, threads, _, _ in fake.launches} == {None}
    assert {name for name, *_ in fake.launches} == {"classifyd-worker"}


async def test_the_default_is_two_workers_on_cpu_and_both_stop(bert_dir: Path) -> None:
    fake = FakeRunner(delay=0.01)
    engine = Engine(
        EngineConfig(model=str(bert_dir), device="cpu", num_threads=2, parallel_from=2),
        runner_factory=fake.factory(),
    )
    await asyncio.wait_for(engine.start(), 30)
    try:
        assert engine.alive
        names = {t.name for t in threading.enumerate()}
        assert {"classifyd-worker", "classifyd-worker-1"} <= names
        await asyncio.wait_for(
            asyncio.gather(*(engine.classify([[i], [i, i]], OPTS) for i in range(1, 40))), T
        )
    finally:
        await asyncio.wait_for(engine.stop(), 30)
    assert not {"classifyd-worker", "classifyd-worker-1"} & {t.name for t in threading.enumerate()}
    # The runner both shared is closed once, by the worker that loaded it.
    assert fake.closed


async def test_batches_side_by_side_share_the_token_budget(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate, delay=0.02)
    config = {"workers": 2, "num_threads": 2, "parallel_from": 4, "max_batch_tokens": 8}
    async with serving(bert_dir, fake, **config) as engine:
        await behind_one_running(engine, fake, gate, [[i, i] for i in range(2, 10)])
    # Two running at once hold at most 8 padded tokens between them: 4 each (two prompts
    # of 2), so memory stays what one batch of --max-batch-tokens would take.
    side_by_side = [rows for _, threads, _, rows in fake.launches if threads == 1]
    assert side_by_side and all(rows <= 2 for rows in side_by_side)


async def test_batches_side_by_side_split_then_take_a_share_of_what_waits(
    bert_dir: Path,
) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate, delay=0.05, packed=True)
    config = {"workers": 2, "num_threads": 2, "parallel_from": 4}
    async with serving(bert_dir, fake, **config) as engine:
        await behind_one_running(engine, fake, gate, [[i] for i in range(2, 10)])
        # Nothing running, eight waiting: the two idle workers split them, 4 and 4, so
        # both cores start at once.
        rows = [rows for *_, rows in fake.launches]
        assert rows == [1, 4, 4]
        # Held again behind one, 100 waiting; once it ends they split 50 / 50. Then each
        # freeing worker takes half of what waits or 32, whichever is more, and leaves the
        # rest for the other, which frees soon: a packed batch has no padding to stop it
        # taking everything, and taking everything left the other worker with stragglers.
        gate.clear()
        fake.launches.clear()
        hold = submit(engine, [1])
        await until(lambda: fake.entered == 4)
        queued = [submit(engine, [2]) for _ in range(100)]
        await until(lambda: waiting(engine) == 100)
        gate.set()
        await asyncio.wait_for(asyncio.gather(hold, *queued), T)
    assert [rows for *_, rows in fake.launches] == [1, 50, 50]
