"""The scripted fake server (tests/client/fake_server.py) in a child process, shared by the
client tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import live
from tests.support import free_port


class Fake:
    def __init__(self, url: str) -> None:
        self.url = url

    def script(self, *actions: str, delay: float = 0.0) -> None:
        httpx.post(f"{self.url}/_control", json={"script": list(actions), "delay": delay})

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.url}/_stats").json()
        return stats


@pytest.fixture(scope="session")
def fake_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("fake") / "fake_server.log"
    child = live.spawn(["tests.client.fake_server", str(port)], log)
    url = f"http://127.0.0.1:{port}"
    try:
        child.wait_http(f"{url}/_stats", 60, "the fake server")
        yield url
    finally:
        child.stop()


@pytest.fixture
def fake(fake_url: str) -> Fake:
    server = Fake(fake_url)
    server.script()
    return server
