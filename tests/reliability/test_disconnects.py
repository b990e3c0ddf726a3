"""Clients that go away mid-request: their prompts never reach the model, nothing leaks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct

import httpx

from tests.reliability.conftest import LiveServer
from tests.support import wait_until

RAW_CLIENTS = 150
HTTPX_CLIENTS = 50


def raw_post(
    port: int, path: str, body: bytes, request_id: str, declared: int | None = None
) -> socket.socket:
    """A socket that has sent a whole POST (or, with `declared`, only part of its body)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared or len(body)}\r\n"
        f"X-Request-Id: {request_id}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head + body)
    return sock


def close(sock: socket.socket, reset: bool) -> None:
    if reset:
        # SO_LINGER 0: the close sends RST instead of FIN, as a crashed client does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def has(batch: dict, token: int) -> bool:
    return any(token in row for row in batch["rows"])


async def test_hundreds_of_aborted_requests_never_reach_the_model(
    chaos_server: LiveServer,
) -> None:
    s = chaos_server
    v = s.vocab
    hold, abort = v.marker("h"), v.marker("a")
    words = v.words
    total = RAW_CLIENTS + HTTPX_CLIENTS
    cancelled_before = s.metric("classifyd_requests_total", outcome="cancelled", status="499")
    s.set_faults(hold_marker=hold)
    s.hold()

    def body(i: int) -> dict:
        # Each aborted request has its own row: the abort marker and two words naming it.
        a, b = divmod(i, len(words))
        return {"input": [v.row(abort, words[a], words[b])]}

    limits = httpx.Limits(max_connections=HTTPX_CLIENTS + 10)
    async with httpx.AsyncClient(base_url=s.url, timeout=60, limits=limits) as client:
        holder = asyncio.create_task(client.post("/classify", json={"input": [v.row(hold)]}))
        await asyncio.to_thread(s.wait_batch, lambda b: has(b, hold))

        # The worker is held: everything sent now waits in the queue.
        sockets = [
            raw_post(s.port, "/classify", json.dumps(body(i)).encode(), f"abort-{i}")
            for i in range(RAW_CLIENTS)
        ]
        tasks = [
            asyncio.create_task(
                client.post("/classify", json=body(i), headers={"x-request-id": f"abort-{i}"})
            )
            for i in range(RAW_CLIENTS, total)
        ]
        await asyncio.to_thread(s.wait_gauge, "classifyd_queue_waiting_sequences", total, 60)
        assert s.metric("classifyd_admitted_sequences") == total + 1

        # Every client goes away while its prompt waits.
        for i, sock in enumerate(sockets):
            close(sock, reset=i % 2 == 0)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results), results[:3]

        # The server notices each disconnect and lets go of its permits while the worker is
        # still held, so nothing of theirs can have been batched yet.
        await asyncio.to_thread(s.wait_gauge, "classifyd_admitted_sequences", 1, 30)
        assert not holder.done()
        s.release()
        response = await asyncio.wait_for(holder, 30)
        assert response.status_code == 200, response.text

        await asyncio.to_thread(s.wait_gauges_zero)
        batches = s.batches()
        assert [b for b in batches if has(b, abort)] == [], "an aborted prompt reached the model"
        assert sum(len(b["rows"]) for b in batches) == 1, batches

        after = await client.post("/classify", json={"input": "the movie was great"})
        assert after.status_code == 200, after.text

    cancelled = s.metric("classifyd_requests_total", outcome="cancelled", status="499")
    assert cancelled - cancelled_before == total

    # One access line per aborted request, with the 499 of "client closed request".
    def logged() -> dict[str, list[int]] | None:
        seen: dict[str, list[int]] = {}
        for line in s.access_logs():
            if str(line.get("request_id", "")).startswith("abort-"):
                seen.setdefault(line["request_id"], []).append(line["status"])
        return seen if len(seen) == total else None

    seen = wait_until(logged, 10, "an access line for every aborted request")
    assert all(statuses == [499] for statuses in seen.values()), seen


async def test_clients_gone_mid_body_are_not_server_errors(chaos_server: LiveServer) -> None:
    """A client that disconnects while sending its body is the client's doing: counted as
    cancelled (499), never a 500 nor an ERROR line in the server log."""
    s = chaos_server
    count = 20
    errors_before = s.metric("classifyd_requests_total", status="500")
    cancelled_before = s.metric("classifyd_requests_total", outcome="cancelled", status="499")
    log_before = len(s.json_logs())
    partial = b'{"input": ["the movie was'
    sockets = [
        raw_post(s.port, "/classify", partial, f"partial-{i}", declared=1000) for i in range(count)
    ]
    await asyncio.sleep(0.2)
    for i, sock in enumerate(sockets):
        close(sock, reset=i % 2 == 0)

    def answered() -> bool:
        return (
            s.metric("classifyd_requests_total", outcome="cancelled", status="499")
            + s.metric("classifyd_requests_total", status="500")
            - cancelled_before
            - errors_before
            >= count
        )

    with contextlib.suppress(AssertionError):
        await asyncio.to_thread(wait_until, answered, 10, "the partial requests to end")
    errors = [
        line for line in s.json_logs()[log_before:] if line.get("level") in ("error", "critical")
    ]
    assert s.metric("classifyd_requests_total", status="500") - errors_before == 0
    assert errors == [], errors[:3]
    cancelled = s.metric("classifyd_requests_total", outcome="cancelled", status="499")
    assert cancelled - cancelled_before == count
    await asyncio.to_thread(s.wait_gauges_zero)
    assert (await asyncio.to_thread(s.client.get, "/health")).status_code == 200
