"""Admission under overload: 429 at once with Retry-After, then full recovery.

The server admits at most 8 sequences (--max-concurrent-requests 8) and lets at most 100
tokens wait (--max-waiting-tokens 100).
"""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.builders import sentences
from tests.reliability.conftest import LiveServer, timed_post
from tests.support import assert_error

LIMIT = 8
FLOOD = 60


async def test_a_flood_is_refused_at_once_and_the_server_recovers(
    overload_server: LiveServer,
) -> None:
    s = overload_server
    rejected_before = s.metric("classifyd_rejected_requests_total", reason="overloaded")
    counted_before = s.metric("classifyd_requests_total", outcome="error", status="429")
    # Every batch is held: the first 8 admitted prompts keep their permits until release.
    s.set_faults(hold=True)
    s.hold()
    texts = sentences(FLOOD, seed=3, max_words=6)
    limits = httpx.Limits(max_connections=FLOOD + 5)
    async with httpx.AsyncClient(base_url=s.url, timeout=60, limits=limits) as client:
        tasks = [asyncio.create_task(timed_post(client, {"input": t})) for t in texts]
        refused_count = FLOOD - LIMIT
        deadline = time.monotonic() + 20
        while sum(t.done() for t in tasks) < refused_count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        done = [t.result() for t in tasks if t.done()]
        pending = [t for t in tasks if not t.done()]
        # Exactly the overflow was answered (all 429, quickly) while the admitted 8 still wait.
        assert len(done) == refused_count, f"{len(done)} answered; {len(pending)} pending"
        assert s.metric("classifyd_admitted_sequences") == LIMIT
        for response, seconds in done:
            error = assert_error(response, 429, "OverloadedError")
            assert "capacity" in error["message"]
            assert int(response.headers["retry-after"]) >= 1
            assert seconds < 3.0, f"a 429 took {seconds:.2f} s"
        s.release()
        admitted = await asyncio.wait_for(asyncio.gather(*pending), 30)
        for response, _ in admitted:
            assert response.status_code == 200, response.text

        # Once the flood is over every request succeeds, single or batched up to the limit.
        s.set_faults()
        for text in sentences(20, seed=4, max_words=6):
            response = await client.post("/classify", json={"input": text})
            assert response.status_code == 200, response.text
        full = await client.post("/classify", json={"input": sentences(LIMIT, seed=5, max_words=6)})
        assert full.status_code == 200, full.text
        more = await asyncio.gather(
            *(
                client.post("/classify", json={"input": t})
                for t in sentences(LIMIT, seed=6, max_words=6)
            )
        )
        assert [r.status_code for r in more] == [200] * LIMIT

    rejected = s.metric("classifyd_rejected_requests_total", reason="overloaded")
    assert rejected - rejected_before == refused_count
    counted = s.metric("classifyd_requests_total", outcome="error", status="429")
    assert counted - counted_before == refused_count
    await asyncio.to_thread(s.wait_gauges_zero)
    assert s.metric("classifyd_queue_waiting_tokens") == 0


async def test_too_many_waiting_tokens_is_a_429(overload_server: LiveServer) -> None:
    s = overload_server
    v = s.vocab
    hold = v.marker("h")
    rejected_before = s.metric("classifyd_rejected_requests_total", reason="queue_full")
    s.set_faults(hold_marker=hold)
    s.hold()

    async with httpx.AsyncClient(base_url=s.url, timeout=30) as client:
        held = asyncio.create_task(client.post("/classify", json={"input": [v.row(hold)]}))
        await asyncio.to_thread(s.wait_batch, lambda b: any(hold in row for row in b["rows"]))
        first = asyncio.create_task(client.post("/classify", json=v.body(60, 0)))
        await asyncio.to_thread(s.wait_gauge, "classifyd_queue_waiting_tokens", 60)
        # 60 waiting + 60 more > 100: refused at once; 60 + 30 fits.
        began = time.monotonic()
        over = await client.post("/classify", json=v.body(60, 1))
        assert time.monotonic() - began < 3
        assert "queue" in assert_error(over, 429, "OverloadedError")["message"]
        assert int(over.headers["retry-after"]) >= 1
        fits = asyncio.create_task(client.post("/classify", json=v.body(30, 2)))
        await asyncio.to_thread(s.wait_gauge, "classifyd_queue_waiting_tokens", 90)
        s.release()
        answered = await asyncio.wait_for(asyncio.gather(held, first, fits), 30)
        assert [r.status_code for r in answered] == [200, 200, 200]
        again = await client.post("/classify", json=v.body(60, 3))
        assert again.status_code == 200, again.text

    rejected = s.metric("classifyd_rejected_requests_total", reason="queue_full")
    assert rejected - rejected_before == 1
    await asyncio.to_thread(s.wait_gauges_zero)


async def test_abandoned_prompts_do_not_fill_the_waiting_budget(
    overload_server: LiveServer,
) -> None:
    """Prompts whose clients went away wait for nothing: they must not keep the queue "full"
    (--max-waiting-tokens) and refuse live requests while the worker is busy."""
    s = overload_server
    v = s.vocab
    hold = v.marker("h")
    s.set_faults(hold_marker=hold)
    s.hold()

    async with httpx.AsyncClient(base_url=s.url, timeout=30) as client:
        held = asyncio.create_task(client.post("/classify", json={"input": [v.row(hold)]}))
        await asyncio.to_thread(s.wait_batch, lambda b: any(hold in row for row in b["rows"]))
        # A client queues 60 tokens and gives up while the worker is busy.
        gone = asyncio.create_task(client.post("/classify", json=v.body(60, 0)))
        await asyncio.to_thread(s.wait_gauge, "classifyd_queue_waiting_tokens", 60)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        await asyncio.to_thread(s.wait_gauge, "classifyd_admitted_sequences", 1)

        # Nothing live waits: a 60-token request fits within the 100-token budget.
        live = asyncio.create_task(client.post("/classify", json=v.body(60, 1)))
        await asyncio.sleep(0.5)
        if live.done():
            assert live.result().status_code == 200, live.result().text
        s.release()
        response = await asyncio.wait_for(live, 30)
        assert response.status_code == 200, response.text
        assert (await asyncio.wait_for(held, 30)).status_code == 200
    await asyncio.to_thread(s.wait_gauges_zero)
