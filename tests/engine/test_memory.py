from __future__ import annotations

import subprocess
import sys

import pytest

from engine.memory import limit_malloc_arenas, release_free_memory


def test_an_explicit_malloc_arena_max_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_cap_in_a_fresh_process() -> None:
    code = "from engine.memory import limit_malloc_arenas as f; print(f())"
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_free_memory_is_released_at_most_once_per_interval() -> None:
    assert release_free_memory(min_interval=0.0, growth=0) is True
    # Called again at once with a long interval: nothing done.
    assert release_free_memory(min_interval=3600.0, growth=0) is False
    assert release_free_memory(min_interval=0.0, growth=0) is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim, /proc")
def test_free_memory_is_released_only_after_resident_memory_grew() -> None:
    # Run in a fresh process: the trim state is per process, and the heap is this test's own.
    code = """
from engine.memory import release_free_memory as release, resident_bytes
assert release(min_interval=0.0, growth=0)  # sets the floor
assert not release(min_interval=0.0, growth=64 << 20)  # nothing grew
blocks = [bytearray(1 << 16) for _ in range(2048)]  # 128 MiB in heap-sized blocks
keep = blocks[::64]
del blocks
grown = resident_bytes()
assert release(min_interval=0.0, growth=64 << 20), "grew by 128 MiB and not trimmed"
assert resident_bytes() < grown - (64 << 20), (grown, resident_bytes())
print("ok", len(keep))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")
