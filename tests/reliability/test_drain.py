"""SIGTERM under load: the real CLI drains what it admitted, refuses the rest, exits 0.

The server runs `--fault-hook tests.reliability.faults:slow` (0.4 s per batch) with
`--max-num-seqs 2` and `--shutdown-timeout 20`, so 16 admitted requests take seconds to drain.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from tests.builders import sentences
from tests.reliability.conftest import LiveServer
from tests.support import assert_error

CLIENTS = 16
SHUTDOWN_TIMEOUT_S = 20.0


@dataclass
class Sent:
    index: int
    phase: str  # "pre": sent before SIGTERM; "post": sent after /ready turned 503
    response: httpx.Response | None = None
    error: str | None = None


async def test_sigterm_drains_admitted_work_and_refuses_new(drain_server: LiveServer) -> None:
    s = drain_server
    texts = sentences(64, seed=9, max_words=10)
    sent: list[Sent] = []
    outstanding: dict[int, Sent] = {}
    resume = asyncio.Event()
    paused = False
    stop = False

    limits = httpx.Limits(max_connections=CLIENTS * 2)
    async with httpx.AsyncClient(base_url=s.url, timeout=60, limits=limits) as client:

        async def load(k: int) -> None:
            for n in range(400):  # bounded in count; `stop` bounds it in time
                if stop:
                    return
                if paused and not resume.is_set():
                    await resume.wait()
                item = Sent(len(sent), "post" if resume.is_set() else "pre")
                sent.append(item)
                outstanding[item.index] = item
                try:
                    item.response = await client.post(
                        "/classify", json={"input": texts[(k * 7 + n) % len(texts)]}
                    )
                except httpx.TransportError as exc:
                    item.error = repr(exc)
                finally:
                    del outstanding[item.index]
                if item.phase == "post":
                    if item.error is not None:
                        return  # the listener is closed: this client is done
                    await asyncio.sleep(0.1)

        clients = [asyncio.create_task(load(k)) for k in range(CLIENTS)]
        await asyncio.sleep(1.5)

        # Stop sending, then wait until the server has admitted every request still out:
        # the admitted set is a subset of what is outstanding, so equal sizes mean equal sets.
        paused = True
        deadline = time.monotonic() + 10
        while True:
            snapshot = set(outstanding)
            admitted = await asyncio.to_thread(s.metric, "classifyd_admitted_sequences")
            if admitted == len(snapshot) and snapshot:
                break
            assert time.monotonic() < deadline, (admitted, len(snapshot))
            await asyncio.sleep(0.01)
        in_flight = {i: outstanding[i] for i in snapshot if i in outstanding}
        assert len(in_flight) >= CLIENTS // 2, f"only {len(in_flight)} in flight"

        signalled = time.monotonic()
        s.terminate()
        # Readiness drops at once; liveness stays up while the drain runs.
        with httpx.Client(base_url=s.url, timeout=5) as probe:
            while True:
                ready = probe.get("/ready")
                if ready.status_code == 503:
                    break
                assert time.monotonic() - signalled < 2, "/ready still 200 after 2 s"
                await asyncio.sleep(0.01)
            assert_error(ready, 503, "ServiceUnavailableError")
            assert time.monotonic() - signalled < 2
            resume.set()
            probes = 0
            while any(item.response is None and item.error is None for item in in_flight.values()):
                try:
                    health, ready = probe.get("/health"), probe.get("/ready")
                except httpx.TransportError:
                    # The listener closes only once the drain is over; the last answers may
                    # still be on their way to this loop. Checked below.
                    break
                assert health.status_code == 200, "liveness must hold during the drain"
                assert ready.status_code == 503
                probes += 1
                assert time.monotonic() - signalled < SHUTDOWN_TIMEOUT_S, "drain too slow"
                await asyncio.sleep(0.1)
        assert probes >= 1, "the drain was over before it could be watched"

        code = await asyncio.to_thread(s.proc.wait, SHUTDOWN_TIMEOUT_S + 10)
        exited = time.monotonic() - signalled
        stop = True
        resume.set()
        await asyncio.wait_for(asyncio.gather(*clients), 30)

    assert code == 0, s.tail()
    assert exited < SHUTDOWN_TIMEOUT_S, f"exited {exited:.1f} s after SIGTERM"

    # Everything admitted before the signal was answered, and answered well.
    for item in in_flight.values():
        assert item.error is None, item.error
        assert item.response is not None and item.response.status_code == 200, (
            item.response.text if item.response is not None else None
        )
    for item in sent:
        if item.phase == "pre":
            assert item.response is not None, item.error
            assert item.response.status_code == 200, item.response.text
    # Everything sent after the signal was refused with 503 (or found the listener closed).
    post = [item for item in sent if item.phase == "post"]
    refused = [item for item in post if item.response is not None]
    for item in refused:
        assert_error(item.response, 503, "ServiceUnavailableError")
    assert len(refused) >= CLIENTS, f"only {len(refused)} requests saw the drain's 503"
    log = s.log_text()
    assert "draining" in log
    assert "drain timed out" not in log


async def test_a_drain_that_runs_out_of_time_answers_everything_with_503(
    stuck_server: LiveServer,
) -> None:
    """--shutdown-timeout 2 while a forward is stuck for 20 s: the running and the queued
    requests get the documented 503 (not a bare 500 or a cut connection), and the process
    exits without waiting for the stuck forward."""
    s = stuck_server
    async with httpx.AsyncClient(base_url=s.url, timeout=60) as client:
        texts = sentences(3, seed=4, max_words=8)
        calls = [asyncio.create_task(client.post("/classify", json={"input": t})) for t in texts]
        deadline = time.monotonic() + 10
        while await asyncio.to_thread(s.metric, "classifyd_admitted_sequences") != len(texts):
            assert time.monotonic() < deadline, "requests were not admitted"
            await asyncio.sleep(0.02)
        signalled = time.monotonic()
        s.terminate()
        responses = await asyncio.wait_for(asyncio.gather(*calls), 15)
    answered = time.monotonic() - signalled
    for response in responses:
        assert_error(response, 503, "ServiceUnavailableError")
        assert "did not finish in time" in response.json()["error"]["message"]
    assert answered < 8, f"answered {answered:.1f} s after SIGTERM"
    code = await asyncio.to_thread(s.proc.wait, 15)
    assert code == 0, s.tail()
    assert time.monotonic() - signalled < 12, "exit waited for the stuck forward"
    assert "drain timed out" in s.log_text()
