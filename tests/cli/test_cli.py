"""`classifyd serve` as users start it: flags, CLASSIFYD_* variables, --help."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests import live
from tests.support import free_port


def test_help_shows_defaults_and_env_names() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--help"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    text = " ".join(out.stdout.split())
    for flag in (
        "--model", "--served-model-name", "--host", "--port", "--device", "--dtype",
        "--max-batch-tokens", "--max-num-seqs", "--max-model-len", "--max-concurrent-requests",
    ):  # fmt: skip
        assert flag in text, flag
    assert "(default: 8000; env CLASSIFYD_PORT)" in text
    assert "(default: 16384; env CLASSIFYD_MAX_BATCH_TOKENS)" in text


def test_serve_from_environment(bert_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = live.child_env(
        CLASSIFYD_MODEL=str(bert_dir),
        CLASSIFYD_PORT=str(port),
        CLASSIFYD_SERVED_MODEL_NAME="first,second",
        CLASSIFYD_MAX_MODEL_LEN="64",
    )
    child = live.spawn(["cli", "serve"], tmp_path / "serve.log", env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        child.wait_http(f"{url}/health", 90, "classifyd serve")
        models = httpx.get(f"{url}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["first", "second"]
        assert models[0]["max_model_len"] == 64
        resp = httpx.post(f"{url}/v1/classify", json={"model": "second", "input": "good"})
        assert resp.status_code == 200
        assert resp.json()["model"] == "second"
    finally:
        child.proc.send_signal(signal.SIGINT)
        child.proc.wait(30)
    assert child.proc.returncode == 0, child.tail()


def test_missing_model_dir_fails_start(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--model", str(tmp_path / "nothing"),
         "--port", str(free_port())],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert out.returncode != 0
