"""Pure-ASGI middleware (no BaseHTTPMiddleware: it buffers and breaks disconnect handling)."""

from __future__ import annotations

import hmac
from collections.abc import Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import error_response


class ApiKeyMiddleware:
    """`Authorization: Bearer <key>` on every path but `open_paths`; 401 in the envelope."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...], open_paths: Collection[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401, "AuthenticationError", "A valid API key is required: Authorization: Bearer <key>."
        )
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
