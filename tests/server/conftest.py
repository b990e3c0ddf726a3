from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.testclient import TestClient

from engine import EngineConfig
from server.app import create_app

SERVED = "tiny-bert"


@pytest.fixture(scope="module")
def client(bert_dir: Path) -> Iterator[TestClient]:
    config = EngineConfig(
        model=str(bert_dir), served_model_names=(SERVED, "alias"), max_batch_tokens=1024
    )
    with TestClient(create_app(config)) as c:
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def live_url(bert_dir: Path) -> Iterator[str]:
    """One real uvicorn on 127.0.0.1, in a thread, for clients that speak real HTTP."""
    config = EngineConfig(model=str(bert_dir), served_model_names=(SERVED,), max_batch_tokens=1024)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)
