"""Process-wide memory settings for serving on CPU.

glibc gives every thread that allocates its own malloc arena and keeps what a big batch
freed inside it. With two model workers plus the tokenizer and event-loop threads that
fragmentation cost 70 MB of peak memory on the long-tail mix (817 → 750 MB, MiniLM-L6,
bench/README.md), with no measurable change in speed: torch allocates a few hundred blocks
per forward, too few for one arena's lock to contend.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger("classifyd.memory")

_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Cap glibc's malloc arenas for threads started from now on. Call before any worker
    thread starts. Leaves an explicit MALLOC_ARENA_MAX alone; False where there is no glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt, nothing to tune
        return False
    ok = bool(mallopt(_M_ARENA_MAX, arenas))
    if not ok:
        logger.debug("mallopt(M_ARENA_MAX, %d) was refused", arenas)
    return ok
