"""A minimal HTTP/1.1 keep-alive client for the load generator: one connection, one request
at a time, pre-encoded request bytes, responses framed by Content-Length.

Why not httpx: on two shared cores the load generator competes with the server it
measures, and httpx spends milliseconds of CPU per request; this protocol spends a small
fraction of that, so what the bench measures is the server (figures in bench/README.md).
It speaks only what a load generator needs: POST with a fixed body, a status and a body
back, Content-Length framing, keep-alive (what uvicorn answers with). Anything else (a
chunked answer, a closed connection) is reported as an error, never silently accepted.
"""

from __future__ import annotations

import asyncio
from typing import cast
from urllib.parse import urlsplit


class RawHttpError(Exception):
    """The connection broke or the answer was not something this client can frame."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._transport: asyncio.Transport | None = None
        # Header end and total length of the response being read, once its head has arrived.
        self._head_end = -1
        self._total = -1
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but speak its API.
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None:
            return
        try:
            self._try_finish()
        except (RawHttpError, ValueError) as exc:
            # Unframeable: fail the request and drop the connection (its stream is lost).
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_exception(RawHttpError(str(exc)))
            self.closed = True
            if self._transport is not None:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(RawHttpError(f"connection closed: {exc!r}"))

    def _try_finish(self) -> None:
        buf = self._buffer
        if self._total < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = _content_length(bytes(buf[:end]))
            self._head_end = end
            self._total = end + 4 + length
        if len(buf) < self._total:
            return
        status = int(buf[9:12])
        body = bytes(buf[self._head_end + 4 : self._total])
        del buf[: self._total]
        self._head_end = self._total = -1
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.closed or self._transport is None:
            raise RawHttpError("connection closed")
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._transport.write(data)
        return await waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    raise RawHttpError(f"a response without Content-Length: {head[:200]!r}")


class RawClient:
    """POSTs pre-encoded bodies to one path over one keep-alive connection (reopened if the
    server closes it). Not safe for concurrent use: one per closed-loop client."""

    def __init__(self, url: str, path: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"RawClient speaks plain http only, not {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = (
            f"POST {path} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
            f"content-type: application/json\r\n{extra}content-length: "
        ).encode()
        self._conn: _Connection | None = None

    def encode(self, body: bytes) -> bytes:
        """The whole request for `body`: build once, send many times."""
        return self._head + str(len(body)).encode() + b"\r\n\r\n" + body

    async def send(self, request: bytes) -> tuple[int, bytes]:
        if self._conn is None or self._conn.closed:
            loop = asyncio.get_running_loop()
            _, self._conn = await loop.create_connection(_Connection, self._host, self._port)
        return await self._conn.request(request)

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
