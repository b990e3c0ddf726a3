"""text-embeddings-inference, as its clients see it: `/predict`'s reading of `inputs`, TEI's
`/rerank` body on the shared path, `POST /`, TEI's error body and statuses, its `x-compute-*`
headers (huggingface_hub's InferenceClient: tests/compat)."""

from __future__ import annotations

import json

import pytest

from tests.builders import sentences
from tests.conformance.conftest import LABELS, Live, Reference, long_text, sigmoid
from tests.support import assert_tei_error, softmax

TEXTS = sentences(4, seed=71, max_words=12)
QUERY = "what is the plot"


def _same(got: list[dict], want: list[dict]) -> None:
    """The same answer to float rounding (batch-mates may differ)."""
    assert [sorted(p) for p in got] == [sorted(p) for p in want], (got, want)
    for a, b in zip(got, want, strict=True):
        assert a.get("label") == b.get("label") and a.get("index") == b.get("index"), (a, b)
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def _top(scores: list[float]) -> str:
    return LABELS[max(range(len(scores)), key=lambda i: scores[i])]


# -- /predict: TEI's PredictInput ------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "what"),
    [
        (["a", "b", "c"], "invalid length 3"),
        ([], "invalid length 0"),
        (["a", ["b"]], "invalid type"),
        ([["a"], "b"], 'invalid type: string "b"'),
        ([["a"], []], "invalid length 0"),
    ],
)
def test_predict_refuses_what_tei_cannot_read(clf: Live, inputs: list, what: str) -> None:
    message = assert_tei_error(clf.post("/predict", {"inputs": inputs}), 422, "Validation")
    assert message.startswith("Failed to deserialize the JSON body into the target type: inputs:")
    assert what in message


def test_predict_pair_and_batch_of_pairs(clf: Live, bert_ref: Reference) -> None:
    pair = clf.post("/predict", {"inputs": [TEXTS[0], TEXTS[1]]}).json()
    batch = clf.post("/predict", {"inputs": [[TEXTS[0], TEXTS[1]], [TEXTS[2]]]}).json()
    _same(batch[0], pair)
    assert pair[0]["label"] == _top(softmax(bert_ref.logits(TEXTS[0], TEXTS[1])))
    assert batch[1][0]["label"] == _top(softmax(bert_ref.logits(TEXTS[2])))


def test_predict_headers(clf: Live, bert_ref: Reference) -> None:
    inputs = [[TEXTS[0]], [TEXTS[1], TEXTS[2]]]
    response = clf.post("/predict", {"inputs": inputs})
    assert response.status_code == 200, response.text
    h = response.headers
    assert h["x-compute-type"] == "cpu"
    assert int(h["x-compute-characters"]) == len(TEXTS[0]) + len(TEXTS[1]) + len(TEXTS[2])
    tokens = len(bert_ref.ids(TEXTS[0])) + len(bert_ref.ids(TEXTS[1], TEXTS[2]))
    assert int(h["x-compute-tokens"]) == tokens
    # Whole milliseconds, as TEI writes them.
    for name in ("x-compute-time", "x-total-time", "x-tokenization-time", "x-queue-time"):
        assert h[name].isdigit(), (name, h[name])
    assert int(h["x-total-time"]) >= int(h["x-inference-time"])


def test_predict_errors(clf: Live) -> None:
    assert assert_tei_error(clf.post("/predict", {"inputs": ""}), 400, "Empty") == (
        "Input validation error: `inputs` cannot be empty"
    )
    batch = clf.post("/predict", {"inputs": [["ok"], ["a", ""]]})
    assert "`inputs[1][1]` cannot be empty" in assert_tei_error(batch, 400, "Empty")
    long = clf.post("/predict", {"inputs": [["ok"], [long_text(200)]]})
    message = assert_tei_error(long, 422, "Validation")
    assert message.startswith("Input validation error: `inputs[1]` must have less than 128 tokens")
    assert_tei_error(clf.client.post("/predict", content=b"{nope"), 400, "Validation")
    assert_tei_error(clf.post("/predict", {"inputs": "a", "raw_scores": 3}), 422, "Validation")


@pytest.mark.parametrize("route", ["/predict", "/"])
def test_body_over_limit_is_413_in_teis_body(clf: Live, route: str) -> None:
    body = json.dumps({"inputs": "word " * 1000}).encode()
    response = clf.client.post(route, content=body, headers={"content-type": "application/json"})
    assert "4096" in assert_tei_error(response, 413, "Validation")


# -- POST / ------------------------------------------------------------------------------


def test_root_is_predict_for_a_classifier(clf: Live) -> None:
    # huggingface_hub's body: `parameters` is ignored, as TEI does.
    body = {"inputs": TEXTS[0], "parameters": {"top_k": 2}}
    root = clf.post("/", body)
    assert root.status_code == 200, root.text
    _same(root.json(), clf.post("/predict", {"inputs": TEXTS[0]}).json())
    assert "x-compute-tokens" in root.headers


def test_root_is_rerank_for_a_one_label_model(cross: Live) -> None:
    body = {"query": QUERY, "texts": TEXTS[:3]}
    root = cross.post("/", body)
    assert root.status_code == 200, root.text
    _same(root.json(), cross.post("/rerank", body).json())
    # A predict body there is a rerank body without its fields, as in TEI.
    assert_tei_error(cross.post("/", {"inputs": "hi"}), 422, "Validation")


# -- TEI's /rerank -----------------------------------------------------------------------


def test_tei_rerank(cross: Live, cross_ref: Reference) -> None:
    response = cross.post("/rerank", {"query": QUERY, "texts": TEXTS})
    assert response.status_code == 200, response.text
    ranks = response.json()
    want = [sigmoid(cross_ref.logits(QUERY, t)[0]) for t in TEXTS]
    assert [r["index"] for r in ranks] == sorted(range(len(TEXTS)), key=lambda i: -want[i])
    for rank in ranks:
        assert set(rank) == {"index", "score"}
        assert rank["score"] == pytest.approx(want[rank["index"]], abs=1e-5)
    h = response.headers
    chars = len(QUERY) * len(TEXTS) + sum(len(t) for t in TEXTS)
    assert int(h["x-compute-characters"]) == chars
    tokens = sum(len(cross_ref.ids(QUERY, t)) for t in TEXTS)
    assert int(h["x-compute-tokens"]) == tokens


def test_tei_rerank_raw_scores_and_return_text(cross: Live, cross_ref: Reference) -> None:
    body = {"query": QUERY, "texts": TEXTS[:2], "raw_scores": True, "return_text": True}
    ranks = cross.post("/rerank", body).json()
    for rank in ranks:
        assert rank["text"] == TEXTS[rank["index"]]
        want = cross_ref.logits(QUERY, TEXTS[rank["index"]])[0]
        assert rank["score"] == pytest.approx(want, abs=1e-5)


def test_tei_rerank_truncates_as_asked(cross: Live, cross_ref: Reference) -> None:
    text = long_text(200, seed=5)
    refused = cross.post("/rerank", {"query": QUERY, "texts": ["ok", text]})
    assert "`texts[1]` must have less than" in assert_tei_error(refused, 422, "Validation")
    for direction in ("Right", "left"):
        body = {"query": QUERY, "texts": [text], "truncate": True}
        body["truncation_direction"] = direction
        [rank] = cross.post("/rerank", body).json()
        side = direction.lower()
        logit = cross_ref.logits(QUERY, text, side=side, truncation=True, max_length=128)[0]
        assert rank["score"] == pytest.approx(sigmoid(logit), abs=1e-5)


def test_tei_rerank_errors(cross: Live, clf: Live) -> None:
    empty = cross.post("/rerank", {"query": QUERY, "texts": []})
    assert assert_tei_error(empty, 400, "Empty") == "`texts` cannot be empty"
    # TEI's order: the model's kind is checked before the batch size.
    message = assert_tei_error(
        clf.post("/rerank", {"query": "q", "texts": ["a"] * 9}), 424, "Backend"
    )
    assert message == "Backend error: model is not a re-ranker model"
    assert_tei_error(cross.post("/rerank", {"texts": ["a"]}), 422, "Validation")
    blank = cross.post("/rerank", {"query": "", "texts": ["a"]})
    assert "`query` cannot be empty" in assert_tei_error(blank, 400, "Empty")


def test_vllm_rerank_body_is_still_vllms(cross: Live) -> None:
    vllm = cross.post("/rerank", {"query": QUERY, "documents": TEXTS[:2]})
    assert vllm.status_code == 200, vllm.text
    assert {"id", "results"} <= set(vllm.json())
    # Both fields: vLLM's body, vLLM's answer.
    both = cross.post("/rerank", {"query": QUERY, "documents": TEXTS[:2], "texts": ["x"]})
    assert both.status_code == 200 and "results" in both.json()
