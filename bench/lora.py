"""What LoRA adapters cost: throughput with 1, 4 and 16 adapters against the base alone.

    python -m bench.lora [--model DIR] [--seconds 16] [--rounds 4] [--out DIR]

Builds seeded random PEFT `SEQ_CLS` adapters for the model (rank 8 on query/value by default,
each with its own head through modules_to_save) in a temporary directory, then starts one
classifyd per point, all resident at once: the base alone (packed forward), the base with
`--packed false` (what the adapters' padded forward loses by itself), and the base with 1, 4
and 16 adapters. Each point runs closed-loop clients (64 by default), one short text per
request (bench.compare's texts); the adapter points ask for the adapters' names in turn, a
uniform mix. The points are interleaved in rounds (this machine's speed drifts from minute to
minute) and each is judged against the base in its own round: a point's ratio is the median
of its rounds'. Memory per resident adapter:
the idle RSS over the unpacked base's, per adapter, and the adapter's parameter bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ceiling import peak_rss_mb
from bench.loadgen import run_load
from bench.machine import describe_machine, versions
from bench.serving import batch_means, free_port, metric_sums, start_server, stop_server
from bench.texts import short_texts

DEFAULT_MODEL = "~/.cache/classifyd/models/minilm-sentiment-v2"
# The Linear layers each adapter adapts, by --targets: BERT-family names (PEFT's own default
# for BERT is query/value); "all": every Linear of the trunk (attention, feed-forward, pooler).
TARGETS = {"qv": ["query", "value"], "all": ["query", "key", "value", "dense"]}
HEAD = "classifier"
BASE_NAME = "base"


def build_adapters(model: str, out: Path, count: int, rank: int, targets: str) -> list[Path]:
    """`count` PEFT adapters for `model` in `out`, each with its own head, seeded weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(model)
    config = LoraConfig(
        task_type="SEQ_CLS",
        r=rank,
        lora_alpha=2 * rank,
        target_modules=TARGETS[targets],
        modules_to_save=[HEAD],
    )
    peft: Any = get_peft_model(base, config)
    dirs = []
    for i in range(count):
        # One PEFT model, re-drawn per adapter: loading the base again for each is slower.
        torch.manual_seed(1000 + i)
        with torch.no_grad():
            for name, param in peft.named_parameters():
                if "lora_" in name or "modules_to_save" in name:
                    param.normal_(0.0, 0.05)
        path = out / f"a{i}"
        peft.save_pretrained(path)
        dirs.append(path)
    return dirs


def parameter_bytes(adapter: Path) -> dict[str, int]:
    """The adapter's LoRA matrices and its own head, in bytes as saved."""
    from safetensors import safe_open

    out = {"lora": 0, "head": 0}
    with safe_open(adapter / "adapter_model.safetensors", "pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            tensor = f.get_tensor(key)
            out["lora" if ".lora_" in key else "head"] += tensor.numel() * tensor.element_size()
    return out


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def points(counts: list[int]) -> list[tuple[str, int, list[str]]]:
    """(name, adapters, extra serve flags) of each point, the base first."""
    return [
        ("base", 0, []),
        ("base-unpacked", 0, ["--packed", "false"]),
        *((f"lora-{n}", n, []) for n in counts),
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--counts", type=int, nargs="+", default=[1, 4, 16], help="adapters per point")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--targets", choices=sorted(TARGETS), default="qv")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--seconds", type=float, default=16, help="load per point, over all rounds")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds of every point")
    p.add_argument("--num-texts", type=int, default=2048)
    p.add_argument("--threads", type=int, default=None, help="torch threads per server")
    p.add_argument("--out", default=None, help="write lora.{json,md} here")
    p.add_argument("classifyd_args", nargs="*", help="extra `classifyd serve` flags after --")
    args = p.parse_args(argv)
    model = str(Path(args.model).expanduser())
    threads = args.threads or os.cpu_count() or 1
    py = sys.executable
    report: dict[str, Any] = {
        "command": " ".join(
            shlex.quote(a) for a in [py, "-m", "bench.lora", *(argv or sys.argv[1:])]
        ),
        "model": model,
        "machine": describe_machine(),
        "cpu_features": cpu_features(),
        "versions": {**versions(), "peft": _version("peft")},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "rank": args.rank,
        "targets": TARGETS[args.targets],
        "clients": args.clients,
        "seconds_per_point": args.seconds,
        "rounds": args.rounds,
        "load_before": os.getloadavg(),
    }
    texts = short_texts(args.num_texts, 0)
    with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp:
        print(f"building {max(args.counts)} adapters", flush=True)
        dirs = build_adapters(model, Path(tmp), max(args.counts), args.rank, args.targets)
        report["adapter_bytes"] = parameter_bytes(dirs[0])
        servers: dict[str, tuple[Any, str, list[str]]] = {}
        try:
            for name, count, extra in points(args.counts):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                names = [f"a{i}" for i in range(count)]
                lora = (
                    ["--enable-lora", "--max-lora-rank", str(args.rank), "--lora-modules"]
                    + [f"{n}={d}" for n, d in zip(names, dirs, strict=False)]
                    if count
                    else []
                )
                cmd = [
                    py, "-m", "cli", "serve", "--model", model, "--port", str(port),
                    "--served-model-name", BASE_NAME, "--num-threads", str(threads),
                    "--log-level", "warning", *extra, *args.classifyd_args, *lora,
                ]  # fmt: skip
                print(f"starting {name}", flush=True)
                servers[name] = (start_server(cmd, url), url, names or [BASE_NAME])
            rows = _measure(servers, texts, args)
            report["points"] = rows
            report["load_after"] = os.getloadavg()
        finally:
            for proc, _, _ in servers.values():
                stop_server(proc)
    _memory(report)
    md = render_markdown(report)
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "lora.json").write_text(json.dumps(report, indent=2))
        (out / "lora.md").write_text(md)
    return report


def _measure(
    servers: dict[str, tuple[Any, str, list[str]]], texts: list[str], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every point in each round, in turn; each one's ratio to the base in the same round."""
    rows: dict[str, dict[str, Any]] = {
        name: {"point": name, "adapters": len(models) if name.startswith("lora") else 0,
               "rss_idle_mb": rss_mb(proc.pid), "slices": []}
        for name, (proc, _, models) in servers.items()
    }  # fmt: skip
    names = list(servers)
    for r in range(args.rounds):
        # Each round starts one point later, so that no point always follows the same one.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            proc, url, models = servers[name]
            before = metric_sums(url)
            result = asyncio.run(
                run_load(
                    url, texts, clients=args.clients, seconds=args.seconds / args.rounds,
                    server_pid=proc.pid, warmup_requests=2, models=models,
                )
            )  # fmt: skip
            got = {**result.row(), **batch_means(before, metric_sums(url))}
            rows[name]["slices"].append(got)
            print(
                f"  round {r + 1} {name}: {got['texts_per_s']:.1f} texts/s, "
                f"p50 {got['p50_ms']:.0f} ms, errors {got['errors'] or 0}",
                flush=True,
            )
    for name, (proc, _, _) in servers.items():
        rows[name]["peak_rss_mb"] = peak_rss_mb(proc.pid)
    base = [s["texts_per_s"] for s in rows["base"]["slices"]]
    unpacked = [s["texts_per_s"] for s in rows["base-unpacked"]["slices"]]
    for row in rows.values():
        rates = [s["texts_per_s"] for s in row["slices"]]
        x_base = [a / b for a, b in zip(rates, base, strict=True)]
        x_unpacked = [a / b for a, b in zip(rates, unpacked, strict=True)]
        row.update(
            texts_per_s=statistics.mean(rates),
            # Medians: one round that another tenant slowed must not carry the point.
            x_base=statistics.median(x_base), x_base_range=[min(x_base), max(x_base)],
            x_unpacked=statistics.median(x_unpacked),
            p50_ms=statistics.mean(s["p50_ms"] for s in row["slices"]),
            p99_ms=statistics.mean(s["p99_ms"] for s in row["slices"]),
            mean_batch_size=_mean(s.get("mean_batch_size") for s in row["slices"]),
            server_cpu_cores=_mean(s.get("server_cpu_cores") for s in row["slices"]),
            errors=sum(sum((s["errors"] or {}).values()) for s in row["slices"]),
        )  # fmt: skip
    return list(rows.values())


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _mean(values: Any) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.mean(got) if got else None


def _memory(report: dict[str, Any]) -> None:
    """Idle RSS per resident adapter: over the unpacked base (the same forward), per adapter,
    and the step from the fewest to the most adapters (what one more costs)."""
    rows = {r["point"]: r for r in report["points"]}
    floor = rows["base-unpacked"]["rss_idle_mb"]
    lora = [r for r in report["points"] if r["adapters"]]
    for row in lora:
        row["rss_per_adapter_mb"] = (row["rss_idle_mb"] - floor) / row["adapters"]
    if len(lora) > 1 and lora[-1]["adapters"] > lora[0]["adapters"]:
        step = lora[-1]["rss_idle_mb"] - lora[0]["rss_idle_mb"]
        report["rss_marginal_mb"] = step / (lora[-1]["adapters"] - lora[0]["adapters"])


def cpu_features() -> list[str]:
    """The SIMD features that decide this CPU's fp32/bf16 speed, as /proc/cpuinfo flags."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_tile")
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line.split(":", 1)[1].split() for line in f if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return [w for w in wanted if w in flags]


def render_markdown(report: dict[str, Any]) -> str:
    b = report["adapter_bytes"]
    lines = [
        f"Measured {report['date']} on {report['machine']} ({', '.join(report['cpu_features'])});"
        f" load average before {report['load_before'][0]:.2f}, after "
        f"{report.get('load_after', (float('nan'),))[0]:.2f}. Model `{report['model']}`; "
        f"adapters rank {report['rank']} on {'/'.join(report['targets'])} with their own head; "
        f"{report['clients']} clients, one short text per request, {report['seconds_per_point']:g}"
        f" s per point in {report['rounds']} interleaved rounds.",
        "",
        f"Command: `{report['command']}`",
        "",
        "| point | texts/s | × base, median (rounds) | × base unpacked, median | p50 / p99 ms | "
        "mean batch | server CPU cores | idle RSS MB | RSS per adapter MB | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["points"]:
        lo, hi = row["x_base_range"]
        per = row.get("rss_per_adapter_mb")
        lines.append(
            f"| {row['point']} | {row['texts_per_s']:.1f} | {row['x_base']:.2f} ({lo:.2f}–{hi:.2f})"
            f" | {row['x_unpacked']:.2f} | {row['p50_ms']:.0f} / {row['p99_ms']:.0f} | "
            f"{row['mean_batch_size'] or 0:.1f} | {row['server_cpu_cores'] or 0:.2f} | "
            f"{row['rss_idle_mb']:.0f} | {'–' if per is None else f'{per:.1f}'} | "
            f"{row['errors']} |"
        )
    lines += [
        "",
        f"Parameter bytes per adapter: LoRA matrices {b['lora'] / 1024:.1f} KiB, head "
        f"{b['head'] / 1024:.1f} KiB."
        + (
            f" Idle RSS from the fewest to the most adapters: {report['rss_marginal_mb']:.2f} MB "
            "per added adapter."
            if "rss_marginal_mb" in report
            else ""
        ),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
