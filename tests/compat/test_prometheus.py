"""Prometheus's own text parser over /metrics after traffic: every family parses, and the
vLLM series carry vLLM's labels (model_name, engine)."""

from __future__ import annotations

from tests.compat.conftest import DOCS, QUERY, Live

VLLM_FAMILIES = {
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:request_success",
    "vllm:prompt_tokens",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_prompt_tokens",
    "vllm:request_inference_time_seconds",
    "vllm:request_prefill_time_seconds",
    "vllm:iteration_tokens_total",
}


def test_metrics_parse_with_prometheus_parser(cross: Live) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    for _ in range(3):
        assert cross.post("/rerank", {"query": QUERY, "documents": DOCS}).status_code == 200
    assert cross.post("/score", {"text_1": QUERY, "text_2": DOCS[:2]}).status_code == 200
    assert cross.post("/rerank", {"query": "", "documents": DOCS}).status_code == 400
    # /metrics needs no key.
    response = cross.client.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200, response.text
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert set(families) >= VLLM_FAMILIES, sorted(VLLM_FAMILIES - set(families))
    for name in VLLM_FAMILIES:
        for sample in families[name].samples:
            assert sample.labels.get("model_name") == "cross", sample
            assert sample.labels.get("engine") == "0", sample
    success = sum(
        s.value for s in families["vllm:request_success"].samples if s.name.endswith("_total")
    )
    assert success >= 4
    prompt = [
        s for s in families["vllm:request_prompt_tokens"].samples if s.name.endswith("_count")
    ]
    assert prompt and prompt[0].value >= 4
