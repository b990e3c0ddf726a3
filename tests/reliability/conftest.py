"""Live classifyd servers for the reliability battery, each the real CLI in its own process.

Every server is `classifyd serve ...` (tests/live.py) with a fault hook from
tests/reliability/faults.py. The servers the collected tests need are started together once
per session (each pays a few seconds of torch import on this 2-core machine); a test waits
only for its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import live
from tests.builders import WORDS, build_model
from tests.reliability.faults import CONTROL_ENV, RECORD_ENV, SLOW_ENV, read_record
from tests.support import wait_until

LABELS = ["neg", "neu", "pos"]
HOOK = "tests.reliability.faults:chaos"
SLOW_HOOK = "tests.reliability.faults:slow"
GAUGES = (
    "classifyd_queue_waiting_sequences",
    "classifyd_admitted_sequences",
    "classifyd_running_sequences",
)


# -- the tiny BERT's vocabulary ---------------------------------------------------------


@dataclass(frozen=True)
class Vocab:
    """Token ids of the tiny WordPiece BERT (tests/builders.py). Texts made of WORDS never
    produce the `##x` continuation pieces, so those serve as markers nothing else sends."""

    ids: dict[str, int]

    @property
    def cls(self) -> int:
        return self.ids["[CLS]"]

    @property
    def sep(self) -> int:
        return self.ids["[SEP]"]

    def word(self, word: str) -> int:
        return self.ids[word]

    def marker(self, letter: str) -> int:
        return self.ids[f"##{letter}"]

    @property
    def words(self) -> list[int]:
        return [self.ids[w] for w in sorted(set(WORDS))]

    def row(self, *middle: int) -> list[int]:
        return [self.cls, *middle, self.sep]

    def body(self, n: int, offset: int) -> dict[str, Any]:
        """A /classify body of one prompt: `n` word ids from `offset` on, no special tokens."""
        words = self.words
        return {"input": [[words[(offset + i) % len(words)] for i in range(n)]]}


def vocab_of(model_dir: Path) -> Vocab:
    data = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    return Vocab(dict(data["model"]["vocab"]))


async def timed_post(client: httpx.AsyncClient, body: dict) -> tuple[httpx.Response, float]:
    """POST /classify; the response and the seconds it took."""
    began = time.monotonic()
    response = await client.post("/classify", json=body)
    return response, time.monotonic() - began


# -- one live server ----------------------------------------------------------------------


@dataclass
class LiveServer:
    """One `classifyd serve` child with its fault-hook files and its tiny BERT."""

    name: str
    server: live.Server
    control: Path
    record: Path
    hold_file: Path
    vocab: Vocab
    model_dir: Path
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.server.proc

    @property
    def log(self) -> Path:
        return self.server.log

    # -- lifecycle

    def wait_ready(self) -> LiveServer:
        self.server.wait_ready()
        return self

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=30)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    # -- faults

    def set_faults(self, **control: Any) -> None:
        """Replace the hook's control file (atomically); recording always stays on."""
        control = {"record": str(self.record), "hold_file": str(self.hold_file), **control}
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(json.dumps(control), encoding="utf-8")
        os.replace(tmp, self.control)

    def reset(self) -> None:
        """No faults, nothing held, an empty record."""
        self.release()
        self.set_faults()
        self.record.write_text("", encoding="utf-8")

    def hold(self) -> None:
        self.hold_file.write_text("held", encoding="utf-8")

    def release(self) -> None:
        self.hold_file.unlink(missing_ok=True)

    def batches(self) -> list[dict[str, Any]]:
        return read_record(self.record)

    def wait_batch(self, check: Callable[[dict[str, Any]], bool], timeout: float = 20) -> Any:
        """The first recorded batch for which `check` is true (the hook writes on entry)."""
        return wait_until(
            lambda: next((b for b in self.batches() if check(b)), None),
            timeout,
            f"a batch on {self.name}",
        )

    # -- figures

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        text = self.client.get("/metrics").text
        return [
            (s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
        return sum(
            value
            for sample, have, value in self.metrics()
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        )

    def gauges(self) -> dict[str, float]:
        samples = self.metrics()
        return {name: sum(v for s, _, v in samples if s == name) for name in GAUGES}

    def wait_gauges_zero(self, timeout: float = 15) -> None:
        last: dict[str, float] = {}

        def zero() -> bool:
            nonlocal last
            last = self.gauges()
            return all(v == 0 for v in last.values())

        try:
            wait_until(zero, timeout, "the queue/admitted/running gauges to return to 0", 0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen {last}") from None

    def wait_gauge(self, name: str, value: float, timeout: float = 20) -> None:
        wait_until(lambda: self.metric(name) == value, timeout, f"{name} == {value} on {self.name}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    # -- logs

    def log_text(self) -> str:
        return self.server.log_text()

    def tail(self, chars: int = 4000) -> str:
        return self.server.tail(chars)

    def json_logs(self) -> list[dict[str, Any]]:
        """Every JSON log line (with --log-format json); lines that are not JSON are skipped."""
        out = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def access_logs(self) -> list[dict[str, Any]]:
        return [r for r in self.json_logs() if r.get("logger") == "classifyd.access"]


# -- which servers, with which flags --------------------------------------------------------

# name → (model, extra CLI flags, extra environment)
SERVERS: dict[str, tuple[str, list[str], dict[str, str]]] = {
    # A one-label cross-encoder, so /score and /rerank do real work too (fuzzer); JSON logs.
    "chaos": (
        "cross",
        ["--served-model-name", "cross", "--log-format", "json", "--fault-hook", HOOK],
        {},
    ),
    "overload": (
        "clf",
        ["--max-concurrent-requests", "8", "--max-waiting-tokens", "100", "--fault-hook", HOOK],
        {},
    ),
    "timeout": ("clf", ["--request-timeout", "1", "--fault-hook", HOOK], {}),
    "kill": ("clf", ["--fault-hook", HOOK], {}),
    "drain": (
        "clf",
        ["--shutdown-timeout", "20", "--max-num-seqs", "2", "--fault-hook", SLOW_HOOK],
        {SLOW_ENV: "0.4"},
    ),
    "soak": ("clf", ["--log-format", "json", "--fault-hook", HOOK], {}),
    # Every forward stalls far longer than the drain may last.
    "stuck": (
        "clf",
        ["--shutdown-timeout", "2", "--max-num-seqs", "1", "--fault-hook", SLOW_HOOK],
        {SLOW_ENV: "20"},
    ),
}


def start_server(name: str, model_dir: Path, workdir: Path) -> LiveServer:
    _, flags, extra_env = SERVERS[name]
    workdir.mkdir(parents=True, exist_ok=True)
    control = workdir / "faults.json"
    record = workdir / "batches.jsonl"
    env = live.child_env(**{CONTROL_ENV: str(control), RECORD_ENV: str(record), **extra_env})
    server = LiveServer(
        name=name,
        server=live.serve(
            ["--model", str(model_dir), "--num-threads", "1", *flags], workdir / "server.log", env
        ),
        control=control,
        record=record,
        hold_file=workdir / "hold",
        vocab=vocab_of(model_dir),
        model_dir=model_dir,
    )
    server.reset()
    return server


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        "clf": build_model(tmp_path_factory.mktemp("clf"), "bert", num_labels=3, labels=LABELS),
        "cross": build_model(tmp_path_factory.mktemp("cross"), "bert", num_labels=1, seed=3),
    }


class Fleet:
    """The servers the collected tests use, all started at once."""

    def __init__(self, names: set[str], dirs: dict[str, Path], root: Path) -> None:
        self.servers = {
            name: start_server(name, dirs[SERVERS[name][0]], root / name) for name in sorted(names)
        }

    def get(self, name: str) -> LiveServer:
        return self.servers[name].wait_ready()

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        live.stop(*(server.server for server in self.servers.values()))


@pytest.fixture(scope="session")
def fleet(
    request: pytest.FixtureRequest,
    model_dirs: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    wanted = {
        name
        for item in request.session.items
        for name in SERVERS
        if f"{name}_server" in getattr(item, "fixturenames", ())
    }
    fleet = Fleet(wanted, model_dirs, tmp_path_factory.mktemp("servers"))
    try:
        yield fleet
    finally:
        fleet.close()


def _shared(fleet: Fleet, name: str) -> Iterator[LiveServer]:
    """A server shared by several tests: no faults and an idle engine before and after."""
    server = fleet.get(name)
    server.reset()
    yield server
    server.reset()
    if server.proc.poll() is None:
        server.wait_gauges_zero()


@pytest.fixture
def chaos_server(fleet: Fleet) -> Iterator[LiveServer]:
    yield from _shared(fleet, "chaos")


@pytest.fixture
def overload_server(fleet: Fleet) -> Iterator[LiveServer]:
    yield from _shared(fleet, "overload")


@pytest.fixture
def timeout_server(fleet: Fleet) -> Iterator[LiveServer]:
    yield from _shared(fleet, "timeout")


@pytest.fixture
def kill_server(fleet: Fleet) -> LiveServer:
    """Used by one test: its worker is killed."""
    return fleet.get("kill")


@pytest.fixture
def drain_server(fleet: Fleet) -> LiveServer:
    """Used by one test: it is sent SIGTERM."""
    return fleet.get("drain")


@pytest.fixture
def stuck_server(fleet: Fleet) -> LiveServer:
    """Used by one test: it is sent SIGTERM while its forward is stuck."""
    return fleet.get("stuck")


@pytest.fixture
def soak_server(fleet: Fleet) -> LiveServer:
    return fleet.get("soak")
