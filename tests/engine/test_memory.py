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
    assert release_free_memory(min_interval=0.0) is True
    # Called again at once with a long interval: nothing done.
    assert release_free_memory(min_interval=3600.0) is False
    assert release_free_memory(min_interval=0.0) is True
