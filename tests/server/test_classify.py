"""The classify routes through Starlette's TestClient: shapes, labels, activation, errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.builders import build_model, sentences
from tests.reference import reference_probs
from tests.server.conftest import SERVED
from tests.support import max_abs_diff


def _error(resp: Any, status: int, type_: str, param: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert err["type"] == type_
    assert err["code"] == status
    assert err["param"] == param
    assert err["message"]
    return err


@pytest.mark.parametrize("route", ["/classify", "/v1/classify"])
def test_response_shape(client: TestClient, route: str) -> None:
    resp = client.post(route, json={"model": SERVED, "input": ["good movie", "awful plot"]})
    assert resp.status_code == 200
    body = resp.json()
    assert body["id"].startswith("classify-")
    assert body["object"] == "list"
    assert isinstance(body["created"], int)
    assert body["model"] == SERVED
    assert [d["index"] for d in body["data"]] == [0, 1]
    for item in body["data"]:
        assert item["num_classes"] == 3 == len(item["probs"])
        assert math.isclose(sum(item["probs"]), 1.0, abs_tol=1e-6)
        best = max(range(3), key=item["probs"].__getitem__)
        assert item["label"] == ["neg", "neu", "pos"][best]
    usage = body["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] == 4 + 4  # [CLS] w w [SEP] each
    assert usage["completion_tokens"] == 0
    assert usage["prompt_tokens_details"] is None


def test_model_is_optional_and_aliases_work(client: TestClient) -> None:
    assert client.post("/classify", json={"input": "fine"}).json()["model"] == SERVED
    assert client.post("/classify", json={"model": "alias", "input": "fine"}).json()["model"] == (
        "alias"
    )


def test_probs_match_transformers(client: TestClient, bert_dir: Path) -> None:
    texts = sentences(24, seed=3, max_words=40)
    body = client.post("/classify", json={"input": texts}).json()
    got = [d["probs"] for d in body["data"]]
    assert max_abs_diff(got, reference_probs(bert_dir, texts)) <= 1e-5


def test_token_ids_equal_text(client: TestClient, bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(bert_dir)("a dull film")["input_ids"]
    as_text = client.post("/classify", json={"input": "a dull film"}).json()["data"]
    one = client.post("/classify", json={"input": ids}).json()["data"]
    many = client.post("/classify", json={"input": [ids, ids[:3]]}).json()["data"]
    assert one[0]["probs"] == as_text[0]["probs"]
    # In a padded batch of two the sums run in another order: equal to fp32 rounding.
    assert many[0]["probs"] == pytest.approx(as_text[0]["probs"], abs=1e-6)
    assert len(many) == 2


def test_use_activation_false_gives_logits(client: TestClient) -> None:
    probs = client.post("/classify", json={"input": "good"}).json()["data"][0]["probs"]
    for field in ("use_activation", "activation"):
        resp = client.post("/classify", json={"input": "good", field: False})
        logits = resp.json()["data"][0]["probs"]
        exps = [math.exp(x) for x in logits]
        assert [e / sum(exps) for e in exps] == pytest.approx(probs, abs=1e-7)
        assert not math.isclose(sum(logits), 1.0, abs_tol=1e-3)


def test_unknown_fields_are_ignored(client: TestClient) -> None:
    resp = client.post("/classify", json={"input": "ok", "user": "u1", "encoding_format": "x"})
    assert resp.status_code == 200


def test_request_id_is_echoed(client: TestClient) -> None:
    resp = client.post("/classify", json={"input": "ok", "request_id": "abc"})
    assert resp.headers["x-request-id"] == "abc"
    assert resp.json()["id"] == "classify-abc"
    resp = client.post("/classify", json={"input": "ok"}, headers={"X-Request-Id": "hdr-1"})
    assert resp.json()["id"] == "classify-hdr-1"
    for name in ("x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time"):
        assert float(resp.headers[name]) >= 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["good", ""]}, "input[1]"),
        ({"input": [[1, 2], []]}, "input[1]"),
        ({"input": ["good", 3]}, "input[1]"),
        ({"input": [1, "a"]}, "input[1]"),
        ({"input": 5}, "input"),
        ({"input": {"a": 1}}, "input"),
        ({"input": [1.5]}, "input[0]"),
        ({}, "input"),
        ({"input": "x", "priority": "high"}, "priority"),
        ({"input": "x", "truncate_prompt_tokens": -2}, "truncate_prompt_tokens"),
        ({"input": "x", "truncation_side": "middle"}, "truncation_side"),
        ({"input": "x", "normalize": True}, "normalize"),
        ({"input": [[0, 999999]]}, "input[0]"),
        ({"input": [-1]}, "input[0]"),
    ],
)
def test_bad_input_is_400(client: TestClient, body: dict[str, Any], param: str) -> None:
    _error(client.post("/classify", json=body), 400, "BadRequestError", param)


@pytest.mark.parametrize("raw", [b"{", b"not json", b"", b"[1, 2]", b'"text"'])
def test_bad_json_is_400(client: TestClient, raw: bytes) -> None:
    resp = client.post("/classify", content=raw, headers={"content-type": "application/json"})
    _error(resp, 400, "BadRequestError")


def test_normalize_points_to_use_activation(client: TestClient) -> None:
    err = _error(
        client.post("/classify", json={"input": "x", "normalize": True}),
        400,
        "BadRequestError",
        "normalize",
    )
    assert "use_activation" in err["message"]


def test_too_long_is_400_naming_both_lengths(client: TestClient) -> None:
    text = " ".join(["movie"] * 300)
    _error(client.post("/classify", json={"input": text}), 400, "BadRequestError", "input_tokens")
    resp = client.post("/classify", json={"input": ["ok", text]})
    err = _error(resp, 400, "BadRequestError", "input_tokens")
    assert "302" in err["message"] and "128" in err["message"]


def test_truncation_makes_long_input_fit(client: TestClient) -> None:
    text = " ".join(["movie"] * 300)
    for keep, expected in ((-1, 128), (10, 10)):
        resp = client.post("/classify", json={"input": text, "truncate_prompt_tokens": keep})
        assert resp.status_code == 200, resp.text
        assert resp.json()["usage"]["prompt_tokens"] == expected
    resp = client.post("/classify", json={"input": text, "truncate_prompt_tokens": 129})
    _error(resp, 400, "BadRequestError", "truncate_prompt_tokens")


def test_unknown_model_is_404(client: TestClient) -> None:
    err = _error(
        client.post("/classify", json={"model": "nope", "input": "x"}), 404, "NotFoundError"
    )
    assert err["message"] == "The model `nope` does not exist."


def test_unknown_route_and_method(client: TestClient) -> None:
    assert client.post("/nothing-here", json={}).status_code == 404
    assert client.get("/classify").status_code == 405


def test_health_models_version(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [SERVED, "alias"]
    for card in models["data"]:
        assert card["object"] == "model"
        assert card["owned_by"] == "classifyd"
        assert card["max_model_len"] == 128
        assert isinstance(card["created"], int)
    assert client.get("/version").json()["version"]


def test_metrics_after_traffic(client: TestClient) -> None:
    client.post("/classify", json={"input": ["a", "b good"]})
    client.post("/classify", json={"input": ""})
    text = client.get("/metrics").text
    for name in (
        "classifyd_queue_waiting_sequences",
        "classifyd_running_sequences",
        "classifyd_batch_size_bucket",
        "classifyd_batch_padded_tokens_sum",
        "classifyd_batch_real_tokens_sum",
        'classifyd_request_phase_seconds_bucket{le="0.001",phase="queue"}',
        'classifyd_requests_total{outcome="success",status="200"}',
        'classifyd_requests_total{outcome="error",status="400"}',
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:request_queue_time_seconds_bucket",
        "vllm:prompt_tokens_total",
        "vllm:request_success_total",
    ):
        assert name in text, name


def test_labels_default_to_label_i(tmp_path: Path) -> None:
    from engine import EngineConfig
    from server.app import create_app

    model = build_model(tmp_path / "m", "bert", num_labels=2)
    with TestClient(create_app(EngineConfig(model=str(model)))) as c:
        body = c.post("/classify", json={"input": "good"}).json()
    assert body["data"][0]["label"] in {"LABEL_0", "LABEL_1"}
    assert body["model"] == str(model)


@pytest.mark.parametrize(
    ("problem_type", "num_labels", "kind"),
    [
        ("multi_label_classification", 3, "sigmoid"),
        ("regression", 1, "none"),
        (None, 1, "sigmoid"),
    ],
)
def test_activation_by_problem_type(
    tmp_path: Path, problem_type: str | None, num_labels: int, kind: str
) -> None:
    from engine import EngineConfig
    from server.app import create_app

    model = build_model(tmp_path / "m", "bert", num_labels=num_labels, problem_type=problem_type)
    with TestClient(create_app(EngineConfig(model=str(model)))) as c:
        probs = c.post("/classify", json={"input": "good"}).json()["data"][0]["probs"]
        logits = c.post("/classify", json={"input": "good", "use_activation": False}).json()
    raw = logits["data"][0]["probs"]
    if kind == "sigmoid":
        assert probs == pytest.approx([1 / (1 + math.exp(-x)) for x in raw], abs=1e-9)
    else:
        assert probs == raw


def test_generated_request_ids_are_unique_across_requests_and_forks() -> None:
    import os

    from server.http import new_request_id

    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then out without running the parent's teardown
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    parent = new_request_id()
    # Same counter position, other prefix: the two processes cannot collide.
    assert child[16:] == parent[16:] and child[:16] != parent[:16]
