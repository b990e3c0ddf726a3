"""docs/API.md's other routes: SageMaker, TEI, tokenize, probes, cards, metrics, score, rerank."""

from __future__ import annotations

import re

import pytest

from tests.builders import sentences
from tests.conformance.conftest import LABELS, Live, Reference, close, long_text, sigmoid
from tests.support import assert_error, assert_tei_error, probs_of, softmax

TEXTS = sentences(4, seed=33, max_words=15)
TIMING = ("x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time")


# -- /invocations ---------------------------------------------------------------------


def test_invocations_is_classify(clf: Live) -> None:
    body = {"model": "alias", "input": TEXTS, "request_id": "sm-1"}
    sagemaker = clf.post("/invocations", body)
    vllm = clf.post("/classify", body)
    assert sagemaker.status_code == vllm.status_code == 200
    got, want = sagemaker.json(), vllm.json()
    assert got.pop("created") - want.pop("created") in (0, 1, -1)
    assert got == want
    assert got["id"] == "classify-sm-1" and got["model"] == "alias"


# -- /predict (TEI) -------------------------------------------------------------------


def _ranked(scores: list[float]) -> list[dict]:
    pairs = sorted(zip(scores, LABELS, strict=True), key=lambda p: -p[0])
    return [{"label": label, "score": score} for score, label in pairs]


def _same_predictions(got: list[dict], want: list[dict], tol: float = 1e-5) -> None:
    assert [p["label"] for p in got] == [p["label"] for p in want], (got, want)
    assert all(set(p) == {"label", "score"} for p in got)
    assert close([p["score"] for p in got], [p["score"] for p in want], tol)
    scores = [p["score"] for p in got]
    assert scores == sorted(scores, reverse=True)


def test_predict_string(clf: Live, bert_ref: Reference) -> None:
    response = clf.post("/predict", {"inputs": TEXTS[0]})
    assert response.status_code == 200, response.text
    _same_predictions(response.json(), _ranked(softmax(bert_ref.logits(TEXTS[0]))))
    assert all(h in response.headers for h in TIMING)


def test_predict_pair_goes_through_the_tokenizer_as_a_pair(clf: Live, bert_ref: Reference) -> None:
    a, b = TEXTS[0], TEXTS[1]
    response = clf.post("/predict", {"inputs": [a, b]})
    assert response.status_code == 200, response.text
    _same_predictions(response.json(), _ranked(softmax(bert_ref.logits(a, b))))
    # Not the same as the two texts joined.
    joined = softmax(bert_ref.logits(f"{a} {b}"))
    got = {p["label"]: p["score"] for p in response.json()}
    assert not close([got[label] for label in LABELS], joined, 1e-3)


def test_predict_batch(clf: Live, bert_ref: Reference) -> None:
    # TEI's batch: a list of `[text]` and `[a, b]` lists.
    inputs = [[TEXTS[0]], [TEXTS[1], TEXTS[2]], [TEXTS[3]], [TEXTS[3], TEXTS[0]]]
    response = clf.post("/predict", {"inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list) and len(body) == len(inputs)
    for item, got in zip(inputs, body, strict=True):
        _same_predictions(got, _ranked(softmax(bert_ref.logits(*item))))


def test_predict_one_text_in_a_list_is_one_text(clf: Live, bert_ref: Reference) -> None:
    # As TEI reads it (its PredictInput): `[text]` is a single input, `[[text]]` a batch of
    # one, and three bare strings are no input at all (see test_tei_compat.py).
    one = clf.post("/predict", {"inputs": [TEXTS[0]]}).json()
    _same_predictions(one, _ranked(softmax(bert_ref.logits(TEXTS[0]))))
    batch = clf.post("/predict", {"inputs": [[TEXTS[0]]]}).json()
    assert len(batch) == 1 and batch[0] == one


def test_predict_raw_scores(clf: Live, bert_ref: Reference) -> None:
    response = clf.post("/predict", {"inputs": TEXTS[1], "raw_scores": True})
    assert response.status_code == 200, response.text
    _same_predictions(response.json(), _ranked(bert_ref.logits(TEXTS[1])))


def test_predict_truncate(clf: Live, bert_ref: Reference) -> None:
    text = long_text(200, seed=3)
    message = assert_tei_error(clf.post("/predict", {"inputs": text}), 422, "Validation")
    assert message.startswith("Input validation error: `inputs` must have less than 128 tokens.")
    refused = clf.post("/predict", {"inputs": text, "truncate": False})
    assert_tei_error(refused, 422, "Validation")
    got = {}
    for direction, side in (("Right", "right"), ("Left", "left"), ("left", "left")):
        body = {"inputs": text, "truncate": True, "truncation_direction": direction}
        response = clf.post("/predict", body)
        assert response.status_code == 200, response.text
        want = softmax(bert_ref.logits(text, side=side, truncation=True, max_length=128))
        _same_predictions(response.json(), _ranked(want))
        got[direction] = response.json()
    default = clf.post("/predict", {"inputs": text, "truncate": True}).json()
    assert default == got["Right"]
    assert got["Left"] != got["Right"]


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        # TEI's kinds and statuses: an empty text is `Empty` (400), any other refusal of
        # the body `Validation` (422).
        ({"inputs": ""}, 400, "Empty"),
        ({"inputs": []}, 422, "Validation"),
        ({"inputs": ["a", ""]}, 400, "Empty"),
        ({"inputs": ["a", "b", ""]}, 422, "Validation"),
        ({"inputs": [["a", ""]]}, 400, "Empty"),
        ({"inputs": [["a", "b", "c"]]}, 422, "Validation"),
        ({"inputs": 5}, 422, "Validation"),
        ({}, 422, "Validation"),
        ({"inputs": "a", "truncation_direction": "up"}, 422, "Validation"),
    ],
)
def test_predict_bad_requests(clf: Live, body: dict, status: int, kind: str) -> None:
    assert_tei_error(clf.post("/predict", body), status, kind)


# -- /tokenize ------------------------------------------------------------------------


@pytest.mark.parametrize("special", [None, True, False])
def test_tokenize(clf: Live, bert_ref: Reference, special: bool | None) -> None:
    text = "The movie was GREAT, really!"
    body: dict = (
        {"prompt": text} if special is None else {"prompt": text, "add_special_tokens": special}
    )
    response = clf.post("/tokenize", body)
    assert response.status_code == 200, response.text
    ids = bert_ref.ids(text, add_special_tokens=special is not False)
    expected = {"tokens": ids, "count": len(ids), "max_model_len": 128, "token_strs": None}
    assert response.json() == expected


def test_tokenize_with_model_and_errors(clf: Live) -> None:
    assert clf.post("/tokenize", {"model": "alias", "prompt": "hi"}).status_code == 200
    assert_error(clf.post("/tokenize", {}), 400, "BadRequestError", None)
    assert_error(clf.post("/tokenize", {"prompt": 3}), 400, "BadRequestError", "prompt")


# -- probes, cards, info --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/health"), ("GET", "/ping"), ("POST", "/ping")]
)
def test_probes(clf: Live, method: str, path: str) -> None:
    response = clf.client.request(method, path)
    assert response.status_code == 200
    assert response.content == b""


def test_version(clf: Live) -> None:
    body = clf.get("/version").json()
    assert set(body) == {"version"}
    assert isinstance(body["version"], str) and re.match(r"\d+\.\d+", body["version"])


def test_models(clf: Live) -> None:
    response = clf.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [card["id"] for card in body["data"]] == ["tiny", "alias"]
    for card in body["data"]:
        assert card["object"] == "model"
        assert card["owned_by"] == "classifyd"
        assert isinstance(card["created"], int) and card["created"] > 1_600_000_000
        assert card["max_model_len"] == 128


def test_info(clf: Live) -> None:
    body = clf.get("/info").json()
    assert body["served_model_names"] == ["tiny", "alias"]
    assert body["labels"] == LABELS and body["num_labels"] == 3
    assert body["activation"] == "softmax"
    assert body["dtype"] == "float32" and body["device"] == "cpu"
    assert body["architecture"] == "BertForSequenceClassification"
    assert body["model_type"] == "bert"
    assert body["version"] == clf.get("/version").json()["version"]
    limits = body["limits"]
    assert limits["max_model_len"] == 128
    assert limits["max_client_batch_size"] == 8
    assert limits["max_body_bytes"] == 4096
    assert limits["max_concurrent_requests"] >= 1


def test_info_cross_encoder(cross: Live) -> None:
    body = cross.get("/info").json()
    assert body["labels"] == ["LABEL_0"] and body["activation"] == "sigmoid"


# -- /metrics -------------------------------------------------------------------------

CLASSIFYD_METRICS = (
    "classifyd_queue_waiting_sequences",
    "classifyd_queue_waiting_tokens",
    "classifyd_running_sequences",
    "classifyd_batch_size",
    "classifyd_batch_real_tokens",
    "classifyd_batch_padded_tokens",
    "classifyd_request_phase_seconds",
    "classifyd_requests",
    "classifyd_rejected_requests",
    "classifyd_input_tokens",
)
VLLM_METRICS = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:prompt_tokens_total",
    "vllm:request_success_total",
)


def _samples(text: str) -> set[str]:
    """Sample names, and the names of families declared (a labelled one may have none yet)."""
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    samples = {line.split("{")[0].split()[0] for line in text.splitlines() if line[:1] != "#"}
    return names | samples


def test_metrics(clf: Live) -> None:
    assert clf.post("/classify", {"input": "warm"}).status_code == 200
    response = clf.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    samples = _samples(text)
    for name in CLASSIFYD_METRICS:
        assert {name, f"{name}_total", f"{name}_bucket"} & samples, name
    for name in VLLM_METRICS:
        assert name in samples, name
    assert 'classifyd_requests_total{outcome="success",status="200"}' in text
    for line in text.splitlines():
        if line.startswith("vllm:request_success_total"):
            assert float(line.split()[-1]) >= 1


# -- /score ---------------------------------------------------------------------------

SCORE_ROUTES = ("/score", "/v1/score")
RERANK_ROUTES = ("/rerank", "/v1/rerank")
QUERY = "is the hotel room good"
DOCS = sentences(5, seed=44, max_words=12)


def _score_of(ref: Reference, a: str, b: str) -> float:
    return sigmoid(ref.logits(a, b)[0])


def _check_score(body: dict, expected: list[float]) -> None:
    assert set(body) == {"id", "object", "created", "model", "data", "usage"}, body
    assert body["object"] == "list" and body["model"] == "cross"
    assert body["id"].startswith("score-")
    assert [d["index"] for d in body["data"]] == list(range(len(expected)))
    assert all(d["object"] == "score" for d in body["data"])
    assert close([d["score"] for d in body["data"]], expected)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("route", SCORE_ROUTES)
def test_score_one_to_one(cross: Live, cross_ref: Reference, route: str) -> None:
    response = cross.post(route, {"text_1": QUERY, "text_2": DOCS[0]})
    assert response.status_code == 200, response.text
    _check_score(response.json(), [_score_of(cross_ref, QUERY, DOCS[0])])
    tokens = len(cross_ref.ids(QUERY, DOCS[0]))
    assert response.json()["usage"]["prompt_tokens"] == tokens
    listed = cross.post(route, {"text_1": [QUERY], "text_2": [DOCS[0]]})
    _check_score(listed.json(), [_score_of(cross_ref, QUERY, DOCS[0])])


@pytest.mark.parametrize("route", SCORE_ROUTES)
def test_score_one_to_many(cross: Live, cross_ref: Reference, route: str) -> None:
    response = cross.post(route, {"text_1": QUERY, "text_2": DOCS})
    assert response.status_code == 200, response.text
    _check_score(response.json(), [_score_of(cross_ref, QUERY, d) for d in DOCS])


@pytest.mark.parametrize("route", SCORE_ROUTES)
def test_score_many_to_many(cross: Live, cross_ref: Reference, route: str) -> None:
    firsts = sentences(len(DOCS), seed=45, max_words=8)
    response = cross.post(route, {"text_1": firsts, "text_2": DOCS, "model": "cross"})
    assert response.status_code == 200, response.text
    expected = [_score_of(cross_ref, a, b) for a, b in zip(firsts, DOCS, strict=True)]
    _check_score(response.json(), expected)
    assert len({round(x, 4) for x in expected}) > 1


@pytest.mark.parametrize("route", SCORE_ROUTES)
def test_score_raw_logits(cross: Live, cross_ref: Reference, route: str) -> None:
    response = cross.post(route, {"text_1": QUERY, "text_2": DOCS[:2], "use_activation": False})
    expected = [cross_ref.logits(QUERY, d)[0] for d in DOCS[:2]]
    _check_score(response.json(), expected)


@pytest.mark.parametrize("route", SCORE_ROUTES)
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"text_1": ["a", "b"], "text_2": ["c", "d", "e"]}, "text_2"),
        ({"text_1": ["a", "b", "c"], "text_2": ["d"]}, "text_2"),
        ({"text_1": [], "text_2": ["d"]}, "text_1"),
        ({"text_1": "a", "text_2": []}, "text_2"),
        ({"text_1": "", "text_2": "b"}, "text_1"),
        ({"text_1": [""], "text_2": "b"}, "text_1[0]"),
        ({"text_1": "a"}, None),
        ({"text_1": "a", "text_2": 3}, "text_2"),
        ({"text_1": "a", "text_2": "b", "truncate_prompt_tokens": -2}, "truncate_prompt_tokens"),
    ],
)
def test_score_bad_requests(cross: Live, route: str, body: dict, param: str | None) -> None:
    assert_error(cross.post(route, body), 400, "BadRequestError", param)


@pytest.mark.parametrize("route", [*SCORE_ROUTES, *RERANK_ROUTES])
def test_score_and_rerank_need_one_label(clf: Live, route: str) -> None:
    body = (
        {"text_1": "a", "text_2": "b"}
        if "score" in route
        else {"query": "a", "documents": ["b", "c"]}
    )
    error = assert_error(clf.post(route, body), 404, "NotFoundError", None)
    assert "3" in error["message"]


# -- /rerank --------------------------------------------------------------------------


def _check_rerank(body: dict, docs: list[str], scores: list[float], top_n: int | None) -> None:
    assert set(body) == {"id", "model", "usage", "results"}, body
    assert body["id"].startswith("rerank-") and body["model"] == "cross"
    assert body["usage"]["total_tokens"] > 0
    order = sorted(range(len(docs)), key=lambda i: -scores[i])[: top_n or None]
    results = body["results"]
    assert [r["index"] for r in results] == order
    for r in results:
        assert set(r) == {"index", "document", "relevance_score"}
        assert r["document"] == {"text": docs[r["index"]]}
        assert abs(r["relevance_score"] - scores[r["index"]]) <= 1e-5
    got = [r["relevance_score"] for r in results]
    assert got == sorted(got, reverse=True)


@pytest.mark.parametrize("route", RERANK_ROUTES)
@pytest.mark.parametrize("top_n", [None, 0, 2, 5, 10])
def test_rerank(cross: Live, cross_ref: Reference, route: str, top_n: int | None) -> None:
    body: dict = {"query": QUERY, "documents": DOCS}
    if top_n is not None:
        body["top_n"] = top_n
    response = cross.post(route, body)
    assert response.status_code == 200, response.text
    scores = [_score_of(cross_ref, QUERY, d) for d in DOCS]
    _check_rerank(response.json(), DOCS, scores, top_n)
    # The same numbers /score gives.
    score = cross.post("/score", {"text_1": QUERY, "text_2": DOCS}).json()
    by_index = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
    for item in score["data"]:
        if item["index"] in by_index:
            assert abs(item["score"] - by_index[item["index"]]) <= 1e-6


@pytest.mark.parametrize("route", RERANK_ROUTES)
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query": "q", "documents": []}, "documents"),
        ({"query": "", "documents": ["d"]}, "query"),
        ({"query": "q", "documents": ["d", ""]}, "documents[1]"),
        ({"query": "q", "documents": ["d"], "top_n": -1}, "top_n"),
        ({"query": "q"}, None),
        # One bare string is one document (as vLLM reads it); an empty one names the field.
        ({"query": "q", "documents": ""}, "documents"),
    ],
)
def test_rerank_bad_requests(cross: Live, route: str, body: dict, param: str | None) -> None:
    assert_error(cross.post(route, body), 400, "BadRequestError", param)


# -- timing headers and request ids on every classify-family route ----------------------

FAMILY = [
    ("clf", "/classify", {"input": "hi"}),
    ("clf", "/v1/classify", {"input": "hi"}),
    ("clf", "/invocations", {"input": "hi"}),
    ("clf", "/predict", {"inputs": "hi"}),
    ("clf", "/predict", {"inputs": [["hi"], ["a", "b"]]}),
    ("cross", "/score", {"text_1": "a", "text_2": "b"}),
    ("cross", "/v1/score", {"text_1": "a", "text_2": "b"}),
    ("cross", "/rerank", {"query": "a", "documents": ["b"]}),
    ("cross", "/v1/rerank", {"query": "a", "documents": ["b"]}),
]


@pytest.mark.parametrize(("server", "route", "body"), FAMILY)
def test_timing_headers(
    request: pytest.FixtureRequest, server: str, route: str, body: dict
) -> None:
    live: Live = request.getfixturevalue(server)
    response = live.post(route, body, headers={"X-Request-Id": "timed-1"})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "timed-1"
    values = {h: float(response.headers[h]) for h in TIMING}
    assert all(v >= 0 for v in values.values()), values
    assert values["x-total-time"] >= values["x-inference-time"]
    assert values["x-total-time"] >= values["x-tokenization-time"]


# -- --auto-truncate ------------------------------------------------------------------


def test_auto_truncate(auto: Live, bert_ref: Reference) -> None:
    text = long_text(200, seed=9)
    response = auto.post("/classify", {"input": [text, "short"]})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] == 128 + len(bert_ref.ids("short"))
    expected = softmax(bert_ref.logits(text, truncation=True, max_length=128))
    assert close(probs_of(response)[0], expected)
    left = auto.post("/classify", {"input": text, "truncation_side": "left"})
    want = softmax(bert_ref.logits(text, side="left", truncation=True, max_length=128))
    assert close(probs_of(left)[0], want)
    # An explicit limit still wins, and so does an explicit refusal to truncate over max.
    asked = auto.post("/classify", {"input": text, "truncate_prompt_tokens": 20})
    assert asked.json()["usage"]["prompt_tokens"] == 20
    over = auto.post("/classify", {"input": text, "truncate_prompt_tokens": 129})
    assert_error(over, 400, "BadRequestError", "truncate_prompt_tokens")
    tei = auto.post("/predict", {"inputs": text})
    assert tei.status_code == 200, tei.text
    _same_predictions(tei.json(), _ranked(expected))


# -- text pairs sharing a batch with single texts ----------------------------------------


def test_predict_mixed_texts_and_pairs(cross: Live, cross_ref: Reference) -> None:
    inputs = [[DOCS[0]], [QUERY, DOCS[1]], [DOCS[2]], [DOCS[3], DOCS[4]]]
    response = cross.post("/predict", {"inputs": inputs})
    assert response.status_code == 200, response.text
    for item, got in zip(inputs, response.json(), strict=True):
        logit = cross_ref.logits(*item)[0]
        assert got == [{"label": "LABEL_0", "score": pytest.approx(sigmoid(logit), abs=1e-5)}]


async def test_pairs_batched_with_texts_keep_segment_ids(cross: Live, cross_ref: Reference) -> None:
    """Batching never changes a result, also when /score pairs share forwards with texts."""
    import asyncio

    import httpx

    texts = sentences(24, seed=46, max_words=10)
    expected = [_score_of(cross_ref, QUERY, d) for d in texts]
    async with httpx.AsyncClient(base_url=cross.url, timeout=60) as client:

        async def text(t: str) -> None:
            response = await client.post("/classify", json={"input": t})
            assert response.status_code == 200, response.text

        async def pair(d: str) -> float:
            response = await client.post("/score", json={"text_1": QUERY, "text_2": d})
            assert response.status_code == 200, response.text
            score: float = response.json()["data"][0]["score"]
            return score

        work = [item for t in texts for item in (text(t), pair(t))]
        results = await asyncio.gather(*work)
    got = results[1::2]
    bad = [i for i, (g, w) in enumerate(zip(got, expected, strict=True)) if abs(g - w) > 1e-5]
    assert not bad, [(got[i], expected[i]) for i in bad]
