"""Running the server process: engine first, then uvicorn; SIGTERM drains before exiting.

Drain (what load balancers and Kubernetes expect): on the first SIGTERM or SIGINT, /ready
turns 503 at once and new work is refused with 503, while everything already admitted runs
to its answer; once nothing is left, or --shutdown-timeout passes, uvicorn stops and what is
still queued fails with 503. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

import uvicorn

from engine import Engine, EngineConfig, ModelLoadError
from server.app import create_app
from server.config import ServerConfig

logger = logging.getLogger("classifyd.server")

T = TypeVar("T")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, engine: Engine, shutdown_timeout: float) -> None:
        super().__init__(config)
        self._engine = engine
        self._shutdown_timeout = shutdown_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in the signal handler: only hand the work to the loop from here.
        if self._drain_task is not None or self._loop is None or not self.started:
            super().handle_exit(sig, frame)
            return
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        self._engine.begin_drain()
        logger.info(
            "draining: not ready; waiting up to %g s for admitted work", self._shutdown_timeout
        )
        finished = await self._engine.wait_idle(self._shutdown_timeout)
        if not finished:
            # Answer the rest now (503), while their connections are still open: uvicorn's
            # own graceful timeout would cut them off with a bare 500 and then still wait
            # for the forward in flight.
            logger.warning("drain timed out; answering what is still queued or running with 503")
            self._engine.abandon()
            await asyncio.sleep(0)  # let the handlers write those answers
        self.should_exit = True


async def serve(
    config: EngineConfig,
    settings: ServerConfig,
    *,
    host: str,
    port: int,
    log_level: str,
    shutdown_timeout: float,
) -> int:
    # The engine starts before uvicorn so a model that cannot load stops the start with one
    # sentence, instead of a traceback from inside the ASGI lifespan.
    engine = Engine(config)
    try:
        await engine.start()
    except (ModelLoadError, ValueError) as exc:
        await engine.stop()
        print(f"classifyd serve: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    try:
        app = create_app(config, settings, engine=engine)
        server = DrainingServer(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level=log_level,
                lifespan="on",
                # classifyd logs one line per model request itself (server/logs.py).
                access_log=False,
                log_config=None,
                timeout_graceful_shutdown=max(1, int(shutdown_timeout)),
            ),
            engine,
            shutdown_timeout,
        )
        await server.serve()
        return 0 if server.started else 1
    finally:
        await engine.stop()


def run_on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (uvicorn[standard] brings it), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
