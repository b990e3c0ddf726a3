"""Beyond fp32: what `--dtype bfloat16` and `--quantization int8` buy, and what they cost.

    python -m bench.precision --model DIR [--num-texts 1024] [--threads 2]

Loads the model through the server's own runner (engine/model/runner.py) once per variant —
float32, bfloat16, float32 + int8 dynamic quantization — and runs the same texts through
each in length-sorted batches of 32 and one text at a time. Prints, per variant, texts/s and
the single-text forward time with the speed-up over float32, and the deviation of its
probabilities from float32: max and mean |Δp|, and how many predicted labels changed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

from bench.texts import MIXES

VARIANTS = [
    ("float32", "float32", "none"),
    ("bfloat16", "bfloat16", "none"),
    ("int8", "float32", "int8"),
]


def _run_variant(
    model_dir: str,
    ids: list[list[int]],
    dtype: str,
    quantization: str,
    *,
    threads: int,
    batch_size: int,
    singles: int,
    repeats: int,
) -> tuple[dict[str, Any], list[list[float]]]:
    from engine.activation import activate, default_activation
    from engine.config import EngineConfig
    from engine.model.runner import TransformersRunner

    runner = TransformersRunner(
        EngineConfig(
            model=model_dir,
            device="cpu",
            dtype=dtype,  # type: ignore[arg-type]
            quantization=quantization,  # type: ignore[arg-type]
            num_threads=threads,
        )
    )
    info = runner.load()
    kind = default_activation(info.problem_type, info.num_labels)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]

    def run_all() -> list[list[float]]:
        rows: list[list[float]] = [[] for _ in ids]
        for batch in batches:
            logits = runner.finish(runner.launch([ids[i] for i in batch], None))
            for i, row in zip(batch, logits, strict=True):
                rows[i] = row
        return rows

    run_all()  # warm-up: kernels for these shapes
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        logits = run_all()
        best = min(best, time.perf_counter() - began)
    rng = random.Random(0)
    single_ms = []
    for i in rng.sample(range(len(ids)), min(singles, len(ids))):
        began = time.perf_counter()
        runner.finish(runner.launch([ids[i]], None))
        single_ms.append((time.perf_counter() - began) * 1000)
    runner.close()
    probs = [activate(row, kind) for row in logits]
    return {
        "texts_per_s": len(ids) / best,
        "single_forward_ms_p50": statistics.median(single_ms),
    }, probs


def _deviation(probs: Sequence[Sequence[float]], base: Sequence[Sequence[float]]) -> dict[str, Any]:
    diffs = [
        abs(a - b)
        for row, ref in zip(probs, base, strict=True)
        for a, b in zip(row, ref, strict=True)
    ]
    from engine.activation import argmax

    flips = sum(argmax(row) != argmax(ref) for row, ref in zip(probs, base, strict=True))
    return {
        "max_abs_diff": max(diffs),
        "mean_abs_diff": statistics.fmean(diffs),
        "labels_changed": flips,
    }


def measure(
    model_dir: str,
    texts: list[str],
    *,
    threads: int,
    batch_size: int = 32,
    singles: int = 60,
    repeats: int = 2,
) -> list[dict[str, Any]]:
    from transformers import AutoTokenizer

    ids: list[list[int]] = AutoTokenizer.from_pretrained(model_dir)(texts, truncation=True)[
        "input_ids"
    ]
    results: list[dict[str, Any]] = []
    base: list[list[float]] | None = None
    for name, dtype, quantization in VARIANTS:
        figures, probs = _run_variant(
            model_dir, ids, dtype, quantization,
            threads=threads, batch_size=batch_size, singles=singles, repeats=repeats,
        )  # fmt: skip
        if base is None:
            base = probs
        row = {"variant": name, "dtype": dtype, "quantization": quantization, **figures}
        row.update(_deviation(probs, base))
        reference = results[0] if results else row
        row["speedup_batched"] = row["texts_per_s"] / reference["texts_per_s"]
        row["speedup_single"] = reference["single_forward_ms_p50"] / row["single_forward_ms_p50"]
        results.append(row)
    return results


def render(results: list[dict[str, Any]], texts: int) -> str:
    lines = [
        f"{texts} texts; batches of 32 (length-sorted) and single texts; deviation from float32",
        "",
        "| variant | texts/s (batches of 32) | speed-up | single text p50 ms | speed-up "
        "| max abs Δp | mean abs Δp | labels changed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['variant']} | {r['texts_per_s']:.1f} | {r['speedup_batched']:.2f}× "
            f"| {r['single_forward_ms_p50']:.1f} | {r['speedup_single']:.2f}× "
            f"| {r['max_abs_diff']:.2e} | {r['mean_abs_diff']:.2e} "
            f"| {r['labels_changed']} / {texts} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--mix", choices=sorted(MIXES), default="short")
    p.add_argument("--num-texts", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args()
    texts = MIXES[args.mix](args.num_texts, 0)
    results = measure(args.model, texts, threads=args.threads)
    print(json.dumps(results, indent=1) if args.json else render(results, len(texts)))


if __name__ == "__main__":
    main()
