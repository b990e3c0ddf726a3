"""The in-process ceiling: the same model and texts, length-sorted batches, no server.

    python -m bench.ceiling --model DIR [--mix short] [--batch-size 32] [--threads N]

This is what the model can do on this machine; the server is measured against it. Prints
JSON: texts/s of the batched forwards (tokenizing excluded, reported apart), the median
single-text forward time (the floor for latency at concurrency 1), padded/real tokens, and
the process's peak memory (the bare-model figure the server's memory is compared with).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any

from bench.texts import MIXES


def peak_rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(
    model_dir: str,
    texts: list[str],
    *,
    batch_size: int = 32,
    threads: int | None = None,
    dtype: str = "float32",
    quantize: bool = False,
    singles: int = 60,
    repeats: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = (
        AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=getattr(torch, dtype))
        .eval()
        .to(device)
    )
    if quantize:
        from engine.quantize import quantize_int8

        # What `classifyd serve --quantization int8` runs, so the ceiling matches it.
        model = quantize_int8(model, torch.device(device), getattr(torch, dtype))
    started = time.perf_counter()
    ids = tok(texts, truncation=True)["input_ids"]
    tokenize_s = time.perf_counter() - started
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    pad = tok.pad_token_id or 0
    batches = []
    for start in range(0, len(order), batch_size):
        rows = [ids[i] for i in order[start : start + batch_size]]
        width = max(map(len, rows))
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        lengths = torch.tensor([len(r) for r in rows])
        mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        batches.append((input_ids.to(device), mask.to(device)))
    real = sum(map(len, ids))
    padded = sum(b[0].numel() for b in batches)
    # On a GPU the clock stops only once the device is done; .tolist() is what the server does
    # with each batch's logits anyway.
    with torch.inference_mode():
        for input_ids, mask in batches[:: max(1, len(batches) // 4)]:  # warm-up
            model(input_ids=input_ids, attention_mask=mask).logits.tolist()
        runs = []
        for _ in range(repeats):
            began = time.perf_counter()
            for input_ids, mask in batches:
                model(input_ids=input_ids, attention_mask=mask).logits.tolist()
            runs.append(time.perf_counter() - began)
        # The other way to use the cores: batches side by side on threads of their own, one
        # torch thread each (what classifyd's CPU workers do under load). The ceiling is the
        # better of the two, so the server is never measured against the weaker layout.
        split = 2 if device == "cpu" and torch.get_num_threads() >= 2 else 1
        # The bare-model memory figure is the one-at-a-time process's, as before.
        rss_mb = peak_rss_mb()
        side_runs = []
        if split > 1:
            side_runs = [_side_by_side(torch, model, batches, split) for _ in range(repeats)]
            torch.set_num_threads(threads or split)
        rng = random.Random(0)
        single_ms = []
        for i in rng.sample(range(len(texts)), min(singles, len(texts))):
            began = time.perf_counter()
            model(input_ids=torch.tensor([ids[i]], device=device)).logits.tolist()
            single_ms.append((time.perf_counter() - began) * 1000)
    one_at_a_time = len(texts) / min(runs)
    side_by_side = len(texts) / min(side_runs) if side_runs else None
    return {
        "texts": len(texts),
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "dtype": dtype,
        "quantized": quantize,
        "device": device,
        "texts_per_s": max(one_at_a_time, side_by_side or 0.0),
        "texts_per_s_one_at_a_time": one_at_a_time,
        "texts_per_s_side_by_side": side_by_side,
        "tokenize_texts_per_s": len(texts) / tokenize_s,
        "single_forward_ms_p50": statistics.median(single_ms),
        "real_tokens": real,
        "padded_tokens": padded,
        "peak_rss_mb": rss_mb,
    }


def _side_by_side(torch: Any, model: Any, batches: list[Any], split: int) -> float:
    """Seconds to run `batches` on `split` threads at once, one torch thread each."""
    import threading

    def run(part: list[Any]) -> None:
        torch.set_num_threads(1)
        with torch.inference_mode():
            for input_ids, mask in part:
                model(input_ids=input_ids, attention_mask=mask).logits.tolist()

    threads = [threading.Thread(target=run, args=(batches[i::split],)) for i in range(split)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--mix", choices=sorted(MIXES), default="short")
    p.add_argument("--num-texts", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--quantize", action="store_true", help="int8 as --quantization int8 serves it")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    texts = MIXES[args.mix](args.num_texts, args.seed)
    result = measure(
        args.model, texts, batch_size=args.batch_size, threads=args.threads,
        dtype=args.dtype, quantize=args.quantize, repeats=args.repeats, device=args.device,
    )  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
