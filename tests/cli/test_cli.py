"""`classifyd serve` as users start it: flags, CLASSIFYD_* variables, --help."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import free_port as _free_port


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


def test_serve_from_environment(bert_dir: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "CLASSIFYD_MODEL": str(bert_dir),
        "CLASSIFYD_PORT": str(port),
        "CLASSIFYD_SERVED_MODEL_NAME": "first,second",
        "CLASSIFYD_MAX_MODEL_LEN": "64",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become healthy"
            time.sleep(0.2)
        models = httpx.get(f"{url}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["first", "second"]
        assert models[0]["max_model_len"] == 64
        resp = httpx.post(f"{url}/v1/classify", json={"model": "second", "input": "good"})
        assert resp.status_code == 200
        assert resp.json()["model"] == "second"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0


def test_missing_model_dir_fails_start(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--model", str(tmp_path / "nothing"),
         "--port", str(_free_port())],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert out.returncode != 0
