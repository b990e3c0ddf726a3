"""EngineConfig: every knob of the engine, declared as an option (engine/options.py) and
validated once at start."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from engine.options import option

if TYPE_CHECKING:
    from engine.adapters import AdapterSpec

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
    # two; on two cores both run forwards, the faster layout there (bench/README.md).
    cores = available_cpus()
    return cores if cores <= 2 else cores - 1


@dataclass(frozen=True)
class EngineConfig:
    """Every knob of the engine; each is also a flag of `classifyd serve` (the offline ones of
    `classifyd classify` and the Classifier too), from the help declared here."""

    model: str = field(
        metadata=option(
            "local model directory (config.json, weights, tokenizer) or a Hugging Face Hub id "
            "(org/name, downloaded into the Hub cache at start); without it, the built-in "
            "sentiment model classifyd/minilm-sentiment, built on first use",
            # The Classifier and `classify` take the model their own way (`default`, None).
            offline=False,
        )
    )
    served_model_names: tuple[str, ...] = field(
        default=(),
        metadata=option(
            "names clients may send as `model`; the first is echoed in responses",
            shown="the --model value",
            flag="served-model-name",
            listed="words",
            offline=False,
        ),
    )
    # A Hub id's revision; the token is huggingface_hub's own (HF_TOKEN), never an option.
    revision: str | None = field(
        default=None,
        metadata=option(
            "branch, tag or commit of a Hub --model", shown="the repo's default branch"
        ),
    )
    tokenizer: str | None = field(
        default=None,
        metadata=option("tokenizer directory or Hub id, when not the model's own", shown="--model"),
    )
    tokenizer_revision: str | None = field(
        default=None,
        metadata=option(
            "branch, tag or commit of a Hub --tokenizer", shown="the repo's default branch"
        ),
    )
    download_dir: str | None = field(
        default=None,
        metadata=option(
            "cache directory for Hub downloads",
            shown="the Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub)",
        ),
    )
    device: str = field(
        default="auto", metadata=option("auto, cpu, cuda or cuda:N; auto picks CUDA when present")
    )
    dtype: Dtype = field(
        default="auto",
        metadata=option(
            "weights and compute dtype; auto is bfloat16 (or float16) on a GPU, float32 on CPU"
        ),
    )
    # Opt-in, as it moves probabilities (bench/precision.py measures how far).
    quantization: Quantization = field(
        default="none",
        metadata=option(
            "int8: dynamic int8 quantization of the Linear layers (CPU, float32 only); faster, "
            "but probabilities move (mean 2e-2 on the default model; bench/precision.py)"
        ),
    )
    max_batch_tokens: int = field(
        default=16384,
        metadata=option("tokens per forward: prompts × longest, or their own tokens when packed"),
    )
    max_num_seqs: int = field(default=256, metadata=option("prompts per forward"))
    # None: the model's own limit (position embeddings / tokenizer).
    max_model_len: int | None = field(
        default=None,
        metadata=option(
            "longest prompt in tokens; longer ones are refused unless truncated",
            shown="the model's limit",
        ),
    )
    # Offline runs keep this many texts in the engine, so they are never refused.
    max_concurrent_requests: int = field(
        default=1024,
        metadata=option(
            "prompts admitted and not yet answered; more get 429 at once",
            offline_help="texts handed to the engine at once",
        ),
    )
    # None: 2 on a GPU (one running, one prepared: TEI's prefetch); on CPU one per worker,
    # where the forward is synchronous and a batch taken later groups more of what arrived.
    max_inflight_batches: int | None = field(
        default=None,
        metadata=option(
            "batches handed to the model workers at once",
            shown="2 on a GPU, one per worker on CPU",
        ),
    )
    # Under load (see parallel_from) each CPU worker runs its own batch on
    # num_threads // workers threads: on few cores, single-threaded forwards side by side beat
    # one multi-threaded forward and lose less to the event loop taking a core
    # (bench/README.md). A GPU always has one worker.
    workers: int | None = field(
        default=None,
        metadata=option(
            "model worker threads sharing one copy of the weights; under load each runs its own "
            "batch on num-threads/workers threads",
            shown="2 on CPU with 2+ threads, 1 on a GPU",
        ),
    )
    # Below it a lone request's latency wants every thread on one batch; the value is
    # bench/README.md's best.
    parallel_from: int = field(
        default=4,
        metadata=option(
            "with several workers: prompts waiting before batches run side by side; below it one "
            "batch runs at a time on every thread (latency)"
        ),
    )
    batch_scan: int = field(
        default=256, metadata=option("waiting prompts looked at to group similar lengths; 1: FIFO")
    )
    padding_slack: float = field(
        default=0.15, metadata=option("padded tokens ≤ (1 + slack) × real tokens per batch")
    )
    # engine/model/packed.py: no dense layer computes a pad token, so batches take the queue
    # in order, whatever the lengths.
    packed: bool = field(
        default=True,
        metadata=option(
            "unpadded forward for BERT-family encoders on CPU, int8 included (batches then take "
            "the queue in order; batch-scan and padding-slack do not apply); false: the model's "
            "own forward"
        ),
    )
    tokenizer_workers: int = field(default=1, metadata=option("tokenizer threads"))
    # Depends on the machine, so computed where a config is made (also for --help).
    num_threads: int = field(
        default_factory=default_num_threads, metadata=option("torch CPU threads")
    )
    # Limits on what a server's clients send; an offline run paces itself by
    # max_concurrent_requests instead, so they are not its options.
    request_timeout: float | None = field(
        default=None,
        metadata=option(
            "seconds a request may wait for its answer; then 503 and its queued work is dropped",
            offline=False,
        ),
    )
    max_waiting_tokens: int | None = field(
        default=None,
        metadata=option("tokens allowed to wait in the queue; more is a 429", offline=False),
    )
    # Called with each batch's ids before its forward (engine/worker.py); a command line
    # names it as module:function.
    fault_hook: Callable[[list[list[int]]], None] | None = field(
        default=None,
        compare=False,
        metadata=option(
            "for chaos tests: module:function called with each batch's token ids before its "
            "forward; what it raises fails that batch",
            offline=False,
        ),
    )
    trust_remote_code: bool = field(
        default=False, metadata=option("allow model code shipped inside the model directory")
    )
    hf_overrides: dict[str, Any] | None = field(
        default=None,
        metadata=option(
            "JSON object of config attributes to replace before loading, e.g. "
            '\'{"id2label": {"0": "no", "1": "yes"}, '
            '"problem_type": "single_label_classification"}\''
        ),
    )
    # "classify": turn a *ForCausalLM into a classifier over `classifier_from_tokens`.
    convert: Literal["none", "classify"] = field(
        default="none",
        metadata=option(
            "classify: serve a *ForCausalLM as a classifier over --classifier-from-tokens"
        ),
    )
    classifier_from_tokens: tuple[str, ...] = field(
        default=(),
        metadata=option("label tokens for --convert classify, comma-separated (e.g. no,yes)"),
    )
    # vLLM's LoRA flags (engine/adapters.py, engine/model/lora.py): adapters on the one base.
    enable_lora: bool = field(
        default=False,
        metadata=option("serve LoRA adapters (--lora-modules) on the base model"),
    )
    lora_modules: tuple[str, ...] = field(
        default=(),
        metadata=option(
            "LoRA adapters as name=path, or vLLM's JSON form "
            '\'{"name": ..., "path": ..., "base_model_name": ...}\'; a request picks one by '
            "its `model`",
            listed="words",
        ),
    )
    max_loras: int | None = field(
        default=None,
        metadata=option(
            "LoRA adapters resident at once; more --lora-modules, or a run-time load "
            "beyond it, are refused",
            shown="no limit",
        ),
    )
    max_lora_rank: int = field(
        default=16,
        metadata=option("highest LoRA rank accepted; a higher one is refused"),
    )
    # vLLM's flag: the chat template, which /score and /rerank also render each
    # (query, document) pair with, as messages of roles "query" and "document".
    chat_template: str | None = field(
        default=None,
        metadata=option(
            "Jinja chat template (a file, the template itself, or a bundled one: "
            "qwen3_reranker, mxbai_rerank_v2, bge-reranker-v2-gemma); scoring routes render "
            "each pair with it as one prompt",
            shown="the tokenizer's; pairs are not templated",
        ),
    )

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
        self._check_lora()
        for name, kind in (("dtype", Dtype), ("quantization", Quantization)):
            value, allowed = getattr(self, name), get_args(kind)
            if value not in allowed:
                either = ", ".join(allowed[:-1]) + " or " + allowed[-1]
                raise ValueError(f"{name} must be {either}, got {value}")

    def _check_lora(self) -> None:
        from engine.adapters import parse_lora_modules

        if self.lora_modules and not self.enable_lora:
            raise ValueError("--lora-modules needs --enable-lora")
        if self.max_lora_rank < 1:
            raise ValueError(f"max_lora_rank must be at least 1, got {self.max_lora_rank}")
        if self.max_loras is not None and self.max_loras < 1:
            raise ValueError(f"max_loras must be at least 1, got {self.max_loras}")
        if self.enable_lora and self.quantization != "none":
            raise ValueError(
                "--quantization int8 does not apply to LoRA adapters; serve them unquantized"
            )
        parse_lora_modules(self.lora_modules, self.names, self.max_loras)

    @property
    def adapters(self) -> tuple[AdapterSpec, ...]:
        """The --lora-modules adapters, parsed (checked in __post_init__)."""
        from engine.adapters import parse_lora_modules

        return parse_lora_modules(self.lora_modules, self.names, self.max_loras)

    @property
    def names(self) -> tuple[str, ...]:
        """The names clients may send as `model`; the first is the one responses carry."""
        return self.served_model_names or (self.model,)


def resolve_max_model_len(
    cfg: EngineConfig, max_position_len: int | None, tokenizer_limit: int | None
) -> int:
    """The longest prompt served: --max-model-len, checked against the model's own limit and
    one batch's token budget; without it, as long as the model allows within one batch."""
    limits = [x for x in (max_position_len, tokenizer_limit) if x]
    model_limit = min(limits) if limits else None
    asked = cfg.max_model_len
    if asked is not None:
        if model_limit is not None and asked > model_limit:
            raise ValueError(
                f"max_model_len {asked} is more than the model's limit of {model_limit}"
            )
        if asked > cfg.max_batch_tokens:
            raise ValueError(
                f"max_model_len {asked} is more than max_batch_tokens "
                f"{cfg.max_batch_tokens}; one prompt must fit in a batch"
            )
        return asked
    return min(model_limit or cfg.max_batch_tokens, cfg.max_batch_tokens)
