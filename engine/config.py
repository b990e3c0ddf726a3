"""EngineConfig: every knob of the engine, validated once at start."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
Quantization = Literal["none", "int8"]


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (a pod
    limited to 2 CPUs on a 64-core node gets 2, not 64 torch threads)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_quota(root: str = "/sys/fs/cgroup") -> float | None:
    # cgroup v2: "max 100000" (no limit) or "<quota> <period>"; v1: two files.
    try:
        with open(f"{root}/cpu.max") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(f"{root}/cpu/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open(f"{root}/cpu/cpu.cfs_period_us") as f:
            period_us = int(f.read())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def default_num_threads() -> int:
    # Leave the event loop (HTTP parsing, tokenizing, JSON) a core when there are more than
    # two. On two cores, measured with bench/ (bench/README.md), two torch threads beat one
    # at every load point, event loop and all, so both are used.
    cores = available_cpus()
    return cores if cores <= 2 else cores - 1


@dataclass(frozen=True)
class EngineConfig:
    model: str
    served_model_names: tuple[str, ...] = ()
    device: str = "auto"
    dtype: Dtype = "auto"
    # "int8": dynamic int8 quantization of the Linear layers (CPU only; opt-in, as it moves
    # probabilities, by 2e-2 on average on the default model: bench/precision.py).
    # "none": the weights as loaded.
    quantization: Quantization = "none"
    # Tokens per forward: len(batch) × longest prompt in it (padded), or the prompts' own
    # tokens with the packed forward.
    max_batch_tokens: int = 16384
    max_num_seqs: int = 256
    # None: the model's own limit (position embeddings / tokenizer).
    max_model_len: int | None = None
    # Sequences admitted and not yet answered; over it a request is refused at once (429).
    max_concurrent_requests: int = 1024
    # Batches handed to the workers at once. None: 2 on a GPU (one running, one prepared:
    # TEI's prefetch); on CPU one per worker, where the forward is synchronous and a batch
    # taken later groups more of what arrived meanwhile.
    max_inflight_batches: int | None = None
    # Model worker threads, sharing one copy of the weights. None: 1 on a GPU; on CPU 2 when
    # there are at least 2 torch threads. Under load (see parallel_from) each worker runs its
    # own batch on num_threads // workers threads: on two cores two single-threaded forwards
    # side by side beat one two-threaded forward, and lose far less to the event loop taking
    # a core (bench/README.md). A GPU always has one worker.
    workers: int | None = None
    # With several CPU workers: batches run side by side (few threads each) once this many
    # prompts wait with nothing running; below it one batch runs at a time on every thread,
    # which is what a lone request's latency wants. 4 measured best at concurrency 8 (138
    # texts/s against 123 for 8 and 108 for 16) and the same at 64 (bench/README.md).
    parallel_from: int = 4
    # Waiting prompts take_batch looks at to group similar lengths; 1: strict queue order.
    batch_scan: int = 256
    # Padded tokens per batch stay within (1 + padding_slack) × real tokens when grouping.
    padding_slack: float = 0.15
    # The unpadded forward for BERT-family encoders on CPU (engine/model/packed.py): no dense
    # layer computes a pad token, so batches take the queue in order, whatever the lengths
    # (batch_scan and padding_slack then do not apply). False: the model's own forward.
    packed: bool = True
    tokenizer_workers: int = 1
    num_threads: int = field(default_factory=default_num_threads)
    # Seconds a request may wait for its answer; past it: 503, and its queued prompts are
    # dropped before they reach the model. None: no limit.
    request_timeout: float | None = None
    # Tokens that may wait in the queue; a request that would pass it is refused (429).
    max_waiting_tokens: int | None = None
    # Test hook, called with each batch's ids before its forward (see engine/worker.py).
    fault_hook: Callable[[list[list[int]]], None] | None = field(default=None, compare=False)
    trust_remote_code: bool = False
    # Config attributes to replace before loading (id2label, num_labels, problem_type, …).
    hf_overrides: dict[str, Any] | None = None
    # "classify": turn a *ForCausalLM into a classifier over `classifier_from_tokens`.
    convert: Literal["none", "classify"] = "none"
    classifier_from_tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = {
            "max_batch_tokens": self.max_batch_tokens,
            "max_num_seqs": self.max_num_seqs,
            "max_concurrent_requests": self.max_concurrent_requests,
            "tokenizer_workers": self.tokenizer_workers,
            "num_threads": self.num_threads,
        }
        for name, value in checks.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.max_inflight_batches is not None and self.max_inflight_batches < 1:
            raise ValueError(
                f"max_inflight_batches must be at least 1, got {self.max_inflight_batches}"
            )
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.parallel_from < 1:
            raise ValueError(f"parallel_from must be at least 1, got {self.parallel_from}")
        if self.batch_scan < 1:
            raise ValueError(f"batch_scan must be at least 1, got {self.batch_scan}")
        if self.padding_slack < 0:
            raise ValueError(f"padding_slack must not be negative, got {self.padding_slack}")
        if self.request_timeout is not None and self.request_timeout <= 0:
            raise ValueError(f"request_timeout must be positive, got {self.request_timeout}")
        if self.max_waiting_tokens is not None and self.max_waiting_tokens < 1:
            raise ValueError(
                f"max_waiting_tokens must be at least 1, got {self.max_waiting_tokens}"
            )
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError(f"max_model_len must be at least 1, got {self.max_model_len}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype}")
        if self.quantization not in ("none", "int8"):
            raise ValueError(f"quantization must be none or int8, got {self.quantization}")

    @property
    def names(self) -> tuple[str, ...]:
        """The names clients may send as `model`; the first is the one responses carry."""
        return self.served_model_names or (self.model,)
