"""What a result was measured on: the machine and the versions of what ran."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version

# The packages whose versions a result names: the model's stack, the server's, and ours.
_PACKAGES = ("torch", "transformers", "tokenizers", "uvicorn", "starlette", "msgspec", "classifyd")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "?"
    return out


def describe_machine() -> str:
    """CPU model, core count, OS and architecture, in one line."""
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"
