"""create_app: the Starlette application; its lifespan owns the Engine."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware

from engine import Engine, EngineConfig
from engine.runner import ModelRunner
from server.config import ServerConfig
from server.errors import handle_exception
from server.middleware import ApiKeyMiddleware
from server.routes import routes
from server.state import AppState


def create_app(
    config: EngineConfig,
    server_config: ServerConfig | None = None,
    runner_factory: Callable[[EngineConfig], ModelRunner] | None = None,
    engine: Engine | None = None,
) -> Starlette:
    """The app; its lifespan starts and stops an Engine, unless it is given a started one
    (the CLI starts the engine first, so a model that cannot load fails before binding)."""
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
                engine=running, config=settings, names=config.names, created=int(time.time())
            )
            yield

    middleware = [Middleware(ApiKeyMiddleware, keys=settings.api_keys)] if settings.api_keys else []
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={Exception: handle_exception},
    )
