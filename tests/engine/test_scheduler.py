"""The scheduler through the Engine, one worker: batches form from what waits, within the
budgets, in priority order; cancelled and failed prompts never reach the model; stop fails
what still waits. Several workers: tests/engine/test_side_by_side.py.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from engine import EngineUnavailable, InferenceError, InvalidInput, Overloaded
from tests.engine.scheduling import (
    OPTS,
    T,
    admitted,
    behind_one_running,
    gauge,
    running,
    serving,
    settle,
    submit,
    until,
    waiting,
)
from tests.fakes import FakeRunner, fake_logits


async def test_lone_request_runs_at_once(bert_dir: Path) -> None:
    fake = FakeRunner()
    async with serving(bert_dir, fake) as engine:
        result = await asyncio.wait_for(engine.classify([[5, 6, 7]], OPTS), 1.0)
    assert result.logits == [fake_logits([5, 6, 7])]
    assert result.prompt_tokens == [3]
    assert fake.batches == [[[5, 6, 7]]]


async def test_results_come_back_in_prompt_order(bert_dir: Path) -> None:
    fake = FakeRunner()
    prompts = [[9, 1], [3], [4, 4, 4], [2]]
    async with serving(bert_dir, fake) as engine:
        result = await asyncio.wait_for(engine.classify(prompts, OPTS), T)
    assert result.logits == [fake_logits(p) for p in prompts]
    assert result.prompt_tokens == [2, 1, 3, 1]


async def test_batch_forms_while_worker_is_busy(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate)
    async with serving(bert_dir, fake, max_inflight_batches=1) as engine:
        first = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        rest = [submit(engine, [i]) for i in range(2, 7)]
        await until(lambda: waiting(engine) == 5)
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(first, *rest), T)
    assert fake.batches == [[[1]], [[2], [3], [4], [5], [6]]]
    assert [r.logits for r in results] == [[fake_logits([i])] for i in range(1, 7)]


async def test_waiting_batches_respect_max_num_seqs(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate)
    async with serving(bert_dir, fake, max_inflight_batches=1, max_num_seqs=3) as engine:
        first = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        rest = [submit(engine, [i]) for i in range(2, 9)]
        await until(lambda: waiting(engine) == 7)
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, *rest), T)
    assert [len(b) for b in fake.batches] == [1, 3, 3, 1]
    assert [row for b in fake.batches for row in b] == [[i] for i in range(1, 9)]


async def test_waiting_batches_respect_padded_token_budget(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate)
    # 8 padded tokens per batch: two prompts of 4 tokens, or one of 5 alone. Strict queue
    # order (batch_scan=1), so the batches are predictable from the budget alone.
    async with serving(
        bert_dir, fake, max_inflight_batches=1, max_batch_tokens=8, batch_scan=1
    ) as engine:
        first = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        rest = [
            submit(engine, [2] * 4),
            submit(engine, [3] * 4),
            submit(engine, [4] * 5),
            submit(engine, [5]),
            submit(engine, [6] * 3),
        ]
        await until(lambda: waiting(engine) == 5)
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, *rest), T)
    assert fake.batches == [[[1]], [[2] * 4, [3] * 4], [[4] * 5], [[5], [6] * 3]]
    for batch in fake.batches:
        assert len(batch) * max(len(row) for row in batch) <= 8


async def test_max_inflight_batches_is_respected(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate)
    async with serving(bert_dir, fake, max_inflight_batches=2) as engine:
        first = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        second = submit(engine, [2])
        await until(lambda: running(engine) == 2)
        rest = [submit(engine, [i]) for i in (3, 4, 5)]
        await until(lambda: waiting(engine) == 3)
        await settle()
        assert running(engine) == 2
        assert waiting(engine) == 3
        assert fake.entered == 1
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, second, *rest), T)
        assert running(engine) == 0
        assert waiting(engine) == 0
    assert fake.batches == [[[1]], [[2]], [[3], [4], [5]]]


async def test_one_inflight_batch_means_nothing_prefetched(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate)
    async with serving(bert_dir, fake, max_inflight_batches=1) as engine:
        first = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        second = submit(engine, [2])
        await settle()
        assert running(engine) == 1
        assert waiting(engine) == 1
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, second), T)


async def test_lower_priority_value_runs_first(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate)
    async with serving(bert_dir, fake, max_inflight_batches=1, max_num_seqs=1) as engine:
        first = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        tasks = [
            submit(engine, [30], priority=3),
            submit(engine, [10], priority=1),
            submit(engine, [31], priority=3),
            submit(engine, [20], priority=2),
            submit(engine, [90], priority=-1),
        ]
        await until(lambda: waiting(engine) == 5)
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, *tasks), T)
    assert fake.batches == [[[1]], [[90]], [[10]], [[20]], [[30]], [[31]]]


async def test_cancelled_request_never_reaches_the_runner(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate)
    async with serving(bert_dir, fake, max_inflight_batches=1) as engine:
        first = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        gone = submit(engine, [50], [51])
        kept = submit(engine, [60])
        await until(lambda: waiting(engine) == 3)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(gone, T)
        assert admitted(engine) == 2
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(first, kept), T)
        assert [r.logits for r in results] == [[fake_logits([1])], [fake_logits([60])]]
        assert admitted(engine) == 0
        assert waiting(engine) == 0
        assert gauge(engine, "classifyd_queue_waiting_tokens") == 0
    assert fake.batches == [[[1]], [[60]]]


async def test_failing_batch_fails_only_its_requests(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate, fail=lambda rows: [99] in rows)
    async with serving(bert_dir, fake, max_inflight_batches=1, max_num_seqs=1) as engine:
        first = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        bad = submit(engine, [99])
        good = submit(engine, [7])
        await until(lambda: waiting(engine) == 2)
        gate.set()
        with pytest.raises(InferenceError, match="fake failure"):
            await asyncio.wait_for(bad, T)
        assert (await asyncio.wait_for(good, T)).logits == [fake_logits([7])]
        assert (await asyncio.wait_for(first, T)).logits == [fake_logits([1])]
        assert gauge(engine, "classifyd_failed_batches_total") == 1
        # The engine goes on serving, and the failed request gave its permit back.
        again = await asyncio.wait_for(engine.classify([[8]], OPTS), T)
        assert again.logits == [fake_logits([8])]
        assert admitted(engine) == 0
        assert running(engine) == 0
    assert fake.batches == [[[1]], [[99]], [[7]], [[8]]]


async def test_failure_in_a_shared_batch_fails_every_request_in_it(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate, fail=lambda rows: [99] in rows)
    async with serving(bert_dir, fake, max_inflight_batches=1) as engine:
        first = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        bad = submit(engine, [99])
        neighbour = submit(engine, [7])
        await until(lambda: waiting(engine) == 2)
        gate.set()
        for task in (bad, neighbour):
            with pytest.raises(InferenceError):
                await asyncio.wait_for(task, T)
        assert (await asyncio.wait_for(first, T)).logits == [fake_logits([1])]
        assert (await asyncio.wait_for(engine.classify([[7]], OPTS), T)).logits == [
            fake_logits([7])
        ]
    assert fake.batches == [[[1]], [[99], [7]], [[7]]]


async def test_admission_refuses_at_once_over_the_limit(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate)
    async with serving(bert_dir, fake, max_concurrent_requests=4) as engine:
        held = submit(engine, [1], [2], [3])
        await until(lambda: admitted(engine) == 3)
        with pytest.raises(Overloaded) as refused:
            await asyncio.wait_for(engine.classify([[4], [5]], OPTS), 1.0)
        assert (refused.value.requested, refused.value.in_flight, refused.value.limit) == (2, 3, 4)
        fits = submit(engine, [6])
        await until(lambda: admitted(engine) == 4)
        with pytest.raises(Overloaded):
            await asyncio.wait_for(engine.classify([[7]], OPTS), 1.0)
        assert gauge(engine, "classifyd_rejected_requests_total", reason="overloaded") == 2
        gate.set()
        await asyncio.wait_for(asyncio.gather(held, fits), T)
        assert admitted(engine) == 0
        assert engine._admitted == 0
        # All permits are back: a request of the full limit now fits.
        result = await asyncio.wait_for(engine.classify([[1], [2], [3], [4]], OPTS), T)
        assert len(result.logits) == 4
        assert admitted(engine) == 0
    seen = [row for batch in fake.batches for row in batch]
    assert [5] not in seen
    assert [7] not in seen


async def test_request_larger_than_the_limit_is_always_refused(bert_dir: Path) -> None:
    fake = FakeRunner()
    async with serving(bert_dir, fake, max_concurrent_requests=2) as engine:
        # It could never be admitted, so it is a client error (400), not a retryable 429.
        with pytest.raises(InvalidInput, match="max-concurrent-requests"):
            await asyncio.wait_for(engine.classify([[1], [2], [3]], OPTS), 1.0)
        assert admitted(engine) == 0
        assert fake.batches == []


async def test_stop_fails_queued_requests(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate)
    async with serving(bert_dir, fake, max_inflight_batches=1) as engine:
        inflight = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        queued = [submit(engine, [2]), submit(engine, [3], [4])]
        await until(lambda: waiting(engine) == 3)
        stopping = asyncio.create_task(engine.stop())
        await until(lambda: all(t.done() for t in queued))
        for task in queued:
            with pytest.raises(EngineUnavailable):
                await task
        assert not engine.ready
        gate.set()
        await asyncio.wait_for(stopping, T)
        # The batch already handed to the worker finished while the engine drained.
        assert (await asyncio.wait_for(inflight, T)).logits == [fake_logits([1])]
        with pytest.raises(EngineUnavailable):
            await asyncio.wait_for(engine.classify([[5]], OPTS), 1.0)
    assert fake.batches == [[[1]]]
    assert fake.closed


async def test_stop_fails_request_that_was_tokenizing(bert_dir: Path) -> None:
    """A request still in the tokenizer when stop() starts must not be left hanging."""
    gate = threading.Event()
    fake = FakeRunner(gate=gate)
    async with serving(bert_dir, fake, max_inflight_batches=1) as engine:
        inflight = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        # Hold the (one-thread) tokenizer pool so the text request waits in it.
        tokenizer_free = threading.Event()
        assert engine._tokenizer is not None
        engine._tokenizer._pool.submit(tokenizer_free.wait, T)
        text = asyncio.create_task(engine.classify(["great movie"], OPTS))
        await settle()
        stopping = asyncio.create_task(engine.stop())
        await until(lambda: not engine.ready)
        await settle()  # the scheduler has stopped and drained its queue
        tokenizer_free.set()
        await settle()
        gate.set()
        await asyncio.wait_for(stopping, T)
        await asyncio.wait_for(inflight, T)
        with pytest.raises(EngineUnavailable):
            await asyncio.wait_for(text, 2.0)


async def test_failed_prompt_cancels_its_siblings_before_they_run(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate, fail=lambda rows: [99] in rows)
    async with serving(bert_dir, fake, max_inflight_batches=1, max_num_seqs=1) as engine:
        first = submit(engine, [1])
        await until(lambda: fake.entered == 1)
        request = submit(engine, [99], [8])
        await until(lambda: waiting(engine) == 2)
        gate.set()
        with pytest.raises(InferenceError):
            await asyncio.wait_for(request, T)
        await asyncio.wait_for(first, T)
        assert (await asyncio.wait_for(engine.classify([[5]], OPTS), T)).logits == [
            fake_logits([5])
        ]
    # [8] belonged to the failed request: it never reached the model.
    assert fake.batches == [[[1]], [[99]], [[5]]]


async def test_packed_batches_cost_their_real_tokens(bert_dir: Path) -> None:
    gate = threading.Event()
    fake = FakeRunner(gate=gate, packed=True)
    config = {"max_inflight_batches": 1, "max_batch_tokens": 10}
    async with serving(bert_dir, fake, **config) as engine:
        # Padded, 3 × 8 = 24 tokens would split these; packed they cost 1 + 8 + 1 = 10.
        await behind_one_running(engine, fake, gate, [[2], [3] * 8, [4], [5]])
        padded = gauge(engine, "classifyd_batch_padded_tokens_sum")
        real = gauge(engine, "classifyd_batch_real_tokens_sum")
    assert fake.batches == [[[1]], [[2], [3] * 8, [4]], [[5]]]
    # The dense layers of a packed forward compute exactly the real tokens.
    assert padded == real == 12
