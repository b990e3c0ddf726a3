"""create_app: the ASGI application (Starlette, with the model routes dispatched ahead of it);
its lifespan owns the Engine."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from engine import Engine, EngineConfig
from engine.model.runner import ModelRunner
from server.config import ServerConfig
from server.dispatch import HotPaths
from server.errors import exception_handlers
from server.metrics import server_metrics
from server.middleware import ApiKeyMiddleware, RequestIdMiddleware
from server.routes import ERRORS, OPEN_PATHS, model_routes, routes
from server.state import AppState


def create_app(
    config: EngineConfig,
    server_config: ServerConfig | None = None,
    runner_factory: Callable[[EngineConfig], ModelRunner] | None = None,
    engine: Engine | None = None,
    middleware: Sequence[Middleware] = (),
) -> ASGIApp:
    """The app; its lifespan starts and stops an Engine, unless it is given a started one
    (the CLI starts the engine first, so a model that cannot load fails before binding).

    `middleware` (outermost first, as in Starlette) wraps the whole app, so it sees every
    request, model routes included; it runs outside Starlette's error handling, so it must
    not raise.
    """
    settings = server_config or ServerConfig()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            running = (
                engine
                if engine is not None
                else await stack.enter_async_context(Engine(config, runner_factory))
            )
            app.state.classifyd = AppState(
                engine=running,
                config=settings,
                names=config.names,
                created=int(time.time()),
                metrics=server_metrics(running.metrics.registry),
            )
            yield

    # Every error Starlette answers itself (unknown path, wrong method, an escaped exception)
    # is JSON in the path's error flavour, not its plain text.
    starlette = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers=exception_handlers(ERRORS)
    )
    stack = list(middleware)
    if settings.api_keys:
        # Innermost: no route, hot or not, is reached without a key, while the other middleware
        # still sees the refusals (and a CORS middleware answers preflights, which carry none).
        stack.append(
            Middleware(
                ApiKeyMiddleware, keys=settings.api_keys, open_paths=OPEN_PATHS, errors=ERRORS
            )
        )
    # The model routes set their own request id; everything else gets one around Starlette.
    app: ASGIApp = HotPaths(starlette, model_routes, RequestIdMiddleware(starlette))
    for cls, args, kwargs in reversed(stack):
        app = cls(app, *args, **kwargs)
    return app
