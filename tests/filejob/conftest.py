"""Fixtures for `classifyd classify`: the child processes some tests need (a live
`classifyd serve`, a `classifyd classify` to kill), started early, and `classify_cli` to run
the command in this process."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.main import main
from tests import live

# Test runs share two cores with each other: one torch thread each, no spinning OpenMP.
QUIET = ["--num-threads", "1"]

# The child processes the selected tests use, by fixture name.
CHILDREN = ("live_server", "stalled_run")


@pytest.fixture(scope="session", autouse=True)
def children(
    request: pytest.FixtureRequest, bert_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, live.Child]]:
    """Start, once, the child processes the selected tests need, so their seconds of torch
    import and model loading overlap the tests that run in this process."""
    wanted = {
        name
        for item in request.session.items
        for name in CHILDREN
        if name in getattr(item, "fixturenames", ())
    }
    root = tmp_path_factory.mktemp("children")
    started: dict[str, live.Child] = {}
    if "live_server" in wanted:
        started["live_server"] = live.serve(
            ["--model", str(bert_dir), *QUIET, "--log-level", "warning"], root / "server.log"
        )
    if "stalled_run" in wanted:
        # Reads stdin, which the test feeds (and never closes) before killing it. One prompt
        # per forward, so rows are still in flight when the kill comes.
        started["stalled_run"] = live.spawn(
            ["cli", "classify", "--model", str(bert_dir), "-", "-o", str(root / "stalled.jsonl"),
             "--max-num-seqs", "1", "--batch-size", "4", *QUIET],
            root / "stalled.log",
            stdin=subprocess.PIPE,
        )  # fmt: skip
    try:
        yield started
    finally:
        live.stop(*started.values())


@pytest.fixture(scope="session")
def live_server(children: dict[str, live.Child]) -> str:
    """`classifyd serve` on the tiny BERT (a child process), once it answers /health."""
    server = children["live_server"]
    assert isinstance(server, live.Server)
    return server.wait_ready(120).url


@pytest.fixture
def stalled_run(children: dict[str, live.Child]) -> live.Child:
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
