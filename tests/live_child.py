"""The child behind tests.live.Apps: `python -m tests.live_child '<json specs>'`.

Each spec is {"name", "engine": EngineConfig fields, "server": ServerConfig fields}. Every
port is bound first thing and reported (`PORT name port`), so no other process can take it in
between; then the apps start one after another, each reported `READY name` or `FAILED name`,
so transformers' lazy imports never race and the first apps answer while later ones load.
SIGTERM stops them all at once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from typing import Any


def _fields(spec: dict[str, Any]) -> dict[str, Any]:
    # JSON has no tuples; the configs' sequence fields are tuples.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}


async def _serve(specs: list[dict[str, Any]], sockets: dict[str, socket.socket]) -> None:
    # Imported here, after main() has bound and reported the ports: torch takes seconds.
    import uvicorn

    from engine import EngineConfig
    from server.app import create_app
    from server.config import ServerConfig

    servers: list[uvicorn.Server] = []
    tasks: list[asyncio.Task[None]] = []
    for spec in specs:
        name = spec["name"]
        app = create_app(
            EngineConfig(**_fields(spec["engine"])), ServerConfig(**_fields(spec["server"]))
        )
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        task = asyncio.create_task(server.serve(sockets=[sockets[name]]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        print("READY" if server.started else "FAILED", name, flush=True)
        servers.append(server)
        tasks.append(task)

    def stop_all(*_: object) -> None:
        for server in servers:
            server.should_exit = True

    # Each uvicorn claims SIGTERM for itself alone while it serves; take it back for all.
    signal.signal(signal.SIGTERM, stop_all)
    await asyncio.gather(*tasks)


def main() -> None:
    specs: list[dict[str, Any]] = json.loads(sys.argv[1])
    sockets: dict[str, socket.socket] = {}
    for spec in specs:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sockets[spec["name"]] = sock
        print("PORT", spec["name"], sock.getsockname()[1], flush=True)
    asyncio.run(_serve(specs, sockets))


if __name__ == "__main__":
    main()
