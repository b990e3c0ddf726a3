"""Fixtures for the offline tests: texts, the plain-transformers reference, the child
processes some tests need (a live `classifyd serve`, a `classifyd classify` to kill), started
early, as tests/reliability starts its servers (children, not threads: no server thread may
format a traceback in pytest's process), and `classify_cli` to run the command in this one."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cli.main import main
from tests.builders import sentences
from tests.server.reference import reference_probs

REPO = Path(__file__).resolve().parents[2]
# Test runs share two cores with each other: one torch thread each, no spinning OpenMP.
QUIET = ["--num-threads", "1"]


def child_env() -> dict[str, str]:
    # Every flag also reads CLASSIFYD_<FLAG>: none from the caller's environment may leak.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSIFYD_")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def texts() -> list[str]:
    # Lengths from 1 to 60 words (3 to ~70 tokens), so batches pad.
    return sentences(60, seed=4)


@pytest.fixture(scope="session")
def reference(bert_dir: Path, texts: list[str]) -> list[list[float]]:
    return reference_probs(bert_dir, texts)


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]


def spawn(argv: list[str], log: Path, stdin: int | None = None) -> Child:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", *argv],
            cwd=REPO, env=child_env(), stdin=stdin, stdout=out, stderr=out,
        )  # fmt: skip
    return Child(proc, log)


# The child processes the selected tests use, by fixture name.
CHILDREN = ("live_server", "stalled_run")


@pytest.fixture(scope="session", autouse=True)
def children(
    request: pytest.FixtureRequest, bert_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Child]]:
    """Start, once, the child processes the selected tests need, so their seconds of torch
    import and model loading overlap the tests that run in this process."""
    wanted = {
        name
        for item in request.session.items
        for name in CHILDREN
        if name in getattr(item, "fixturenames", ())
    }
    root = tmp_path_factory.mktemp("children")
    started: dict[str, Child] = {}
    if "live_server" in wanted:
        port = free_port()
        started["live_server"] = spawn(
            ["serve", "--model", str(bert_dir), "--port", str(port), *QUIET,
             "--log-level", "warning"],
            root / "server.log",
        )  # fmt: skip
        started["live_server"].log.with_suffix(".port").write_text(str(port))
    if "stalled_run" in wanted:
        # Reads stdin, which the test feeds (and never closes) before killing it. One prompt
        # per forward, so rows are still in flight when the kill comes.
        started["stalled_run"] = spawn(
            ["classify", "--model", str(bert_dir), "-", "-o", str(root / "stalled.jsonl"),
             "--max-num-seqs", "1", "--batch-size", "4", *QUIET],
            root / "stalled.log",
            stdin=subprocess.PIPE,
        )  # fmt: skip
    try:
        yield started
    finally:
        for child in started.values():
            child.proc.kill()
            child.proc.wait(10)


@pytest.fixture(scope="session")
def live_server(children: dict[str, Child]) -> str:
    """`classifyd serve` on the tiny BERT (a child process), once it answers /health."""
    child = children["live_server"]
    url = f"http://127.0.0.1:{child.log.with_suffix('.port').read_text()}"
    deadline = time.monotonic() + 120
    while True:
        if child.proc.poll() is not None:
            raise RuntimeError(f"classifyd exited: {child.tail()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url
        if time.monotonic() > deadline:
            raise RuntimeError(f"classifyd did not start: {child.tail()}")
        time.sleep(0.1)


@pytest.fixture
def stalled_run(children: dict[str, Child]) -> Child:
    """`classifyd classify - -o …/stalled.jsonl`, started early, waiting on its stdin."""
    return children["stalled_run"]


@dataclass
class Run:
    status: int
    stderr: str


@pytest.fixture
def classify_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Run]]:
    """Run `classifyd classify ARGS` in this process; gives (exit status, stderr)."""
    for name in list(os.environ):
        if name.startswith("CLASSIFYD_"):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    def run(*args: str) -> Run:
        capsys.readouterr()
        try:
            status = main(["classify", *args])
        finally:
            # The command sets up logging for a CLI process; give pytest its own back.
            root.handlers[:], level = saved
            root.setLevel(level)
        return Run(status, capsys.readouterr().err)

    yield run
