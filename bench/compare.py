"""Side-by-side comparison: the in-process ceiling, classifyd and the naive baseline.

    python -m bench.compare --model DIR [--seconds 20] [--out bench/results]

Runs, one after the other on 127.0.0.1: the ceiling (bench/ceiling.py), classifyd, then the
baseline (bench/baseline_server.py), each server under the same load points — concurrency 1,
8, 32 and 64 with one text per request, 4 clients × 32 texts, and the long-tail mix at
concurrency 64 — and writes a results table (markdown and JSON) with the exact command,
versions, model and machine.

This machine's speed drifts by ±20 % from minute to minute (other tenants), so each classifyd
load point runs in slices (--slices, 5) with the ceiling read before, between and after them by
one `bench.ceiling --serve` process that keeps the model loaded; each slice is measured
against the mean of the two readings around it, and the point's "× ceiling" is the mean of its
slices'. Concurrency 1's latency is against the readings' mean single-text forward. The full
ceiling at the start, in its own process, gives the bare model's memory, and classifyd's own
forward in-process on the same batches.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.ceiling import peak_rss_mb
from bench.loadgen import run_load
from bench.machine import describe_machine, versions
from bench.serving import batch_means, free_port, metric_sums, start_server, stop_server
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


class CeilingReadings:
    """A `bench.ceiling --serve` process: the model loaded once, read on request."""

    def __init__(self, cmd: list[str]) -> None:
        self._proc = subprocess.Popen(
            [*cmd, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self._answer()  # {"ready": true} once it has loaded and warmed up

    def _answer(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench.ceiling --serve exited ({self._proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def read(self, mix: str) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(mix + "\n")
        self._proc.stdin.flush()
        result = self._answer()
        print(f"    ceiling ({mix}): {result['texts_per_s']:.1f} texts/s", flush=True)
        return result

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _run_points(
    url: str,
    pid: int,
    seconds: float,
    num_texts: int,
    classifyd: bool,
    ceiling: CeilingReadings | None = None,
    slices: int = 1,
    points: list[str] | None = None,
) -> list[dict[str, Any]]:
    rows = []
    for name, mix, clients, per_request in LOAD_POINTS:
        if points and name not in points:
            continue
        texts = MIXES[mix](num_texts, 0)
        # With the ceiling: the load runs in slices, and the ceiling is read before the
        # first, between each two (the server idles then: no load, nothing queued) and
        # after the last; each slice is measured against the two readings around it.
        readings: list[dict[str, Any]] = []
        if ceiling is not None:
            readings.append(ceiling.read(mix))

        async def between(mix: str = mix, readings: list[dict[str, Any]] = readings) -> None:
            if ceiling is not None:
                readings.append(await asyncio.to_thread(ceiling.read, mix))

        before = metric_sums(url) if classifyd else {}
        result = asyncio.run(
            run_load(
                url, texts, clients=clients, texts_per_request=per_request, seconds=seconds,
                server_pid=pid, warmup_requests=2, slices=slices if ceiling else 1,
                between=between,
            )
        )  # fmt: skip
        if ceiling is not None:
            readings.append(ceiling.read(mix))
        row = {"point": name, "mix": mix, **result.row()}
        if readings:
            rates = [r["texts_per_s"] for r in readings]
            around = [(a + b) / 2 for a, b in itertools.pairwise(rates)]
            row["ceiling_readings"] = rates
            row["ceiling_texts_per_s"] = sum(around) / len(around)
            row["x_ceiling_slices"] = [
                got / ceil for got, ceil in zip(result.slice_texts_per_s, around, strict=True)
            ]
            row["x_ceiling"] = sum(row["x_ceiling_slices"]) / len(around)
            # The same against classifyd's own forward, read alongside: what serving costs.
            own = [r.get("packed_texts_per_s_side_by_side") for r in readings]
            if all(own):
                own_around = [(a + b) / 2 for a, b in itertools.pairwise(own)]
                row["own_forward_readings"] = own
                row["x_own_forward"] = sum(
                    got / o for got, o in zip(result.slice_texts_per_s, own_around, strict=True)
                ) / len(own_around)
            # The latency target's floor, from the same minutes.
            forwards = [r["single_forward_ms_p50"] for r in readings]
            row["single_forward_ms_p50"] = sum(forwards) / len(forwards)
        if classifyd:
            row.update(batch_means(before, metric_sums(url)))
        rows.append(row)
        ratio = f", {row['x_ceiling']:.2f} x ceiling" if "x_ceiling" in row else ""
        print(
            f"  {name}: {row['texts_per_s']:.1f} texts/s{ratio}, p50 {row['p50_ms']:.1f} ms",
            flush=True,
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--num-texts", type=int, default=2048)
    p.add_argument("--threads", type=int, default=None, help="torch threads for all three")
    p.add_argument("--out", default="bench/results")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--slices", type=int, default=5, help="slices of each classifyd point")
    p.add_argument("--reading-texts", type=int, default=384, help="texts per ceiling reading")
    p.add_argument("--points", nargs="+", help="only these load points (names as in the table)")
    p.add_argument("classifyd_args", nargs="*", help="extra `classifyd serve` flags after --")
    args = p.parse_args()
    threads = args.threads or os.cpu_count() or 1
    py = sys.executable
    report: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in [py, "-m", "bench.compare", *sys.argv[1:]]),
        "model": args.model,
        "machine": describe_machine(),
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds_per_point": args.seconds,
    }

    ceiling_cmd = [py, "-m", "bench.ceiling", "--model", args.model,
                   "--threads", str(threads)]  # fmt: skip
    print("ceiling (in-process, length-sorted batches of 32)", flush=True)
    ceiling = {}
    for mix in ("short", "longtail"):
        # Its own process each, for the bare model's memory; --packed: classifyd's own
        # forward on the same batches, what the server would do without the serving.
        out = subprocess.run(
            [*ceiling_cmd, "--mix", mix, "--num-texts", "1024", "--repeats", "2", "--packed"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        ceiling[mix] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {mix}: {ceiling[mix]['texts_per_s']:.1f} texts/s", flush=True)
    report["ceiling"] = ceiling

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [
        py, "-m", "cli", "serve", "--model", args.model, "--port", str(port),
        "--num-threads", str(threads), "--log-level", "warning", *args.classifyd_args,
    ]  # fmt: skip
    report["classifyd_command"] = " ".join(serve)
    report["slices"] = args.slices
    print("classifyd", flush=True)
    # The readings time only the layout that won at the start, in both mixes, if one did:
    # a reading then takes half as long, and the slices can be shorter.
    side_won = all(
        (c["texts_per_s_side_by_side"] or 0) >= c["texts_per_s_one_at_a_time"]
        for c in ceiling.values()
    )
    report["readings_side_by_side_only"] = side_won
    readings = CeilingReadings(
        [*ceiling_cmd, "--num-texts", str(args.reading_texts)]
        + (["--side-by-side-only"] if side_won else [])
    )
    proc = start_server(serve, url)
    try:
        report["classifyd"] = _run_points(
            url, proc.pid, args.seconds, args.num_texts, True, readings, args.slices,
            args.points,
        )  # fmt: skip
        report["classifyd_peak_rss_mb"] = peak_rss_mb(proc.pid)
    finally:
        stop_server(proc)
        readings.close()

    if not args.skip_baseline:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        base = [py, "-m", "bench.baseline_server", "--model", args.model, "--port", str(port),
                "--threads", str(threads)]  # fmt: skip
        print("baseline (transformers pipeline, one request at a time)", flush=True)
        proc = start_server(base, url)
        try:
            report["baseline"] = _run_points(
                url, proc.pid, args.seconds, args.num_texts, False, points=args.points
            )
            report["baseline_peak_rss_mb"] = peak_rss_mb(proc.pid)
        finally:
            stop_server(proc)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(report, indent=2))
    (out_dir / "latest.md").write_text(render_markdown(report))
    print(render_markdown(report))


def _packed_line(ceiling: dict[str, Any]) -> str:
    """classifyd's own forward in-process on the ceiling's batches, where it was measured."""
    parts = [
        f"{mix} {c['packed_texts_per_s_side_by_side']:.1f} texts/s "
        f"({c['packed_texts_per_s_side_by_side'] / c['texts_per_s']:.2f} × ceiling)"
        for mix, c in ceiling.items()
        if c.get("packed_texts_per_s_side_by_side")
    ]
    if not parts:
        return ""
    return (
        "classifyd's own forward (engine/model/packed.py) on the same texts in given-order batches "
        "of 32, in-process, side by side: " + ", ".join(parts) + ". "
    )


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
        + _packed_line(ceiling)
        + f"Each classifyd point runs in {report.get('slices', 1)} slices with the ceiling "
        "read before, between and after them (the server idle meanwhile); each slice is "
        "measured against the mean of the two readings around it, and the point's × ceiling "
        "is the mean of its slices' (their range in brackets; the ceiling column gives, over the "
        "slices, the mean of the readings around each, and the readings' range). × own forward: "
        "the same against classifyd's "
        "packed forward, read with each ceiling reading on the same texts in batches of 32 "
        "in their given order: what the serving around the forward costs.",
        "",
        "| load point | classifyd texts/s | ceiling (readings) | × ceiling (slices) | "
        "× own forward | "
        "baseline texts/s | × baseline | classifyd p50 / p99 ms | baseline p50 / p99 ms | "
        "padded / real | mean batch | classifyd CPU cores | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["classifyd"]:
        b = base.get(row["point"])
        ceil = row.get("ceiling_texts_per_s") or ceiling[row["mix"]]["texts_per_s"]
        cells = [
            row["point"],
            f"{row['texts_per_s']:.1f}",
            f"{ceil:.1f} ({min(row['ceiling_readings']):.0f}–{max(row['ceiling_readings']):.0f})"
            if "ceiling_readings" in row
            else f"{ceil:.1f}",
            f"{row['x_ceiling']:.2f} ({min(row['x_ceiling_slices']):.2f}–"
            f"{max(row['x_ceiling_slices']):.2f})"
            if "x_ceiling" in row
            else f"{row['texts_per_s'] / ceil:.2f}",
            f"{row['x_own_forward']:.2f}" if "x_own_forward" in row else "–",
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
