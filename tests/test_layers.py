"""The packages' layering ([tool.importlinter] in pyproject.toml), checked by `lint-imports`.

The contracts run as CI runs them; planted contracts that today's code must break show that
the check sees direct, lazy (in-function), indirect and third-party imports, so that it cannot
pass by seeing nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _config() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        section: dict[str, Any] = tomllib.load(f)["tool"]["importlinter"]
    return section


def _lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    command = str(exe) if exe.exists() else shutil.which("lint-imports")
    assert command, "lint-imports is not installed (pip install -e '.[dev]')"
    # Wide enough that rich does not wrap a contract's name away from its KEPT / BROKEN.
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run(
        [command, "--no-logo", "--no-cache", *args],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_the_layering_contracts_are_kept() -> None:
    done = _lint_imports()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(_config()['contracts'])} kept, 0 broken" in done.stdout


def test_every_package_but_the_cli_has_a_contract() -> None:
    config = _config()
    sources = {m for c in config["contracts"] for m in c["source_modules"]}
    # The CLI may import anything; every other package says what it must not import.
    assert sources == set(config["root_packages"]) - {"cli"}


def test_a_broken_contract_is_reported(tmp_path: Path) -> None:
    planted = {
        # A direct import at module level: server/app.py imports engine.
        "direct": ("server", "engine"),
        # Only inside a function: offline/classifier.py's resolve_model.
        "lazy": ("offline", "default_model"),
        # Only through another package: filejob -> client -> protocol.
        "indirect": ("filejob", "protocol"),
        # A third-party package, as the client's no-torch contract needs: the client's httpx.
        "external": ("client", "httpx"),
    }
    lines = [
        "[tool.importlinter]",
        "root_packages = [" + ", ".join(f'"{p}"' for p in _config()["root_packages"]) + "]",
        "include_external_packages = true",
    ]
    for name, (source, forbidden) in planted.items():
        lines += [
            "[[tool.importlinter.contracts]]",
            f'name = "planted {name}"',
            'type = "forbidden"',
            f'source_modules = ["{source}"]',
            f'forbidden_modules = ["{forbidden}"]',
        ]
    config = tmp_path / "planted.toml"
    config.write_text("\n".join(lines) + "\n")
    done = _lint_imports(str(config))
    assert done.returncode == 1, done.stdout + done.stderr
    for name in planted:
        assert f"planted {name} BROKEN" in done.stdout, done.stdout
    assert f"0 kept, {len(planted)} broken" in done.stdout
