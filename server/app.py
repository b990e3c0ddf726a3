"""create_app: the Starlette application; its lifespan owns the Engine."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette

from engine import Engine, EngineConfig
from engine.runner import ModelRunner
from server.errors import handle_exception
from server.routes import AppState, routes


def create_app(
    config: EngineConfig,
    runner_factory: Callable[[EngineConfig], ModelRunner] | None = None,
) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with Engine(config, runner_factory) as engine:
            app.state.classifyd = AppState(
                engine=engine, names=config.names, created=int(time.time())
            )
            yield

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={Exception: handle_exception},
    )
