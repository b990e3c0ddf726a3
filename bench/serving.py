"""A server under measurement: a free port, starting it and waiting until healthy, stopping it,
and the batch means its Prometheus metrics give over a load point."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import httpx

# The sums and counts of classifyd's batch histograms that a load point's means come from.
_BATCH_SUMS = (
    "classifyd_batch_padded_tokens_sum",
    "classifyd_batch_real_tokens_sum",
    "classifyd_batch_size_sum",
    "classifyd_batch_size_count",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(
    cmd: list[str], url: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Runs `cmd` (in `env`, else this process's environment) and returns once `url`/health
    answers 200; its stderr is kept for the error raised when it exits first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:4]} exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"{cmd[:4]} did not become healthy")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (the server drains and exits), then a kill if it has not within 30 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def metric_sums(url: str) -> dict[str, float]:
    """The batch histograms' sums and counts now; two readings around a load point give its
    means (`batch_means`)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in _BATCH_SUMS:
            out[name] = float(value)
    return out


def batch_means(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """Padded over real tokens and the mean batch size between two `metric_sums` readings;
    None where no batch (or no token) ran."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    real = delta.get("classifyd_batch_real_tokens_sum", 0)
    batches = delta.get("classifyd_batch_size_count", 0)
    return {
        "padded_over_real": (
            delta.get("classifyd_batch_padded_tokens_sum", 0) / real if real else None
        ),
        "mean_batch_size": delta.get("classifyd_batch_size_sum", 0) / batches if batches else None,
    }
