"""The scripted fake server (tests/client/fake_server.py) in a child process, shared by the
client tests: a child, not a thread, so no server thread formats tracebacks next to pytest."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Fake:
    def __init__(self, url: str) -> None:
        self.url = url

    def script(self, *actions: str, delay: float = 0.0) -> None:
        httpx.post(f"{self.url}/_control", json={"script": list(actions), "delay": delay})

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.url}/_stats").json()
        return stats


@pytest.fixture(scope="session")
def fake_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.client.fake_server", str(port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"fake server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/_stats", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def fake(fake_url: str) -> Fake:
    server = Fake(fake_url)
    server.script()
    return server
