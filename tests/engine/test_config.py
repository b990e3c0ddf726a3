"""EngineConfig: the default torch thread count follows the CPUs a container may really
use; values outside a Literal's are refused with the allowed ones named."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import EngineConfig, _cgroup_quota


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert _cgroup_quota(str(tmp_path)) == 2.5


def test_cgroup_v2_without_limit(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_quota(str(tmp_path)) is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_quota(str(tmp_path)) == 1.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _cgroup_quota(str(tmp_path)) is None


def test_no_cgroup_files(tmp_path: Path) -> None:
    assert _cgroup_quota(str(tmp_path)) is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("dtype", "dtype must be auto, float32, bfloat16 or float16, got fp8"),
        ("quantization", "quantization must be none or int8, got fp8"),
    ],
)
def test_choices_are_checked(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EngineConfig(model="m", **{name: "fp8"})  # type: ignore[arg-type]
