"""Side-by-side comparison: the in-process ceiling, classifyd and the naive baseline.

    python -m bench.compare --model DIR [--seconds 15] [--out bench/results]

Runs, one after the other on 127.0.0.1: the ceiling (bench/ceiling.py), classifyd, then the
baseline (bench/baseline_server.py), each server under the same load points — concurrency 1,
8, 32 and 64 with one text per request, 4 clients × 32 texts, and the long-tail mix at
concurrency 64 — and writes a results table (markdown and JSON) with the exact command,
versions, model and machine.

This machine's speed drifts by ±20 % from minute to minute (other tenants), so the ceiling is
measured again right before and right after each classifyd load point (a shorter run of the
same script), and each point's "× ceiling" is against the mean of the two; so is concurrency
1's latency against the single-text forward. The full ceiling at the start gives the bare
model's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.ceiling import peak_rss_mb
from bench.loadgen import run_load
from bench.texts import MIXES

# (name, mix, clients, texts per request)
LOAD_POINTS = [
    ("c1", "short", 1, 1),
    ("c8", "short", 8, 1),
    ("c32", "short", 32, 1),
    ("c64", "short", 64, 1),
    ("4x32", "short", 4, 32),
    ("longtail-c64", "longtail", 64, 1),
]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start(cmd: list[str], url: str, timeout: float = 300) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _metric_sums(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    wanted = ("classifyd_batch_padded_tokens_sum", "classifyd_batch_real_tokens_sum",
              "classifyd_batch_size_sum", "classifyd_batch_size_count")  # fmt: skip
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            out[name] = float(value)
    return out


def _run_points(
    url: str,
    pid: int,
    seconds: float,
    num_texts: int,
    classifyd: bool,
    ceiling_now: Callable[[str], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    rows = []
    for name, mix, clients, per_request in LOAD_POINTS:
        texts = MIXES[mix](num_texts, 0)
        # The server idles meanwhile (no load, nothing queued): the ceiling has the cores.
        # Measured right before and right after the point: the machine drifts within minutes.
        ceiling_before = ceiling_now(mix) if ceiling_now is not None else None
        before = _metric_sums(url) if classifyd else {}
        result = asyncio.run(
            run_load(
                url, texts, clients=clients, texts_per_request=per_request, seconds=seconds,
                server_pid=pid, warmup_requests=2,
            )
        )  # fmt: skip
        ceiling_after = ceiling_now(mix) if ceiling_now is not None else None
        row = {"point": name, "mix": mix, **result.row()}
        if ceiling_before is not None and ceiling_after is not None:
            before_s, after_s = ceiling_before["texts_per_s"], ceiling_after["texts_per_s"]
            row["ceiling_before"], row["ceiling_after"] = before_s, after_s
            row["ceiling_texts_per_s"] = (before_s + after_s) / 2
            # The latency target's floor, from the same two minutes.
            row["single_forward_ms_p50"] = (
                ceiling_before["single_forward_ms_p50"] + ceiling_after["single_forward_ms_p50"]
            ) / 2
        if classifyd:
            after = _metric_sums(url)
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            real = delta.get("classifyd_batch_real_tokens_sum", 0)
            batches = delta.get("classifyd_batch_size_count", 0)
            row["padded_over_real"] = (
                delta.get("classifyd_batch_padded_tokens_sum", 0) / real if real else None
            )
            row["mean_batch_size"] = (
                delta.get("classifyd_batch_size_sum", 0) / batches if batches else None
            )
        rows.append(row)
        print(f"  {name}: {row['texts_per_s']:.1f} texts/s, p50 {row['p50_ms']:.1f} ms", flush=True)
    return rows


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for pkg in (
        "torch",
        "transformers",
        "tokenizers",
        "uvicorn",
        "starlette",
        "msgspec",
        "classifyd",
    ):
        try:
            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = "?"
    return out


def _machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--num-texts", type=int, default=2048)
    p.add_argument("--threads", type=int, default=None, help="torch threads for all three")
    p.add_argument("--out", default="bench/results")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("classifyd_args", nargs="*", help="extra `classifyd serve` flags after --")
    args = p.parse_args()
    threads = args.threads or os.cpu_count() or 1
    py = sys.executable
    report: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in [py, "-m", "bench.compare", *sys.argv[1:]]),
        "model": args.model,
        "machine": _machine(),
        "versions": _versions(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds_per_point": args.seconds,
    }

    def run_ceiling(mix: str, num_texts: int, repeats: int) -> dict[str, Any]:
        out = subprocess.run(
            [py, "-m", "bench.ceiling", "--model", args.model, "--mix", mix,
             "--num-texts", str(num_texts), "--threads", str(threads),
             "--repeats", str(repeats)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    def ceiling_now(mix: str) -> dict[str, Any]:
        result = run_ceiling(mix, 512, 1)
        print(f"  ceiling now ({mix}): {result['texts_per_s']:.1f} texts/s", flush=True)
        return result

    print("ceiling (in-process, length-sorted batches of 32)", flush=True)
    ceiling = {}
    for mix in ("short", "longtail"):
        ceiling[mix] = run_ceiling(mix, 1024, 2)
        print(f"  {mix}: {ceiling[mix]['texts_per_s']:.1f} texts/s", flush=True)
    report["ceiling"] = ceiling

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [
        py, "-m", "server", "serve", "--model", args.model, "--port", str(port),
        "--num-threads", str(threads), "--log-level", "warning", *args.classifyd_args,
    ]  # fmt: skip
    report["classifyd_command"] = " ".join(serve)
    print("classifyd", flush=True)
    proc = _start(serve, url)
    try:
        report["classifyd"] = _run_points(
            url, proc.pid, args.seconds, args.num_texts, True, ceiling_now
        )
        report["classifyd_peak_rss_mb"] = peak_rss_mb(proc.pid)
    finally:
        _stop(proc)

    if not args.skip_baseline:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        base = [py, "-m", "bench.baseline_server", "--model", args.model, "--port", str(port),
                "--threads", str(threads)]  # fmt: skip
        print("baseline (transformers pipeline, one request at a time)", flush=True)
        proc = _start(base, url)
        try:
            report["baseline"] = _run_points(url, proc.pid, args.seconds, args.num_texts, False)
            report["baseline_peak_rss_mb"] = peak_rss_mb(proc.pid)
        finally:
            _stop(proc)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(report, indent=2))
    (out_dir / "latest.md").write_text(render_markdown(report))
    print(render_markdown(report))


def render_markdown(report: dict[str, Any]) -> str:
    ceiling = report["ceiling"]
    base = {r["point"]: r for r in report.get("baseline", [])}
    lines = [
        f"Measured {report['date']} on {report['machine']}; model `{report['model']}`; "
        f"{report['seconds_per_point']:.0f} s per point.",
        "",
        f"Command: `{report['command']}`",
        "",
        "In-process ceiling (length-sorted batches of 32, forward only), at the start: "
        + ", ".join(f"{m} {c['texts_per_s']:.1f} texts/s" for m, c in ceiling.items())
        + f"; single-text forward p50 {ceiling['short']['single_forward_ms_p50']:.1f} ms. "
        "Each point's × ceiling is against the mean of the ceilings measured right before and "
        "right after it (its column, with both readings).",
        "",
        "| load point | classifyd texts/s | ceiling around (before / after) | × ceiling | "
        "baseline texts/s | × baseline | classifyd p50 / p99 ms | baseline p50 / p99 ms | "
        "padded / real | mean batch | classifyd CPU cores | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["classifyd"]:
        b = base.get(row["point"])
        ceil = row.get("ceiling_texts_per_s") or ceiling[row["mix"]]["texts_per_s"]
        cells = [
            row["point"],
            f"{row['texts_per_s']:.1f}",
            f"{ceil:.1f} ({row['ceiling_before']:.0f} / {row['ceiling_after']:.0f})"
            if "ceiling_before" in row
            else f"{ceil:.1f}",
            f"{row['texts_per_s'] / ceil:.2f}",
            f"{b['texts_per_s']:.1f}" if b else "–",
            f"{row['texts_per_s'] / b['texts_per_s']:.2f}" if b and b["texts_per_s"] else "–",
            f"{row['p50_ms']:.1f} / {row['p99_ms']:.1f}",
            f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f}" if b else "–",
            f"{row['padded_over_real']:.2f}" if row.get("padded_over_real") else "–",
            f"{row['mean_batch_size']:.1f}" if row.get("mean_batch_size") else "–",
            str(row["server_cpu_cores"]),
            str(row["errors"] or 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    c1 = next((r for r in report["classifyd"] if r["point"] == "c1"), None)
    if c1 is not None and c1.get("single_forward_ms_p50"):
        lines.append(
            f"Concurrency 1: p50 {c1['p50_ms']:.1f} ms against a single-text forward of "
            f"{c1['single_forward_ms_p50']:.1f} ms (p50, the mean of the readings before and "
            "after the point)."
        )
        lines.append("")
    lines.append(
        f"Peak memory: classifyd {report.get('classifyd_peak_rss_mb', 0):.0f} MB, baseline "
        f"{report.get('baseline_peak_rss_mb', 0):.0f} MB, bare model process (ceiling) "
        f"{ceiling['short']['peak_rss_mb']:.0f} MB."
    )
    lines.append("")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
