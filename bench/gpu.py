"""The GPU measurement: runs unchanged on any CUDA machine (and on CPU, to check it works).

    python -m bench.gpu [--model DIR | --synthetic minilm|bert-base] [--device cuda]
                        [--dtype bfloat16] [--seconds 15]

What it answers, side by side in one run:
- the in-process ceiling on the device (length-sorted batches of 32, and of 256);
- classifyd with one batch in flight (`--max-inflight-batches 1`: collate, copy, compute,
  copy back, answer, one after the other) against two (the default on a GPU: batch N+1 is
  collated in pinned memory and copied on a side stream while batch N computes), at
  concurrency 64 and 256 with one text per request and at 8 clients × 64 texts;
- the device's busy fraction during each load point (nvidia-smi, sampled every 100 ms).

GPU machines often have no network, so `--synthetic` builds a randomly initialised BERT of
the given shape with a WordPiece tokenizer trained on the benchmark texts, in seconds, with
nothing downloaded; speed does not depend on the weights. Results go to
bench/results/gpu-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.loadgen import run_load
from bench.machine import describe_machine, versions
from bench.serving import batch_means, free_port, metric_sums, start_server, stop_server
from bench.texts import MIXES

SHAPES = {
    # hidden, layers, heads, intermediate: the default model's shape and BERT-base's.
    "minilm": (384, 6, 12, 1536),
    "bert-base": (768, 12, 12, 3072),
}
POINTS = [("c64", 64, 1), ("c256", 256, 1), ("8x64", 8, 64)]


def build_synthetic(out: Path, shape: str) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        MIXES["longtail"](4000, 1),
        trainers.WordPieceTrainer(vocab_size=8000, special_tokens=special),
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )  # fmt: skip
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=512,
    )  # fmt: skip
    hidden, layers, heads, inner = SHAPES[shape]
    config = BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=inner, num_labels=2,
        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out


@contextlib.contextmanager
def gpu_busy_sampler() -> Iterator[list[float]]:
    """Samples nvidia-smi's utilization.gpu every 100 ms; empty on a machine without it."""
    samples: list[float] = []
    try:
        proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
             "-lms", "100", "-i", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    except FileNotFoundError:
        yield samples
        return

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with contextlib.suppress(ValueError):
                samples.append(float(line.strip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield samples
    finally:
        proc.terminate()
        proc.wait()


def _ceiling(
    model: str, device: str, dtype: str, batch_size: int, num_texts: int
) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.ceiling", "--model", model, "--device", device,
         "--dtype", dtype, "--batch-size", str(batch_size), "--num-texts", str(num_texts),
         "--repeats", "3"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _server_points(
    model: str, device: str, dtype: str, inflight: int, seconds: float
) -> tuple[str, list[dict[str, Any]]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "cli", "serve", "--model", model, "--port", str(port),
        "--device", device, "--dtype", dtype, "--max-inflight-batches", str(inflight),
        "--log-level", "warning", "--max-concurrent-requests", "4096",
    ]  # fmt: skip
    proc = start_server(cmd, url)
    rows = []
    try:
        texts = MIXES["short"](4096, 0)
        for name, clients, per_request in POINTS:
            before = metric_sums(url)
            with gpu_busy_sampler() as busy:
                result = asyncio.run(
                    run_load(
                        url, texts, clients=clients, texts_per_request=per_request,
                        seconds=seconds, server_pid=proc.pid, warmup_requests=4,
                    )
                )  # fmt: skip
            row = {"point": name, "inflight": inflight, **result.row()}
            row["mean_batch_size"] = batch_means(before, metric_sums(url))["mean_batch_size"]
            row["gpu_busy_pct"] = sum(busy) / len(busy) if busy else None
            rows.append(row)
            print(f"  inflight {inflight} {name}: {row['texts_per_s']:.1f} texts/s", flush=True)
    finally:
        stop_server(proc)
    return " ".join(shlex.quote(c) for c in cmd), rows


def render(report: dict[str, Any]) -> str:
    ceiling = report["ceiling"]
    lines = [
        f"Measured {report['date']} on {report['machine']} ({report['device_name']}); model "
        f"`{report['model']}`, {report['dtype']}; {report['seconds']:.0f} s per point.",
        "",
        f"Command: `{report['command']}`",
        "",
        "In-process ceiling: "
        + ", ".join(f"batches of {b}: {c['texts_per_s']:.0f} texts/s" for b, c in ceiling.items())
        + f"; single-text forward p50 {ceiling['32']['single_forward_ms_p50']:.2f} ms.",
        "",
        "| load point | 1 in flight texts/s | busy % | 2 in flight texts/s | busy % | 2 vs 1 "
        "| × ceiling (32) | p50 / p99 ms (2 in flight) | mean batch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    one = {r["point"]: r for r in report["inflight_1"]}
    best_ceiling = ceiling["32"]["texts_per_s"]

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value:.0f}"

    for row in report["inflight_2"]:
        o = one[row["point"]]
        lines.append(
            f"| {row['point']} | {o['texts_per_s']:.0f} | {pct(o['gpu_busy_pct'])} "
            f"| {row['texts_per_s']:.0f} | {pct(row['gpu_busy_pct'])} "
            f"| {row['texts_per_s'] / o['texts_per_s']:.2f}× "
            f"| {row['texts_per_s'] / best_ceiling:.2f} "
            f"| {row['p50_ms']:.1f} / {row['p99_ms']:.1f} | {row['mean_batch_size'] or 0:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", help="a model directory (default: --synthetic minilm)")
    p.add_argument("--synthetic", choices=sorted(SHAPES), default="minilm")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--num-texts", type=int, default=4096, help="texts for the ceiling")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    import torch

    device_name = (
        torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU (no GPU)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_synthetic(Path(tmp) / args.synthetic, args.synthetic))
        report: dict[str, Any] = {
            "command": " ".join(
                shlex.quote(a) for a in [sys.executable, "-m", "bench.gpu", *sys.argv[1:]]
            ),
            "model": args.model or f"synthetic {args.synthetic} (random weights)",
            "device_name": device_name,
            "dtype": args.dtype,
            "machine": describe_machine(),
            "versions": versions(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "seconds": args.seconds,
        }
        print("ceiling", flush=True)
        report["ceiling"] = {
            str(b): _ceiling(model, args.device, args.dtype, b, args.num_texts) for b in (32, 256)
        }
        for inflight in (1, 2):
            cmd, rows = _server_points(model, args.device, args.dtype, inflight, args.seconds)
            report[f"inflight_{inflight}"] = rows
            report[f"classifyd_command_{inflight}"] = cmd
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-latest.json").write_text(json.dumps(report, indent=2))
    (out / "gpu-latest.md").write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
