"""HotPaths: the model routes, dispatched by exact path ahead of Starlette's own stack.

A POST to a model route is almost all of a loaded server's requests, and it turns every error
into the envelope itself, so Starlette's error and exception middleware and its router's regex
match only cost it time. Everything else (other methods, the GET routes, 404s, trailing
slashes, the lifespan) still goes through Starlette. Middleware that must see every request
wraps HotPaths, not Starlette (server/app.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send


class HotPaths:
    """`routes` by exact path for a POST; everything else to `rest`, which is `app` or wraps it
    (the request id middleware)."""

    def __init__(
        self, app: Starlette, routes: Mapping[str, ASGIApp], rest: ASGIApp | None = None
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.rest = app if rest is None else rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self.routes.get(scope["path"])
            if route is not None:
                scope["app"] = self.app  # what Starlette sets, for Request.app
                await route(scope, receive, send)
                return
        await self.rest(scope, receive, send)
