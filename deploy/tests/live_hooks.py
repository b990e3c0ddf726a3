"""--fault-hook for the live scale-out test: make one request slow on purpose.

A batch holding a prompt with MARKER_COUNT copies of MARKER_ID (sent as token ids; no real
text comes close) stalls STALL_SECONDS before its forward. The test sends one such request to
a replica and then drains it, so the drain has admitted work to wait for, deterministically.
"""

from __future__ import annotations

import time

MARKER_ID = 7
MARKER_COUNT = 48
STALL_SECONDS = 3.0


def stall_on_marker(batch: list[list[int]]) -> None:
    if any(row.count(MARKER_ID) >= MARKER_COUNT for row in batch):
        time.sleep(STALL_SECONDS)
