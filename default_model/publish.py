"""Where the built model lives and how it gets there safely.

The cache location, the completion marker (written last, so a directory is either complete or
ignored), the file lock that makes concurrent servers build once, and the atomic publish of a
finished staging directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from default_model.errors import DefaultModelError
from default_model.progress import log
from default_model.recipe import DEFAULT_MODEL_DIRNAME, DEFAULT_MODEL_NAME, BuildReport

MARKER_FILE = "classifyd-build.json"
MARKER_FORMAT = 1
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def classifyd_home() -> Path:
    """$CLASSIFYD_HOME, else $XDG_CACHE_HOME/classifyd, else ~/.cache/classifyd."""
    home = os.environ.get("CLASSIFYD_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says to ignore relative values.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "classifyd"
    return Path.home() / ".cache" / "classifyd"


def default_model_dir() -> Path:
    return classifyd_home() / "models" / DEFAULT_MODEL_DIRNAME


def is_complete(model_dir: Path) -> bool:
    """True only for a directory whose build finished: marker present and every file intact.

    The marker is written last and records each file's size, so a crash mid-write, a deleted
    file or a truncated copy all read as incomplete.
    """
    try:
        marker = json.loads((model_dir / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
        return False
    sizes = marker.get("files")
    if not isinstance(sizes, dict) or not all(name in sizes for name in REQUIRED_FILES):
        return False
    for name, size in sizes.items():
        path = model_dir / str(name)
        try:
            if not path.is_file() or path.stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def read_report(model_dir: Path) -> BuildReport | None:
    """The report stored in a complete build's marker, or None."""
    if not is_complete(model_dir):
        return None
    try:
        marker = json.loads((model_dir / MARKER_FILE).read_text(encoding="utf-8"))
        return BuildReport.from_dict(marker["report"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def build_lock(output: Path, progress: bool) -> Iterator[None]:
    """Hold the exclusive lock on building `output`, waiting for another process's build."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if sys.platform == "win32":
        # No flock on Windows; concurrent first starts there may build twice (still atomic).
        yield
        return
    import fcntl

    lock_path = output.parent / f".{output.name}.lock"
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(progress, f"another process is building {output}; waiting for it")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remove_leftovers(output: Path) -> None:
    """Delete temp and replaced dirs of builds that died; only safe while holding the lock."""
    for pattern in (f".{output.name}.tmp-*", f".{output.name}.old-*"):
        for path in output.parent.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


def make_staging_dir(output: Path) -> Path:
    """A new, empty dir to build in, next to `output` so that publishing is a rename, never a
    copy; `remove_leftovers` knows its name pattern."""
    staging = output.parent / f".{output.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Directory fsync makes the renames durable; some filesystems refuse it, which is harmless.
    with contextlib.suppress(OSError):
        _fsync_path(path)


def write_marker(staging: Path, report: BuildReport) -> None:
    """fsync every file, then write the marker last: its presence means the rest is on disk."""
    sizes: dict[str, int] = {}
    for path in sorted(staging.iterdir()):
        if path.is_file():
            # safetensors writes 0600; servers running as another user must still read it.
            path.chmod(0o644)
            _fsync_path(path)
            sizes[path.name] = path.stat().st_size
    missing = [name for name in REQUIRED_FILES if name not in sizes]
    if missing:
        raise DefaultModelError(f"the build did not write {missing}")
    marker = {
        "format": MARKER_FORMAT,
        "model_name": DEFAULT_MODEL_NAME,
        "files": sizes,
        "report": report.to_dict(),
    }
    marker_path = staging / MARKER_FILE
    with open(marker_path, "w", encoding="utf-8") as handle:
        json.dump(marker, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(staging)


def publish(staging: Path, output: Path) -> None:
    """Move a finished staging dir to `output`, replacing what is there, as atomically as POSIX
    allows: a reader sees the old dir, no dir, or the new one, never a mix."""
    old: Path | None = None
    if output.exists() or output.is_symlink():
        old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(output, old)
    os.replace(staging, output)
    _fsync_dir(output.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
