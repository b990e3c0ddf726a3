"""The run-time LoRA routes' switch: the flag, or vLLM's variable as vLLM reads it; off, the
routes answer 404 in vLLM's envelope. (Live behaviour: tests/models/test_lora_runtime_live.py.)"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.testclient import TestClient

from engine import EngineConfig
from server.app import create_app
from server.config import ServerConfig
from server.lora_admin import ENV, runtime_updates_allowed
from tests.fakes import FakeRunner


def _state(flag: bool) -> Any:
    return SimpleNamespace(config=ServerConfig(allow_runtime_lora_updating=flag))


@pytest.mark.parametrize(
    ("flag", "env", "allowed"),
    [(False, None, False), (True, None, True), (False, "True", True), (False, "1", True),
     (False, "false", False), (False, "yes", False)],
)  # fmt: skip
def test_flag_or_vllm_variable(
    monkeypatch: pytest.MonkeyPatch, flag: bool, env: str | None, allowed: bool
) -> None:
    if env is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, env)
    assert runtime_updates_allowed(_state(flag)) is allowed


def test_needs_enable_lora(bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    config = EngineConfig(model=str(bert_dir), device="cpu")
    on = ServerConfig(allow_runtime_lora_updating=True)
    with TestClient(create_app(config, on, runner_factory=FakeRunner().factory())) as client:
        load = client.post("/v1/load_lora_adapter", json={"lora_name": "a", "lora_path": "/x"})
    assert load.status_code == 400
    assert "start with --enable-lora" in load.json()["error"]["message"]
    off_app = create_app(config, ServerConfig(), runner_factory=FakeRunner().factory())
    with TestClient(off_app) as client:
        off = client.post("/v1/unload_lora_adapter", json={"lora_name": "a"})
    assert off.status_code == 404
    assert off.json()["error"]["message"] == "Not Found"
