"""Model failures injected through --fault-hook: one failing batch, out of memory, a dead worker."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.reliability.conftest import LiveServer
from tests.support import assert_error, assert_tei_error, wait_until


def has(batch: dict, token: int) -> bool:
    return any(token in row for row in batch["rows"])


async def post_ids(client: httpx.AsyncClient, *rows: list[int]) -> httpx.Response:
    return await client.post("/classify", json={"input": [list(r) for r in rows]})


async def test_a_failing_batch_fails_only_its_own_requests(chaos_server: LiveServer) -> None:
    s = chaos_server
    v = s.vocab
    hold, fail = v.marker("h"), v.marker("x")
    w = v.words
    s.set_faults(hold_marker=hold, fail_marker=fail)
    s.hold()
    failed_before = s.metric("classifyd_failed_batches_total")
    async with httpx.AsyncClient(base_url=s.url, timeout=30) as client:
        held = asyncio.create_task(post_ids(client, v.row(hold, w[0])))
        await asyncio.to_thread(s.wait_batch, lambda b: has(b, hold))
        # Two requests of the same length wait together: they share the next batch.
        failing_row, neighbour_row = v.row(fail, w[1]), v.row(w[2], w[3])
        failing = asyncio.create_task(post_ids(client, failing_row))
        neighbour = asyncio.create_task(post_ids(client, neighbour_row))
        await asyncio.to_thread(s.wait_gauge, "classifyd_queue_waiting_sequences", 2)
        s.release()
        held_r, failing_r, neighbour_r = await asyncio.wait_for(
            asyncio.gather(held, failing, neighbour), 30
        )

        batches = s.batches()
        bad = [b for b in batches if b["outcome"] == "fail"]
        assert [sorted(b["rows"]) for b in bad] == [sorted([failing_row, neighbour_row])], batches
        # The batch before it (the held one) is answered; both requests of the failing
        # batch get the model-failure error; nothing else is touched.
        assert held_r.status_code == 200, held_r.text
        assert_error(failing_r, 500, "InternalServerError")
        assert_error(neighbour_r, 500, "InternalServerError")
        assert s.metric("classifyd_failed_batches_total") - failed_before == 1

        # The server keeps serving.
        for i in range(5):
            again = await post_ids(client, v.row(w[i], w[i + 1]))
            assert again.status_code == 200, again.text
        texts = await client.post("/classify", json={"input": ["great movie", "dull plot"]})
        assert texts.status_code == 200, texts.text
    assert (await asyncio.to_thread(s.client.get, "/health")).status_code == 200


@pytest.mark.parametrize("oom_rows", [4, 2])
async def test_out_of_memory_is_retried_in_halves(chaos_server: LiveServer, oom_rows: int) -> None:
    s = chaos_server
    v = s.vocab
    hold = v.marker("h")
    w = v.words
    rows = [v.row(w[i], w[i + 10], w[i + 20]) for i in range(8)]
    async with httpx.AsyncClient(base_url=s.url, timeout=30) as client:
        # What each prompt gives alone, with no faults.
        alone = [(await post_ids(client, row)).json()["data"][0]["probs"] for row in rows]
        s.reset()
        s.set_faults(hold_marker=hold, oom_rows=oom_rows)
        s.hold()
        held = asyncio.create_task(post_ids(client, v.row(hold)))
        await asyncio.to_thread(s.wait_batch, lambda b: has(b, hold))
        tasks = [asyncio.create_task(post_ids(client, row)) for row in rows]
        await asyncio.to_thread(s.wait_gauge, "classifyd_queue_waiting_sequences", len(rows))
        s.release()
        responses = await asyncio.wait_for(asyncio.gather(held, *tasks), 30)

    for response in responses:
        assert response.status_code == 200, response.text
    got = [r.json()["data"][0]["probs"] for r in responses[1:]]
    for mine, expected in zip(got, alone, strict=True):
        assert max(abs(a - b) for a, b in zip(mine, expected, strict=True)) <= 1e-5
    # The hook saw the big batch fail, then the halves (recursively) until they fit.
    sizes = [(len(b["rows"]), b["outcome"]) for b in s.batches() if not has(b, hold)]
    assert sizes[0] == (8, "oom"), sizes
    ran = [n for n, outcome in sizes if outcome == "ok"]
    assert sum(ran) == 8 and max(ran) <= oom_rows, sizes
    expected_ooms = {4: [8], 2: [8, 4, 4]}[oom_rows]
    assert [n for n, outcome in sizes if outcome == "oom"] == expected_ooms, sizes
    ran_rows = sorted(row for b in s.batches() if b["outcome"] == "ok" for row in b["rows"])
    assert ran_rows == sorted([*rows, v.row(hold)])


async def test_a_dead_worker_turns_the_server_unavailable(kill_server: LiveServer) -> None:
    s = kill_server
    v = s.vocab
    hold, kill = v.marker("h"), v.marker("k")
    w = v.words
    s.set_faults(hold_marker=hold, kill_marker=kill)
    s.hold()
    async with httpx.AsyncClient(base_url=s.url, timeout=30) as client:
        assert (await client.get("/health")).status_code == 200
        # The batch that kills the worker is held first, so others are in flight with it.
        doomed = asyncio.create_task(post_ids(client, v.row(hold, kill)))
        await asyncio.to_thread(s.wait_batch, lambda b: has(b, kill))
        waiting = [
            asyncio.create_task(client.post("/classify", json={"input": [f"{w[i]} movie"]}))
            for i in range(5)
        ]
        await asyncio.to_thread(s.wait_gauge, "classifyd_queue_waiting_sequences", 5)
        began = time.monotonic()
        s.release()
        answered = await asyncio.wait_for(asyncio.gather(doomed, *waiting), 10)
        assert time.monotonic() - began < 5
        for response in answered:
            assert_error(response, 503, "ServiceUnavailableError")

        # From now on: 503 at once for new work, liveness and readiness down.
        for body in ({"input": "great movie"}, {"input": [v.row(w[0])]}):
            began = time.monotonic()
            response = await client.post("/classify", json=body)
            assert time.monotonic() - began < 2
            assert_error(response, 503, "ServiceUnavailableError")
        predict = await client.post("/predict", json={"inputs": "great movie"})
        # TEI's route answers in TEI's envelope: an unhealthy backend.
        assert_tei_error(predict, 503, "Unhealthy")
        assert_error(await client.get("/health"), 503, "ServiceUnavailableError")
        assert_error(await client.get("/ready"), 503, "ServiceUnavailableError")

    assert s.metric("classifyd_rejected_requests_total", reason="worker_dead") >= 1
    await asyncio.to_thread(s.wait_gauges_zero, 5)
    assert [b["outcome"] for b in s.batches()] == ["kill"]
    wait_until(lambda: "the model worker died" in s.log_text(), 5, "the worker's death logged")
    assert s.proc.poll() is None, "the process must stay up to answer 503s"
