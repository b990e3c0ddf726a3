"""--request-timeout 1: a request that waits too long gets 503 and its prompts are dropped."""

from __future__ import annotations

import asyncio

import httpx

from tests.reliability.conftest import LiveServer, timed_post
from tests.support import assert_error

TIMEOUT_S = 1.0


async def test_a_request_past_its_timeout_is_503_and_never_runs(
    timeout_server: LiveServer,
) -> None:
    s = timeout_server
    v = s.vocab
    hold, late = v.marker("h"), v.marker("t")
    w = v.words
    timeouts_before = s.metric("classifyd_rejected_requests_total", reason="timeout")
    s.set_faults(hold_marker=hold)
    s.hold()
    async with httpx.AsyncClient(base_url=s.url, timeout=30) as client:
        held = asyncio.create_task(timed_post(client, {"input": [v.row(hold)]}))
        await asyncio.to_thread(s.wait_batch, lambda b: any(hold in r for r in b["rows"]))
        # Queued behind the held batch: two prompts of one request, and a second request.
        queued = [
            asyncio.create_task(
                timed_post(client, {"input": [v.row(late, w[0]), v.row(late, w[1], w[2])]})
            ),
            asyncio.create_task(timed_post(client, {"input": [v.row(late, w[3])]})),
        ]
        answered = await asyncio.wait_for(asyncio.gather(held, *queued), 10)
        # Every one of them, the held batch's request included, gave up after ~1 s.
        for response, seconds in answered:
            error = assert_error(response, 503, "ServiceUnavailableError")
            assert "request-timeout" in error["message"]
            assert TIMEOUT_S * 0.9 <= seconds < TIMEOUT_S + 2.0, seconds
        assert (await client.get("/health")).status_code == 200
        s.release()
        await asyncio.to_thread(s.wait_gauges_zero)

        # The timed-out prompts were dropped before they reached the model.
        assert [r for b in s.batches() for r in b["rows"] if late in r] == []
        assert [b["rows"] for b in s.batches()] == [[v.row(hold)]]

        # A request that is answered in time is unaffected.
        response, seconds = await timed_post(client, {"input": ["the movie was great"]})
        assert response.status_code == 200, response.text
        assert seconds < TIMEOUT_S

    timeouts = s.metric("classifyd_rejected_requests_total", reason="timeout")
    assert timeouts - timeouts_before == 3
