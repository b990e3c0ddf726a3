"""Fault hooks for live classifyd servers: `--fault-hook tests.reliability.faults:NAME`.

The server calls the hook in its worker thread with each batch's token ids, just before the
forward (engine/worker.py); what the hook raises fails that batch as the model would.

`chaos` is steered by a JSON control file named by $RELIABILITY_FAULTS, re-read on every
batch, so one server can be reconfigured between tests (the test writes it atomically):

    record       path of a JSON-lines file: one line per hook call, written on entry,
                 {"t": time, "rows": ids, "outcome": "ok" | "fail" | "oom" | "kill"}
    sleep        seconds to sleep on every batch
    hold         true: every batch waits while `hold_file` exists
    hold_marker  token id: batches holding it wait while `hold_file` exists
    hold_file    the file whose existence holds the worker (at most `hold_max` s, default 30)
    fail_marker  token id: batches holding it raise RuntimeError (a model failure: 500)
    oom_rows     batches of more rows than this raise MemoryError("out of memory")
    kill_marker  token id: batches holding it raise WorkerKilled, a BaseException that ends
                 the worker thread (after the hold, if the batch is also held)

`slow` sleeps $RELIABILITY_SLOW_S seconds (default 0.5) per batch, and records batches to
$RELIABILITY_RECORD when it is set.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

CONTROL_ENV = "RELIABILITY_FAULTS"
SLOW_ENV = "RELIABILITY_SLOW_S"
RECORD_ENV = "RELIABILITY_RECORD"

_lock = threading.Lock()


class WorkerKilled(BaseException):
    """Not an Exception: the worker does not catch it per batch, so its thread ends."""


class InjectedFailure(RuntimeError):
    """A model failure on purpose."""


def _control() -> dict[str, Any]:
    path = os.environ.get(CONTROL_ENV)
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            control: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return {}
    return control


def _record(path: str | None, rows: list[list[int]], outcome: str) -> None:
    if not path:
        return
    line = json.dumps({"t": time.time(), "rows": rows, "outcome": outcome}) + "\n"
    with _lock, open(path, "a", encoding="utf-8") as f:
        f.write(line)


def _contains(rows: list[list[int]], token: Any) -> bool:
    return token is not None and any(token in row for row in rows)


def _hold(hold_file: str | None, limit: float) -> None:
    if not hold_file:
        return
    deadline = time.monotonic() + limit
    while os.path.exists(hold_file) and time.monotonic() < deadline:
        time.sleep(0.005)


def chaos(ids: list[list[int]]) -> None:
    control = _control()
    rows = [list(row) for row in ids]
    if _contains(rows, control.get("kill_marker")):
        outcome = "kill"
    elif _contains(rows, control.get("fail_marker")):
        outcome = "fail"
    elif control.get("oom_rows") is not None and len(rows) > int(control["oom_rows"]):
        outcome = "oom"
    else:
        outcome = "ok"
    _record(control.get("record"), rows, outcome)
    if control.get("hold") or _contains(rows, control.get("hold_marker")):
        _hold(control.get("hold_file"), float(control.get("hold_max", 30.0)))
    if control.get("sleep"):
        time.sleep(float(control["sleep"]))
    if outcome == "kill":
        raise WorkerKilled("injected worker death")
    if outcome == "fail":
        raise InjectedFailure(f"injected failure on a batch of {len(rows)}")
    if outcome == "oom":
        raise MemoryError(f"out of memory (injected) on a batch of {len(rows)}")


def slow(ids: list[list[int]]) -> None:
    _record(os.environ.get(RECORD_ENV), [list(row) for row in ids], "ok")
    time.sleep(float(os.environ.get(SLOW_ENV, "0.5")))


def read_record(path: Path) -> list[dict[str, Any]]:
    """The batches recorded so far (a line still being written is left out)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n")[:-1] if line]
