from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from engine import EngineConfig
from server.app import create_app
from tests import live

SERVED = "tiny-bert"


@pytest.fixture(scope="module")
def client(bert_dir: Path) -> Iterator[TestClient]:
    config = EngineConfig(
        model=str(bert_dir), served_model_names=(SERVED, "alias"), max_batch_tokens=1024
    )
    with TestClient(create_app(config)) as c:
        yield c


@pytest.fixture(scope="module")
def live_url(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`classifyd serve` on the tiny BERT (a child process), for clients that speak real
    HTTP."""
    server = live.serve(
        ["--model", str(bert_dir), "--served-model-name", SERVED, "--max-batch-tokens", "1024",
         "--num-threads", "1", "--log-level", "warning"],
        tmp_path_factory.mktemp("live") / "server.log",
    )  # fmt: skip
    try:
        yield server.wait_ready(120).url
    finally:
        server.stop()
