"""The load generator and its raw HTTP client, against one live server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from bench.loadgen import run_load
from bench.rawhttp import RawClient, RawHttpError, _Connection
from tests.builders import sentences

TEXTS = sentences(16)


def _stable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in {"id", "created"}}


async def test_raw_client_gets_what_httpx_gets(live_url: str) -> None:
    payload = json.dumps({"input": TEXTS[:3]}).encode()
    raw = RawClient(live_url, "/classify")
    try:
        request = raw.encode(payload)
        first = await raw.send(request)
        second = await raw.send(request)  # the same keep-alive connection, again
    finally:
        await raw.aclose()
    async with httpx.AsyncClient(base_url=live_url) as http:
        expected = (await http.post("/classify", content=payload)).json()
    for status, body in (first, second):
        assert status == 200
        assert _stable(json.loads(body)) == _stable(expected)


@pytest.mark.parametrize("client", ["raw", "httpx"])
async def test_closed_loop_counts_every_request_and_text(live_url: str, client: str) -> None:
    result = await run_load(
        live_url, TEXTS, clients=4, texts_per_request=2, seconds=30, max_requests=20,
        client=client,
    )  # fmt: skip
    assert result.requests == 20
    assert result.texts == 40
    assert result.errors == {}
    assert 0 < result.p50_ms <= result.p90_ms <= result.p99_ms


async def test_a_closed_loop_in_slices_idles_between_them(live_url: str) -> None:
    in_flight = 0
    seen_between: list[int] = []
    original = RawClient.send

    async def counting(self: RawClient, request: bytes) -> tuple[int, bytes]:
        nonlocal in_flight
        in_flight += 1
        try:
            return await original(self, request)
        finally:
            in_flight -= 1

    async def between() -> None:
        seen_between.append(in_flight)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RawClient, "send", counting)
        result = await run_load(live_url, TEXTS, clients=3, seconds=1.5, slices=3, between=between)
    # Called between the slices, never after the last, with every client answered.
    assert seen_between == [0, 0]
    assert len(result.slice_texts_per_s) == 3 and all(r > 0 for r in result.slice_texts_per_s)
    assert result.errors == {} and result.texts >= 3
    # The rate counts only answers inside the windows: never more than were answered.
    assert result.texts_per_s * 1.5 <= result.texts
    with pytest.raises(ValueError, match="closed loop"):
        await run_load(live_url, TEXTS, rate=10, seconds=1, slices=2)


@pytest.mark.parametrize("client", ["raw", "httpx"])
async def test_open_loop_sends_at_its_rate(live_url: str, client: str) -> None:
    result = await run_load(live_url, TEXTS, rate=40, seconds=30, max_requests=12, client=client)
    assert result.mode == "open"
    assert result.requests == 12 and result.texts == 12 and result.errors == {}
    # 12 requests at 40/s cannot all be sent in less than 11 intervals.
    assert result.seconds >= 11 / 40


@pytest.mark.parametrize("client", ["raw", "httpx"])
async def test_errors_are_counted_by_status(live_url: str, client: str) -> None:
    result = await run_load(
        live_url, TEXTS, clients=2, seconds=30, max_requests=6, path="/no-such-route",
        client=client,
    )  # fmt: skip
    assert result.errors == {"404": 6}
    assert result.texts == 0


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True


async def test_a_response_split_into_pieces_is_framed_whole() -> None:
    conn = _Connection()
    conn.connection_made(_Transport())
    pending = asyncio.ensure_future(conn.request(b"POST / HTTP/1.1\r\n\r\n"))
    await asyncio.sleep(0)
    wire = b'HTTP/1.1 429 Too Many\r\nContent-Length: 11\r\nx-a: b\r\n\r\n{"e":"far"}HTTP/1.1 200'
    for i in range(0, len(wire), 5):
        conn.data_received(wire[i : i + 5])
    assert await pending == (429, b'{"e":"far"}')
    # What followed belongs to the next response.
    following = asyncio.ensure_future(conn.request(b"again"))
    await asyncio.sleep(0)
    conn.data_received(b" OK\r\ncontent-length: 2\r\n\r\nok")
    assert await following == (200, b"ok")


async def test_an_answer_it_cannot_frame_or_a_closed_connection_is_an_error() -> None:
    conn = _Connection()
    conn.connection_made(_Transport())
    pending = asyncio.ensure_future(conn.request(b"x"))
    await asyncio.sleep(0)
    conn.data_received(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    with pytest.raises(RawHttpError, match="Content-Length"):
        await pending
    assert conn.closed
    conn = _Connection()
    conn.connection_made(_Transport())
    pending = asyncio.ensure_future(conn.request(b"x"))
    await asyncio.sleep(0)
    conn.connection_lost(None)
    with pytest.raises(RawHttpError, match="closed"):
        await pending
    with pytest.raises(RawHttpError, match="closed"):
        await conn.request(b"x")
