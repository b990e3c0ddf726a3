"""Offline throughput: the in-process ceiling, the Classifier, the `classifyd classify` command,
and the server at saturation, on the same texts, one after the other.

    python -m bench.offline --model DIR [--mix short] [--num-texts 4096] [--threads N]

Each runs in its own process (the ceiling and the Classifier as `--measure`, the command and
the server as the CLI), so one's memory and threads never affect the next:
- ceiling: bench/ceiling.py, the model alone on length-sorted batches of 32 (forward only);
- classifier: `Classifier(model).classify(texts)` after a warm-up, tokenizing included;
(all truncate over-long texts to the model's maximum, as the ceiling's tokenizer call does)
- command: `classifyd classify --model DIR texts.txt -o out.jsonl`, its own rate (from its
  summary line, reading and writing included) and the wall time with start-up;
- server: `classifyd serve` driven by `classifyd classify --url` (the client: 64 texts per
  request, 4 in flight), and by bench/loadgen.py with 4 clients × 32 texts.
Prints JSON and a markdown table; bench/compare.py can call `measure()` and `render()`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.serving import free_port, start_server, stop_server
from bench.texts import MIXES

_RATE = re.compile(r"(\d+) rows classified.* in ([\d.]+) s \(([\d.]+) texts/s\)")


def _texts(mix: str, count: int) -> list[str]:
    return MIXES[mix](count, 0)


def measure_classifier(model: str, texts: list[str], threads: int) -> dict[str, Any]:
    """In this process: the Classifier on `texts`, after a warm-up on a few of them."""
    from offline import Classifier

    # Truncating as the ceiling does (tokenizer truncation=True), so both run the same tokens.
    with Classifier(model, num_threads=threads, truncate_prompt_tokens=-1, progress=False) as clf:
        clf.classify(texts[:64])
        began = time.perf_counter()
        results = clf.classify(texts)
        elapsed = time.perf_counter() - began
    return {
        "texts": len(results),
        "seconds": round(elapsed, 3),
        "texts_per_s": len(results) / elapsed,
    }


def _json_of(cmd: list[str]) -> dict[str, Any]:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _command(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """`classifyd classify ...` in a child: its summary's rate, and the wall time."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cli", "classify", *argv, "--progress", "never"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"classifyd classify failed: {done.stderr[-2000:]}")
    match = _RATE.search(done.stderr)
    if match is None:
        raise RuntimeError(f"no summary line in: {done.stderr[-2000:]}")
    rows, seconds, rate = int(match[1]), float(match[2]), float(match[3])
    return {
        "texts": rows,
        "seconds": seconds,
        "texts_per_s": rate,
        "wall_s_with_startup": round(wall, 3),
    }


def _serve(model: str, threads: int, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "cli", "serve", "--model", model, "--port", str(port),
           "--num-threads", str(threads), "--log-level", "warning", "--auto-truncate"]  # fmt: skip
    return start_server(cmd, url, env=env), url


def measure(
    model: str,
    *,
    mix: str = "short",
    num_texts: int = 4096,
    threads: int | None = None,
    seconds: float = 15.0,
    skip_server: bool = False,
) -> dict[str, Any]:
    threads = threads or os.cpu_count() or 1
    py = sys.executable
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSIFYD_")}
    texts = _texts(mix, num_texts)
    report: dict[str, Any] = {
        "model": model,
        "mix": mix,
        "num_texts": num_texts,
        "threads": threads,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    print("ceiling (in-process, length-sorted batches of 32)", flush=True)
    report["ceiling"] = _json_of(
        [py, "-m", "bench.ceiling", "--model", model, "--mix", mix, "--num-texts",
         str(num_texts), "--threads", str(threads), "--repeats", "2"]
    )  # fmt: skip
    print("Classifier (in-process engine)", flush=True)
    report["classifier"] = _json_of(
        [py, "-m", "bench.offline", "--model", model, "--mix", mix, "--num-texts",
         str(num_texts), "--threads", str(threads), "--measure", "classifier"]
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "texts.txt"
        source.write_text("\n".join(texts) + "\n", encoding="utf-8")
        print("classifyd classify --model (offline command)", flush=True)
        report["command"] = _command(
            ["--model", model, str(source), "-o", str(Path(tmp) / "local.jsonl"),
             "--num-threads", str(threads), "--auto-truncate"],
            env,
        )  # fmt: skip
        if not skip_server:
            from bench.loadgen import run_load

            proc, url = _serve(model, threads, env)
            try:
                print("classifyd serve, driven by classifyd classify --url", flush=True)
                report["server_client"] = _command(
                    ["--url", url, str(source), "-o", str(Path(tmp) / "remote.jsonl")], env
                )
                print("classifyd serve, driven by bench/loadgen.py (4 × 32 texts)", flush=True)
                load = asyncio.run(
                    run_load(url, texts, clients=4, texts_per_request=32, seconds=seconds,
                             server_pid=proc.pid, warmup_requests=2)
                )  # fmt: skip
                report["server_loadgen"] = load.row()
            finally:
                stop_server(proc)
    return report


def render(report: dict[str, Any]) -> str:
    ceiling = report["ceiling"]["texts_per_s"]
    # The ceiling's forward and tokenizing rates, one after the other: what a process that
    # does both (as the Classifier must) would reach without overlapping them.
    forward, tokenize = ceiling, report["ceiling"]["tokenize_texts_per_s"]
    serial = {"texts_per_s": 1 / (1 / forward + 1 / tokenize)}
    rows = [
        ("in-process ceiling (forward only, sorted batches of 32)", report["ceiling"]),
        ("in-process ceiling with its tokenizing, one after the other", serial),
        ("Classifier (engine in-process, tokenizing included)", report["classifier"]),
        ("`classifyd classify --model` (reading and writing included)", report["command"]),
    ]
    if "server_client" in report:
        rows.append(("`classifyd serve` + `classifyd classify --url`", report["server_client"]))
        rows.append(("`classifyd serve` + loadgen 4 × 32", report["server_loadgen"]))
    lines = [
        f"Measured {report['date']}; model `{report['model']}`, mix `{report['mix']}`, "
        f"{report['num_texts']} texts, {report['threads']} torch threads.",
        "",
        "| run | texts/s | × ceiling | note |",
        "|---|---|---|---|",
    ]
    for name, row in rows:
        rate = row["texts_per_s"]
        note = (
            f"{row['wall_s_with_startup']:.1f} s wall with start-up"
            if "wall_s_with_startup" in row
            else ""
        )
        lines.append(f"| {name} | {rate:.1f} | {rate / ceiling:.2f} | {note} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--mix", choices=sorted(MIXES), default="short")
    p.add_argument("--num-texts", type=int, default=4096)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seconds", type=float, default=15.0, help="loadgen run length")
    p.add_argument("--skip-server", action="store_true")
    p.add_argument("--out", default=None, help="also write offline.json and offline.md here")
    p.add_argument("--measure", choices=["classifier"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure == "classifier":
        texts = _texts(args.mix, args.num_texts)
        threads = args.threads or os.cpu_count() or 1
        print(json.dumps(measure_classifier(args.model, texts, threads)))
        return
    report = measure(
        args.model, mix=args.mix, num_texts=args.num_texts, threads=args.threads,
        seconds=args.seconds, skip_server=args.skip_server,
    )  # fmt: skip
    text = render(report)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "offline.json").write_text(json.dumps(report, indent=2))
        (out / "offline.md").write_text(text)
    print(json.dumps(report))
    print(text)


if __name__ == "__main__":
    main()
