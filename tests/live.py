"""Live servers for tests, always in child processes on 127.0.0.1.

Children, never threads of the test process: CPython 3.11 before 3.11.8 can die when a server
thread formats a traceback (traceback calls ast.parse) while pytest formats a failure. Start
every child a test session needs before waiting on any, so their seconds of torch import
overlap on a 2-core machine.

- `serve(args, log)`: `classifyd serve ARGS`, the real CLI; `Server.wait_ready()` waits for
  /health.
- `Apps(specs, log)`: several apps built from EngineConfig/ServerConfig fields, served by ONE
  child (`python -m tests.live_child`), for options no flag spells and for many servers at
  the cost of one torch import.
- `spawn(args, log)`: any other `python -m` child (`classifyd classify`, a fake server).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 240.0
STOP_GRACE_S = 10.0


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child: no CLASSIFYD_* variable (every flag reads one,
    so none may leak in from the caller), one OpenMP thread and no tokenizer threads (test runs
    share two cores), unbuffered output so the log is current."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSIFYD_")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Child:
    """A `python -m …` child whose stdout and stderr both go to `log`."""

    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def wait_http(self, url: str, timeout: float, what: str) -> None:
        """Until GET `url` answers 200; fails with the log's tail if the child exits first or
        `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=5).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start in {timeout:g} s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        stop(self, grace=grace)


def stop(*children: Child, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM to every child still running, then SIGKILL to those not gone within `grace`
    seconds; all signalled first, so their shutdowns overlap."""
    running = [c for c in children if c.proc.poll() is None]
    for child in running:
        child.proc.terminate()
    deadline = time.monotonic() + grace
    for child in running:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait(10)


def spawn(
    args: list[str], log: Path, env: dict[str, str] | None = None, stdin: int | None = None
) -> Child:
    """`python -m ARGS` in the repository root; `env` defaults to `child_env()`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=REPO, env=child_env() if env is None else env,
            stdin=stdin, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return Child(proc, log)


@dataclass
class Server(Child):
    """`classifyd serve` in a child, on 127.0.0.1:`port`."""

    url: str
    port: int

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> Server:
        self.wait_http(f"{self.url}/health", timeout, f"classifyd at {self.url}")
        return self


def serve(args: list[str], log: Path, env: dict[str, str] | None = None) -> Server:
    """Start `classifyd serve --host 127.0.0.1 --port <free> ARGS`; it is ready once
    `wait_ready()` returns."""
    port = free_port()
    child = spawn(["cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args], log, env)
    return Server(child.proc, child.log, f"http://127.0.0.1:{port}", port)


# (EngineConfig fields, ServerConfig fields), by app name; lists become tuples in the child.
AppSpec = tuple[dict[str, Any], dict[str, Any]]
AppSpecs = dict[str, AppSpec]


class Apps:
    """Several classifyd apps in ONE child (tests/live_child.py), each on a port the child
    binds itself; `url(name)` waits until that one answers /health. Every app runs torch on
    one thread unless its spec says otherwise."""

    def __init__(self, apps: AppSpecs, log: Path) -> None:
        specs = [
            {"name": name, "engine": {"num_threads": 1, **engine}, "server": server}
            for name, (engine, server) in apps.items()
        ]
        # Every app loads a local directory: a Hub look-up could only stall.
        env = child_env(HF_HUB_OFFLINE="1")
        self.child = spawn(["tests.live_child", json.dumps(specs)], log, env)

    def url(self, name: str, timeout: float = 180) -> str:
        """The app's base URL, once its model is loaded and /health answers 200."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.child.log_text().splitlines()
            port = next((ln.split()[2] for ln in lines if ln.startswith(f"PORT {name} ")), None)
            if f"FAILED {name}" in lines or self.child.proc.poll() is not None:
                raise RuntimeError(f"classifyd {name} did not start:\n{self.child.tail()}")
            if f"READY {name}" in lines and port is not None:
                url = f"http://127.0.0.1:{port}"
                left = deadline - time.monotonic()
                self.child.wait_http(f"{url}/health", left, f"classifyd {name}")
                return url
            if time.monotonic() > deadline:
                raise RuntimeError(f"classifyd {name} did not start in time:\n{self.child.tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.child.stop()


@dataclass
class Live:
    """One app of a running Apps child, with a client on it (the suites' fixtures)."""

    url: str
    model_dir: Path
    client: httpx.Client

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, json=body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)
