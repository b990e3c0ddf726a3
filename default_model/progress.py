"""Progress output of the build: one-line messages and the training bar, all on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any


def log(enabled: bool, message: str) -> None:
    if enabled:
        print(f"classifyd: {message}", file=sys.stderr, flush=True)


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """A tqdm bar on a terminal; elsewhere (logs, systemd) a line every 10 % with an ETA."""

    def __init__(self, enabled: bool, total: int, desc: str) -> None:
        self.enabled = enabled
        self.total = total
        self.desc = desc
        self.done = 0
        self.start = time.monotonic()
        self.next_decile = 1
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, leave=False)

    def update(self, loss: float) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            return
        if not self.enabled or self.done * 10 < self.next_decile * self.total:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        log(
            True,
            f"{self.desc}: {self.done}/{self.total} batches, loss {loss:.3f}, "
            f"elapsed {format_seconds(elapsed)}, ETA {format_seconds(eta)}",
        )
        while self.next_decile * self.total <= self.done * 10:
            self.next_decile += 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
