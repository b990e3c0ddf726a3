"""Pure-ASGI middleware (no BaseHTTPMiddleware: it buffers and breaks disconnect handling)."""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import ErrorMapper, Unauthenticated, to_response
from server.http import new_request_id


def request_id_of(scope: Scope) -> str:
    """The client's `X-Request-Id`, else a fresh one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode("latin-1")
    return new_request_id()


class RequestIdMiddleware:
    """`x-request-id` on every answer Starlette gives (GET routes, 404s, 405s, 500s): the
    client's, else a fresh one. The model routes set their own (it may come from the body), so
    HotPaths dispatches them around this."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "x-request-id" not in headers:
                    headers.append("x-request-id", request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)


class ApiKeyMiddleware:
    """`Authorization: Bearer <key>` on every path but `open_paths`; a 401 as the path's peer
    answers it (`errors`, by path; vLLM's elsewhere): `{"error": "Unauthorized"}` from vLLM and
    SGLang, TEI's bare status. With a request id, and `WWW-Authenticate` (RFC 9110)."""

    def __init__(
        self,
        app: ASGIApp,
        keys: tuple[str, ...],
        open_paths: Collection[str],
        errors: Mapping[str, ErrorMapper] | None = None,
    ) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.open_paths = frozenset(open_paths)
        self.errors = dict(errors or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        refusal = Unauthenticated()
        response = self.errors.get(scope["path"], to_response)(refusal, request_id_of(scope))
        response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        # Compare against every key, always, so timing says nothing about which matched.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(token, key)
        return matched
