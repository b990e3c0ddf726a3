"""The vLLM series on /metrics: the names, types, labels and buckets vLLM's dashboards read
(vllm/v1/metrics/loggers.py), after real traffic."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.testclient import TestClient

from engine.metrics import VLLM_ITERATION_BUCKETS, VLLM_LATENCY_BUCKETS, buckets_1_2_5
from tests.server.conftest import SERVED

# family → its type in vLLM. Histograms and counters are families without their suffixes.
VLLM_SERIES = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_queue_time_seconds": "histogram",
    "vllm:request_inference_time_seconds": "histogram",
    "vllm:request_prefill_time_seconds": "histogram",
    "vllm:request_prompt_tokens": "histogram",
    "vllm:iteration_tokens_total": "histogram",
    "vllm:prompt_tokens": "counter",
    "vllm:request_success": "counter",
}


@pytest.fixture(scope="module")
def samples(client: TestClient) -> dict[str, tuple[str, list[Sample]]]:
    # Two prompts of 4 tokens ([CLS] w w [SEP]) in one request, then one of 3.
    assert client.post("/classify", json={"input": ["good movie", "awful plot"]}).status_code == 200
    assert client.post("/classify", json={"input": "fine"}).status_code == 200
    text = client.get("/metrics").text
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


def _of(samples: dict[str, tuple[str, list[Sample]]], family: str) -> Iterator[Sample]:
    yield from samples[family][1]


@pytest.mark.parametrize(("family", "kind"), VLLM_SERIES.items())
def test_vllm_family_type_and_labels(
    samples: dict[str, tuple[str, list[Sample]]], family: str, kind: str
) -> None:
    # vLLM names its iteration histogram with a `_total` the parser keeps in the family name.
    assert family in samples, sorted(n for n in samples if n.startswith("vllm:"))
    assert samples[family][0] == kind
    for sample in _of(samples, family):
        assert sample.labels["model_name"] == SERVED, sample
        assert sample.labels["engine"] == "0", sample


def _buckets(samples: dict[str, tuple[str, list[Sample]]], family: str) -> list[float]:
    return [
        float(s.labels["le"])
        for s in _of(samples, family)
        if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
    ]


@pytest.mark.parametrize(
    "family",
    [
        "vllm:e2e_request_latency_seconds",
        "vllm:request_queue_time_seconds",
        "vllm:request_inference_time_seconds",
        "vllm:request_prefill_time_seconds",
    ],
)
def test_latency_buckets_are_vllms(
    samples: dict[str, tuple[str, list[Sample]]], family: str
) -> None:
    assert _buckets(samples, family) == list(VLLM_LATENCY_BUCKETS)
    assert VLLM_LATENCY_BUCKETS[:3] == (0.3, 0.5, 0.8) and VLLM_LATENCY_BUCKETS[-1] == 7680.0
    count = next(s for s in _of(samples, family) if s.name.endswith("_count"))
    assert count.value == 2  # one per request


def test_prompt_tokens_per_prompt_bucketed_to_the_model_length(
    samples: dict[str, tuple[str, list[Sample]]],
) -> None:
    # The tiny BERT's maximum length is 128: 1-2-5 buckets up to it, as vLLM sizes them.
    assert _buckets(samples, "vllm:request_prompt_tokens") == [1, 2, 5, 10, 20, 50, 100]
    values = {s.name: s.value for s in _of(samples, "vllm:request_prompt_tokens")}
    assert values["vllm:request_prompt_tokens_count"] == 3
    assert values["vllm:request_prompt_tokens_sum"] == 4 + 4 + 3
    total = {s.name: s.value for s in _of(samples, "vllm:prompt_tokens")}
    assert total["vllm:prompt_tokens_total"] == 11


def test_iteration_tokens_are_per_forward(samples: dict[str, tuple[str, list[Sample]]]) -> None:
    assert _buckets(samples, "vllm:iteration_tokens_total") == list(VLLM_ITERATION_BUCKETS)
    values = {s.name: s.value for s in _of(samples, "vllm:iteration_tokens_total")}
    assert values["vllm:iteration_tokens_total_count"] >= 2
    assert values["vllm:iteration_tokens_total_sum"] == 11


def test_success_counts_stop(samples: dict[str, tuple[str, list[Sample]]]) -> None:
    [total] = [s for s in _of(samples, "vllm:request_success") if s.name.endswith("_total")]
    assert total.labels["finished_reason"] == "stop"
    assert total.value == 2


def test_buckets_1_2_5() -> None:
    assert buckets_1_2_5(100) == [1, 2, 5, 10, 20, 50, 100]
    assert buckets_1_2_5(8192)[-3:] == [1000, 2000, 5000]
    assert buckets_1_2_5(0) == []
