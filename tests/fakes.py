"""FakeRunner: a ModelRunner with deterministic logits and knobs to delay, hold or fail a batch.

The logits row of a prompt is computed from its token ids, so a result names its prompt:
`[sum(ids) % 7, len(ids), ids[0]]`. Every batch the fake sees is recorded (thread-safe).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.config import EngineConfig
from engine.model.runner import ModelInfo

FailRule = Callable[[list[list[int]]], bool]


def fake_logits(ids: Sequence[int]) -> list[float]:
    """The row FakeRunner returns for one prompt."""
    return [float(sum(ids) % 7), float(len(ids)), float(ids[0])]


class FakeRunner:
    """Implements engine.model.runner.ModelRunner without torch (is_async=False)."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        gate: threading.Event | None = None,
        fail: FailRule | None = None,
        vocab_size: int = 1000,
        max_position_len: int | None = 128,
        labels: tuple[str, ...] = ("a", "b", "c"),
        packed: bool = False,
    ) -> None:
        self.is_async = False
        self.delay = delay
        # When set, every forward waits until the gate is open (tests hold the worker busy).
        self.gate = gate
        # A batch for which fail(ids) is true raises RuntimeError instead of returning logits.
        self.fail = fail
        self.info = ModelInfo(
            labels=labels,
            problem_type=None,
            max_position_len=max_position_len,
            vocab_size=vocab_size,
            dtype="float32",
            device="cpu",
            model_type="fake",
            architecture="FakeForSequenceClassification",
            packed=packed,
        )
        self._lock = threading.Lock()
        self._batches: list[list[list[int]]] = []
        self._entered = 0
        self.loaded = False
        self.closed = False
        # Every forward: (worker thread, its torch threads, forwards running at once, rows).
        self.launches: list[tuple[str, int | None, int, int]] = []
        self.changes_while_busy = 0
        self._threads_of: dict[str, int] = {}
        # The thread counts of the forwards running now.
        self._running: list[int | None] = []

    # -- ModelRunner -------------------------------------------------------------------

    def load(self) -> ModelInfo:
        self.loaded = True
        return self.info

    def launch(self, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None) -> Any:
        rows = [list(row) for row in ids]
        name = threading.current_thread().name
        threads = self._threads_of.get(name)
        with self._lock:
            self._entered += 1
            self._running.append(threads)
            self.launches.append((name, threads, len(self._running), len(rows)))
        try:
            return self._forward(rows)
        finally:
            with self._lock:
                self._running.remove(threads)

    def _forward(self, rows: list[list[int]]) -> Any:
        if self.gate is not None and not self.gate.wait(timeout=30):
            raise RuntimeError("FakeRunner gate was never opened")
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self._batches.append(rows)
        if self.fail is not None and self.fail(rows):
            raise RuntimeError(f"fake failure on a batch of {len(rows)}")
        return [fake_logits(row) for row in rows]

    def finish(self, launched: Any) -> list[list[float]]:
        result: list[list[float]] = launched
        return result

    def set_threads(self, threads: int) -> None:
        name = threading.current_thread().name
        with self._lock:
            # torch's thread count is partly process-wide: setting one that differs from a
            # running forward's is what the scheduler must never do.
            self.changes_while_busy += any(t != threads for t in self._running)
            self._threads_of[name] = threads

    def close(self) -> None:
        self.closed = True

    # -- for tests ---------------------------------------------------------------------

    @property
    def batches(self) -> list[list[list[int]]]:
        """Every batch that passed the gate, in order (a copy)."""
        with self._lock:
            return [list(b) for b in self._batches]

    @property
    def entered(self) -> int:
        """Forwards started (including one still waiting on the gate)."""
        with self._lock:
            return self._entered

    def factory(self) -> Callable[[EngineConfig], FakeRunner]:
        """For `Engine(config, runner_factory=fake.factory())`."""
        return lambda config: self
