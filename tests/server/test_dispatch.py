"""HotPaths: exact POST paths go to their route; everything else reaches Starlette."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from server.dispatch import HotPaths


class _Recorder:
    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)


async def _call(app: Any, scope: dict[str, Any]) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    await app(scope, receive, send)


async def test_exact_post_paths_reach_their_route_with_the_app_in_scope() -> None:
    starlette = Starlette()
    route = _Recorder()
    rest = _Recorder()
    # `rest` records what falls through (in the app, the request id middleware around Starlette).
    hot = HotPaths(starlette, {"/classify": route}, rest)
    await _call(hot, {"type": "http", "method": "POST", "path": "/classify"})
    assert len(route.scopes) == 1 and rest.scopes == []
    assert route.scopes[0]["app"] is starlette
    # Any other method, a near path, or a non-HTTP scope goes on to Starlette untouched.
    for scope in (
        {"type": "http", "method": "GET", "path": "/classify"},
        {"type": "http", "method": "POST", "path": "/classify/"},
        {"type": "http", "method": "POST", "path": "/health"},
        {"type": "lifespan"},
    ):
        await _call(hot, dict(scope))
    assert len(route.scopes) == 1
    assert [s.get("path") for s in rest.scopes] == ["/classify", "/classify/", "/health", None]
    assert all("app" not in s for s in rest.scopes)
