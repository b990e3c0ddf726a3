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
) -> Starlette:
    settings = server_config or ServerConfig()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with Engine(config, runner_factory) as engine:
            app.state.classifyd = AppState(
                engine=engine, config=settings, names=config.names, created=int(time.time())
            )
            yield

    middleware = [Middleware(ApiKeyMiddleware, keys=settings.api_keys)] if settings.api_keys else []
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={Exception: handle_exception},
    )
