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
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.texts import MIXES


def peak_rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Ceiling:
    """One loaded model and tokenizer, measured as often as asked.

    bench/compare reads the ceiling again between the slices of every load point; loading
    the model once for all of them keeps each reading to the forwards it times.
    """

    def __init__(
        self,
        model_dir: str,
        *,
        batch_size: int = 32,
        threads: int | None = None,
        dtype: str = "float32",
        quantize: bool = False,
        device: str = "cpu",
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.threads = threads
        self.batch_size = batch_size
        self.dtype, self.quantize, self.device = dtype, quantize, device
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, dtype=getattr(torch, dtype)
        )
        self.model = model.eval().to(device)
        if quantize:
            from engine.model.quantize import quantize_int8

            # What `classifyd serve --quantization int8` runs, so the ceiling matches it.
            self.model = quantize_int8(self.model, torch.device(device), getattr(torch, dtype))
        # By the text list's identity; the list itself is kept, so its id cannot be reused.
        self._prepared: dict[int, tuple[list[str], list[list[int]], list[Any], float]] = {}
        # classifyd's packed forward of the model (packed_side_by_side), scripted when first used.
        self._packed: Any = None
        self._packed_tried = False

    def _prepare(self, texts: list[str]) -> tuple[list[list[int]], list[Any], float]:
        """Token ids, the length-sorted padded batches and the tokenizing seconds; once per
        text list."""
        key = id(texts)
        if key not in self._prepared:
            torch = self.torch
            started = time.perf_counter()
            ids = self.tok(texts, truncation=True)["input_ids"]
            tokenize_s = time.perf_counter() - started
            order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
            pad = self.tok.pad_token_id or 0
            batches = []
            for start in range(0, len(order), self.batch_size):
                rows = [ids[i] for i in order[start : start + self.batch_size]]
                width = max(map(len, rows))
                input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
                lengths = torch.tensor([len(r) for r in rows])
                mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
                batches.append((input_ids.to(self.device), mask.to(self.device)))
            self._prepared[key] = (texts, ids, batches, tokenize_s)
        _, ids, batches, tokenize_s = self._prepared[key]
        return ids, batches, tokenize_s

    def measure(
        self, texts: list[str], *, singles: int = 60, repeats: int = 1, both: bool = True
    ) -> dict[str, Any]:
        """both=False (and two threads or more on CPU): time the side-by-side layout only,
        for readings after a full measurement found it the better one."""
        torch, model, device = self.torch, self.model, self.device
        split = 2 if device == "cpu" and torch.get_num_threads() >= 2 else 1
        both = both or split == 1
        ids, batches, tokenize_s = self._prepare(texts)
        # On a GPU the clock stops only once the device is done; .tolist() is what the
        # server does with each batch's logits anyway.
        with torch.inference_mode():
            for input_ids, mask in batches[:: max(1, len(batches) // 4)]:  # warm-up
                model(input_ids=input_ids, attention_mask=mask).logits.tolist()
            runs = []
            for _ in range(repeats if both else 0):
                began = time.perf_counter()
                for input_ids, mask in batches:
                    model(input_ids=input_ids, attention_mask=mask).logits.tolist()
                runs.append(time.perf_counter() - began)
            # The other way to use the cores: batches side by side on threads of their own,
            # one torch thread each (what classifyd's CPU workers do under load). The
            # ceiling is the better of the two, so the server is never measured against the
            # weaker layout.
            # The bare-model memory figure is read before the side-by-side threads run.
            rss_mb = peak_rss_mb()
            side_runs = []
            if split > 1:
                side_runs = [_side_by_side(torch, model, batches, split) for _ in range(repeats)]
                torch.set_num_threads(self.threads or split)
            rng = random.Random(0)
            single_ms = []
            for i in rng.sample(range(len(texts)), min(singles, len(texts))):
                began = time.perf_counter()
                model(input_ids=torch.tensor([ids[i]], device=device)).logits.tolist()
                single_ms.append((time.perf_counter() - began) * 1000)
        one_at_a_time = len(texts) / min(runs) if runs else None
        side_by_side = max(side_runs) if side_runs else None
        return {
            "texts": len(texts),
            "batch_size": self.batch_size,
            "threads": torch.get_num_threads(),
            "dtype": self.dtype,
            "quantized": self.quantize,
            "device": device,
            "texts_per_s": max(one_at_a_time or 0.0, side_by_side or 0.0),
            "texts_per_s_one_at_a_time": one_at_a_time,
            "texts_per_s_side_by_side": side_by_side,
            "tokenize_texts_per_s": len(texts) / tokenize_s,
            "single_forward_ms_p50": statistics.median(single_ms),
            "real_tokens": sum(map(len, ids)),
            "padded_tokens": sum(b[0].numel() for b in batches),
            "peak_rss_mb": rss_mb,
        }

    def packed_side_by_side(self, texts: list[str], split: int = 2) -> float | None:
        """texts/s of classifyd's own CPU forward (engine/model/packed.py) on the same texts in
        batches of `batch_size` in their given order, as the server takes them (not sorted:
        a packed batch has no padding to save), side by side: the server's forward without
        the server. None where it does not pack. The scripted module is built once."""
        if not self._packed_tried:
            from engine.model.packed import PackedEncoder

            self._packed = PackedEncoder.of(self.model) if not self.quantize else None
            self._packed_tried = True
        packed = self._packed
        if packed is None or self.device != "cpu":
            return None
        ids, _, _ = self._prepare(texts)
        rows = [ids[s : s + self.batch_size] for s in range(0, len(ids), self.batch_size)]
        torch = self.torch

        def run(part: list[Any]) -> None:
            torch.set_num_threads(1)
            with torch.inference_mode():
                for batch in part:
                    packed(batch, None).tolist()

        run(rows[:2])  # warm-up (TorchScript profiles its first calls)
        rate = _threads_side_by_side([rows[i::split] for i in range(split)], run, len)
        torch.set_num_threads(self.threads or split)
        return rate


def _side_by_side(torch: Any, model: Any, batches: list[Any], split: int) -> float:
    """texts/s of `batches` on `split` threads at once, one torch thread each."""

    def run(part: list[Any]) -> None:
        torch.set_num_threads(1)
        with torch.inference_mode():
            for input_ids, mask in part:
                model(input_ids=input_ids, attention_mask=mask).logits.tolist()

    parts = [batches[i::split] for i in range(split)]
    return _threads_side_by_side(parts, run, lambda batch: int(batch[0].shape[0]))


def _threads_side_by_side(
    parts: list[list[Any]], run: Callable[[list[Any]], None], texts_in: Callable[[Any], int]
) -> float:
    """texts/s of `run` over every part at once, a thread each: the sum of each thread's own
    rate (its texts over its own time), so that whichever finishes first idling while the
    other ends is not counted against the layout (bench/loadgen's windows leave out the
    same drain)."""
    import threading

    rates: list[float] = []

    def timed(part: list[Any]) -> None:
        began = time.perf_counter()
        run(part)
        rates.append(sum(map(texts_in, part)) / (time.perf_counter() - began))

    threads = [threading.Thread(target=timed, args=(part,)) for part in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(rates)


def serve(ceiling: Ceiling, num_texts: int, seed: int, both: bool) -> None:
    """Readings on request: each line on stdin names a mix; each answer is one JSON line.
    The model stays loaded between them (bench/compare's readings around its slices)."""
    texts = {mix: make(num_texts, seed) for mix, make in MIXES.items()}
    for mix in texts:  # each mix once unrecorded: no reading is the process's first
        ceiling.measure(texts[mix], singles=5, both=both)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        mix = line.strip()
        if mix:
            reading = ceiling.measure(texts[mix], singles=20, both=both)
            reading["packed_texts_per_s_side_by_side"] = ceiling.packed_side_by_side(texts[mix])
            print(json.dumps(reading), flush=True)


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
    p.add_argument("--packed", action="store_true", help="also time classifyd's packed forward")
    p.add_argument("--serve", action="store_true", help="answer readings named on stdin")
    p.add_argument("--side-by-side-only", action="store_true", help="time that layout only")
    args = p.parse_args()
    ceiling = Ceiling(
        args.model, batch_size=args.batch_size, threads=args.threads, dtype=args.dtype,
        quantize=args.quantize, device=args.device,
    )  # fmt: skip
    if args.serve:
        serve(ceiling, args.num_texts, args.seed, not args.side_by_side_only)
        return
    texts = MIXES[args.mix](args.num_texts, args.seed)
    result = ceiling.measure(texts, repeats=args.repeats, both=not args.side_by_side_only)
    if args.packed:
        result["packed_texts_per_s_side_by_side"] = ceiling.packed_side_by_side(texts)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
