"""Live classifyd servers in one child process, and plain-transformers references.

The servers are real uvicorns on 127.0.0.1, one per model, all served by ONE child Python
process: not threads of the test process (CPython 3.11 before 3.11.8 can crash when a server
thread formats a traceback while pytest formats a failure), and not one process each (each
pays seconds of torch import on a 2-core machine). The child starts them one after another, so
transformers' lazy imports never race and the first servers answer while later ones load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]

_LAUNCHER = """
import socket, sys, json
specs = json.loads(sys.argv[1])
# The ports are bound here, first thing, and reported: no window for another process to
# take a port chosen by the parent.
sockets = {}
for spec in specs:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sockets[spec["name"]] = sock
    print("PORT", spec["name"], sock.getsockname()[1], flush=True)

import asyncio
import uvicorn
from engine import EngineConfig
from server.app import create_app
from server.config import ServerConfig

async def main():
    tasks = []
    for spec in specs:
        engine = spec["engine"]
        for key in ("served_model_names", "classifier_from_tokens"):
            if key in engine:
                engine[key] = tuple(engine[key])
        app = create_app(EngineConfig(**engine), ServerConfig(**spec["server"]))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        task = asyncio.create_task(server.serve(sockets=[sockets[spec["name"]]]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        print("READY" if server.started else "FAILED", spec["name"], flush=True)
        tasks.append(task)
    await asyncio.gather(*tasks)

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Fleet:
    """One child process serving a classifyd per spec, each on a port the child binds;
    `url(name)` waits until that one is up.

    `servers` maps a name to (EngineConfig fields, ServerConfig fields)."""

    def __init__(self, servers: dict[str, tuple[dict[str, Any], dict[str, Any]]], log: Path):
        self.log = log
        specs = []
        for name, (engine, server) in servers.items():
            engine = {"num_threads": 1, "dtype": "float32", "device": "cpu", **engine}
            specs.append({"name": name, "engine": engine, "server": server})
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, json.dumps(specs)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={
                    **os.environ,
                    "OMP_NUM_THREADS": "1",
                    "TOKENIZERS_PARALLELISM": "false",
                    "HF_HUB_OFFLINE": "1",
                },
            )

    def url(self, name: str, timeout: float = 180) -> str:
        """The server's base URL, once its model is loaded and /health answers 200."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log.read_text(errors="replace")
            lines = log.splitlines()
            port = next((ln.split()[2] for ln in lines if ln.startswith(f"PORT {name} ")), None)
            if f"FAILED {name}" in lines or self.proc.poll() is not None:
                raise RuntimeError(f"classifyd {name} did not start:\n{log[-4000:]}")
            if f"READY {name}" in lines and port is not None:
                url = f"http://127.0.0.1:{port}"
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                        return url
            if time.monotonic() > deadline:
                raise RuntimeError(f"classifyd {name} did not start in time:\n{log[-4000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        # Several uvicorns in one process each claim SIGTERM; nothing needs a graceful exit.
        self.proc.kill()
        self.proc.wait()


@contextlib.contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """Run torch on `count` threads, then restore the setting. One thread for the references:
    on a 2-core machine shared with other work, two threads spin against each other and a
    135M-parameter forward gets ten times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def max_abs_diff(got: Sequence[Sequence[float]], want: Sequence[Sequence[float]]) -> float:
    assert len(got) == len(want)
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        assert len(a) == len(b), (a, b)
        worst = max([worst, *(abs(x - y) for x, y in zip(a, b, strict=True))])
    return worst


def spread(rows: Sequence[Sequence[float]]) -> float:
    """The largest difference of one output between two texts: 0 when every text gets the
    same answer, which would make an exactness check vacuous."""
    return max(max(col) - min(col) for col in zip(*rows, strict=True))


def probs_of(response: httpx.Response) -> list[list[float]]:
    assert response.status_code == 200, response.text
    return [d["probs"] for d in response.json()["data"]]


def softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(x - top) for x in row]
    return [e / sum(exps) for e in exps]


async def three_ways(
    url: str, texts: list[str], chunks: tuple[int, ...], timeout: float = 120
) -> dict[str, list[list[float]]]:
    """The texts as one request, as concurrent singles, and in concurrent mixed sizes."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:

        async def classify(chunk: list[str]) -> list[list[float]]:
            return probs_of(await client.post("/classify", json={"input": chunk}))

        whole = await classify(texts)
        singles = await asyncio.gather(*(classify([t]) for t in texts))
        parts, start = [], 0
        for size in chunks:
            parts.append(texts[start : start + size])
            start += size
        assert start == len(texts)
        mixed = await asyncio.gather(*(classify(c) for c in parts))
    return {
        "one request": whole,
        "concurrent singles": [row for rows in singles for row in rows],
        "concurrent mixed sizes": [row for rows in mixed for row in rows],
    }


def assert_matches(
    got: dict[str, list[list[float]]], want: list[list[float]], tol: float = 1e-5
) -> None:
    for way, rows in got.items():
        diff = max_abs_diff(rows, want)
        assert diff <= tol, f"{way}: max |Δprob| = {diff:.2e} > {tol}"
