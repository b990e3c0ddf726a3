"""Process-wide memory settings for serving on CPU.

glibc gives every thread that allocates its own malloc arena and keeps what a big batch
freed inside it. With two model workers plus the tokenizer and event-loop threads that
fragmentation cost 70 MB of peak memory on the long-tail mix (817 → 750 MB, MiniLM-L6,
bench/README.md), with no measurable change in speed: torch allocates a few hundred blocks
per forward, too few for one arena's lock to contend.

Freed memory also stays in that arena as holes between live blocks, which batches of other
shapes cannot always reuse: the serving process grew from 600 to 860–930 MB over the bench
load points. `release_free_memory()`, called by the workers after each batch and acting at
most once a second, hands those pages back (malloc_trim): peak 863 → 783 MB over the same
points, speed unchanged. After every batch it was 703 MB but 7–18 % slower (pages faulted
back in); a fixed 4 MiB mmap threshold was 731 MB and 24 % slower at 4 × 32
(bench/README.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("classifyd.memory")

_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # find_library runs ldconfig in a subprocess: once per process.
    found = ctypes.util.find_library("c")
    if found is None:
        return None
    try:
        return ctypes.CDLL(found)
    except OSError:
        return None


def _libc_function(name: str) -> Callable[..., int] | None:
    libc = _libc()
    try:
        function: Callable[..., int] = getattr(libc, name)
    except AttributeError:  # no libc, or musl / macOS: no such glibc call, nothing to tune
        return None
    return function


class _Trim:
    """malloc_trim, at most once per interval, from whichever worker thread asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._trim: Callable[..., int] | None = None
        self._resolved = False

    def __call__(self, min_interval: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last < min_interval:
                return False
            self._last = now
            if not self._resolved:
                self._trim, self._resolved = _libc_function("malloc_trim"), True
        if self._trim is None:
            return False
        self._trim(0)
        return True


_trim = _Trim()


def release_free_memory(min_interval: float = 1.0) -> bool:
    """Give freed heap pages back to the OS (glibc's malloc_trim), unless it was done less
    than `min_interval` seconds ago. True when it trimmed; False where there is no glibc."""
    return _trim(min_interval)


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Cap glibc's malloc arenas for threads started from now on. Call before any worker
    thread starts. Leaves an explicit MALLOC_ARENA_MAX alone; False where there is no glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    ok = bool(mallopt(_M_ARENA_MAX, arenas))
    if not ok:
        logger.debug("mallopt(M_ARENA_MAX, %d) was refused", arenas)
    return ok
