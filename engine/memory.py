"""Process-wide memory settings for serving on CPU.

glibc gives every thread that allocates its own malloc arena and keeps what a big batch
freed inside it; with two model workers plus the tokenizer and event-loop threads, that
fragmentation raises peak memory. One arena costs no speed: torch allocates a few hundred
blocks per forward, too few for one arena's lock to contend.

Freed memory also stays in the arena as holes between live blocks, which batches of other
shapes cannot always reuse, so a serving process grows over mixed loads.
`release_free_memory()`, called by the workers after each batch, hands those pages back
(malloc_trim), but only once resident memory has grown by GROWTH_BYTES since the last trim
left it, and it looks at most once a second: trimming whenever it looks would also give back
the batches' own working set, which they would then fault back in.
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


# Resident growth over what the last trim left that makes the next look trim: above one
# batch's working set (~55 MB for 32 short texts through MiniLM-L6), so a steady load does
# not fault its own pages back in every second.
GROWTH_BYTES = 128 << 20


def resident_bytes() -> int | None:
    """This process's resident set size (Linux /proc), or None where there is none."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _Trim:
    """malloc_trim once resident memory grew, looked at most once per interval, from
    whichever worker thread asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._floor: int | None = None  # resident bytes the last trim left
        self._trim: Callable[..., int] | None = None
        self._resolved = False

    def __call__(self, min_interval: float, growth: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last < min_interval:
                return False
            self._last = now
            if not self._resolved:
                self._trim, self._resolved = _libc_function("malloc_trim"), True
            trim = self._trim
            if trim is None:
                return False
            resident = resident_bytes()
            floor = self._floor
            if resident is not None and floor is not None and resident - floor < growth:
                return False
        # Outside the lock: the other worker's check must not wait for the trim. No other
        # trim can start before min_interval passes, so the floor is this one's to set.
        trim(0)
        self._floor = resident_bytes()
        return True


_trim = _Trim()


def release_free_memory(min_interval: float = 1.0, growth: int = GROWTH_BYTES) -> bool:
    """Give freed heap pages back to the OS (glibc's malloc_trim) if resident memory grew by
    `growth` bytes since the last trim; look at most once per `min_interval` seconds. True
    when it trimmed; False where there is no glibc."""
    return _trim(min_interval, growth)


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
