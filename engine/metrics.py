"""Prometheus figures of one engine, in a registry of its own (several engines, one process).

Queue depth and running counts are read at scrape time through callbacks, so the hot path
pays nothing for them. vLLM's names are exported too, with vLLM's types, labels (`model_name`,
`engine`) and buckets, so dashboards and autoscalers built for vLLM work unchanged; there a
"request" is one sequence for the gauges and the prompt lengths, since that is what queues and
runs, and one engine call for the timings, whose prompts queue and run together.
The HTTP server adds its own series (server/metrics.py) to the same registry.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
)  # fmt: skip
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_TOKEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


# vLLM's (vllm/v1/metrics/loggers.py): its request latencies, and tokens per engine step.
VLLM_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
VLLM_ITERATION_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
# One engine core: vLLM labels each core's series with its index.
VLLM_ENGINE = "0"


def buckets_1_2_5(limit: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to `limit`: vLLM's buckets for token counts."""
    out: list[int] = []
    scale = 1
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * scale > limit:
                return out
            out.append(mantissa * scale)
        scale *= 10


# Why the engine refuses a request (the `reason` label of classifyd_rejected_requests_total).
REJECT_REASONS = ("overloaded", "queue_full", "timeout", "draining", "unavailable", "worker_dead")


class EngineMetrics:
    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.model_name = model_name
        self.waiting = Gauge(
            "classifyd_queue_waiting_sequences", "Prompts waiting for a batch.", registry=r
        )
        self.waiting_tokens = Gauge(
            "classifyd_queue_waiting_tokens", "Tokens of the prompts waiting.", registry=r
        )
        self.running = Gauge(
            "classifyd_running_sequences", "Prompts in batches handed to the worker.", registry=r
        )
        self.admitted = Gauge(
            "classifyd_admitted_sequences",
            "Prompts admitted and not yet answered (admission permits taken).",
            registry=r,
        )
        self.batch_size = Histogram(
            "classifyd_batch_size", "Prompts per forward.", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_real_tokens = Histogram(
            "classifyd_batch_real_tokens",
            "Real (unpadded) tokens per forward.",
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.batch_padded_tokens = Histogram(
            "classifyd_batch_padded_tokens",
            "Padded tokens per forward: prompts × longest prompt.",
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.phase_seconds = Histogram(
            "classifyd_request_phase_seconds",
            "Request latency by phase: tokenize, queue, inference, total.",
            ["phase"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "classifyd_rejected_requests", "Requests refused, by reason.", ["reason"], registry=r
        )
        self.failed_batches = Counter(
            "classifyd_failed_batches", "Forwards that raised.", registry=r
        )
        # vLLM tells adapters apart by a `lora_name`; requests that named one, by adapter.
        self.lora_requests = Counter(
            "classifyd_lora_requests", "Requests answered by a LoRA adapter.", ["lora_name"],
            registry=r,
        )  # fmt: skip
        self.lora_loaded = Gauge("classifyd_lora_adapters", "LoRA adapters loaded now.", registry=r)
        # /v1/load_lora_adapter and /v1/unload_lora_adapter, by action and result.
        self.lora_updates = Counter(
            "classifyd_lora_updates", "Runtime LoRA adapter loads and unloads.",
            ["action", "result"], registry=r,
        )  # fmt: skip
        self.input_tokens = Histogram(
            "classifyd_input_tokens", "Tokens per prompt.", buckets=_TOKEN_BUCKETS, registry=r
        )
        self._vllm_labels = (model_name, VLLM_ENGINE)
        labels = ["model_name", "engine"]
        self.vllm_running = Gauge(
            "vllm:num_requests_running", "Sequences running (vLLM name).", labels, registry=r
        )
        self.vllm_waiting = Gauge(
            "vllm:num_requests_waiting", "Sequences waiting (vLLM name).", labels, registry=r
        )

        def timing(name: str, what: str) -> Histogram:
            return Histogram(
                name, f"{what} (vLLM name).", labels, buckets=VLLM_LATENCY_BUCKETS, registry=r
            ).labels(*self._vllm_labels)

        self.vllm_e2e = timing("vllm:e2e_request_latency_seconds", "End-to-end request latency")
        self.vllm_queue = timing("vllm:request_queue_time_seconds", "Time in the waiting queue")
        self.vllm_inference = timing("vllm:request_inference_time_seconds", "Time in the forward")
        # An encoder's whole forward is its prefill.
        self.vllm_prefill = timing("vllm:request_prefill_time_seconds", "Time in prefill")
        self.vllm_iteration_tokens = Histogram(
            "vllm:iteration_tokens_total", "Tokens per forward (vLLM name: per engine step).",
            labels, buckets=VLLM_ITERATION_BUCKETS, registry=r,
        ).labels(*self._vllm_labels)  # fmt: skip
        # Sized by the model's maximum length once it is known (`size_prompts`).
        self.vllm_request_prompt_tokens: Histogram | None = None
        self.vllm_prompt_tokens = Counter(
            "vllm:prompt_tokens", "Prompt tokens processed (vLLM name).", labels, registry=r
        ).labels(*self._vllm_labels)
        self.vllm_success = Counter(
            "vllm:request_success", "Requests answered successfully (vLLM name).",
            [*labels, "finished_reason"], registry=r,
        ).labels(*self._vllm_labels, "stop")  # fmt: skip
        self._phases = {
            p: self.phase_seconds.labels(p) for p in ("tokenize", "queue", "inference", "total")
        }
        # Labelled series exist from the first scrape at 0: a series that appears already at 1
        # is invisible to rate()/increase(), so the first refusal of each kind would be lost.
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)

    def bind(
        self,
        waiting: Callable[[], float],
        waiting_tokens: Callable[[], float],
        running: Callable[[], float],
        admitted: Callable[[], float],
    ) -> None:
        """Read the live figures at scrape time."""
        self.waiting.set_function(waiting)
        self.waiting_tokens.set_function(waiting_tokens)
        self.running.set_function(running)
        self.admitted.set_function(admitted)
        self.vllm_waiting.labels(*self._vllm_labels).set_function(waiting)
        self.vllm_running.labels(*self._vllm_labels).set_function(running)

    def size_prompts(self, max_model_len: int) -> None:
        """Create vllm:request_prompt_tokens, bucketed 1-2-5 up to the model's maximum length
        as vLLM buckets it; once (an engine starts once)."""
        if self.vllm_request_prompt_tokens is None:
            self.vllm_request_prompt_tokens = Histogram(
                "vllm:request_prompt_tokens", "Tokens per prompt (vLLM name).",
                ["model_name", "engine"], buckets=buckets_1_2_5(max_model_len),
                registry=self.registry,
            ).labels(*self._vllm_labels)  # fmt: skip

    def observe_batch(self, size: int, real_tokens: int, padded_tokens: int) -> None:
        self.batch_size.observe(size)
        self.batch_real_tokens.observe(real_tokens)
        self.batch_padded_tokens.observe(padded_tokens)
        self.vllm_iteration_tokens.observe(real_tokens)

    def observe_request(
        self, lengths: list[int], tokenize: float, queue: float, inference: float, total: float
    ) -> None:
        by_prompt = self.vllm_request_prompt_tokens
        for length in lengths:
            self.input_tokens.observe(length)
            if by_prompt is not None:
                by_prompt.observe(length)
        self._phases["tokenize"].observe(tokenize)
        self._phases["queue"].observe(queue)
        self._phases["inference"].observe(inference)
        self._phases["total"].observe(total)
        self.vllm_e2e.observe(total)
        self.vllm_queue.observe(queue)
        self.vllm_inference.observe(inference)
        self.vllm_prefill.observe(inference)
        self.vllm_prompt_tokens.inc(sum(lengths))
        self.vllm_success.inc()
