"""/score and /rerank as current vLLM answers them: every pair of field names /score takes,
RerankUsage's prompt_tokens, documents as objects, max_tokens_per_doc, the older
`activation`, and Cohere's /v2/rerank (vLLM serves it with the /rerank handler)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import sentences
from tests.conformance.conftest import Live, Reference, close, long_text, sigmoid
from tests.support import assert_error

SCORE_ROUTES = ("/score", "/v1/score")
RERANK_ROUTES = ("/rerank", "/v1/rerank", "/v2/rerank")
QUERY = "is the hotel room good"
DOCS = sentences(4, seed=61, max_words=30)
FIRSTS = sentences(4, seed=62, max_words=8)
PAIR_NAMES = [("text_1", "text_2"), ("queries", "documents"), ("queries", "items"),
              ("data_1", "data_2")]  # fmt: skip


def _scores(body: dict[str, Any]) -> list[float]:
    return [d["score"] for d in body["data"]]


def _per_doc(ref: Reference, query: str, doc: str, k: int) -> dict[str, Any]:
    """The pair as `tokenizer(query, doc)` gives it with `doc` cut to its first k tokens."""
    specials = len(ref.ids(query, doc)) - len(ref.ids(query)) - len(ref.ids(doc)) + 4
    keep = len(ref.ids(query)) - 2 + k + specials
    return ref.encode(query, doc, truncation="only_second", max_length=keep)


# -- /score: the four pairs of field names ----------------------------------------------


@pytest.mark.parametrize("route", SCORE_ROUTES)
@pytest.mark.parametrize(("first", "second"), PAIR_NAMES)
def test_score_pairs_of_names(
    cross: Live, cross_ref: Reference, route: str, first: str, second: str
) -> None:
    one_to_many = cross.post(route, {first: QUERY, second: DOCS})
    assert one_to_many.status_code == 200, one_to_many.text
    expected = [sigmoid(cross_ref.logits(QUERY, d)[0]) for d in DOCS]
    assert close(_scores(one_to_many.json()), expected)
    many = cross.post(route, {first: FIRSTS, second: DOCS})
    assert many.status_code == 200, many.text
    pairs = zip(FIRSTS, DOCS, strict=True)
    assert close(_scores(many.json()), [sigmoid(cross_ref.logits(a, b)[0]) for a, b in pairs])
    one = cross.post(route, {first: QUERY, second: DOCS[0]}).json()
    assert len(one["data"]) == 1
    assert one["usage"]["prompt_tokens"] == len(cross_ref.ids(QUERY, DOCS[0]))


def test_score_reads_the_first_complete_pair_in_vllms_order(
    cross: Live, cross_ref: Reference
) -> None:
    # vLLM's request is a union tried in this order; fields of other members are ignored.
    body = {"text_1": FIRSTS[1], "text_2": DOCS[1], "data_1": "x", "data_2": "y",
            "queries": QUERY, "items": DOCS[2], "documents": DOCS[0]}  # fmt: skip
    got = _scores(cross.post("/score", body).json())
    assert close(got, [sigmoid(cross_ref.logits(QUERY, DOCS[0])[0])])
    del body["documents"]
    got = _scores(cross.post("/score", body).json())
    assert close(got, [sigmoid(cross_ref.logits(QUERY, DOCS[2])[0])])
    del body["items"]
    got = _scores(cross.post("/score", body).json())
    assert close(got, [sigmoid(cross_ref.logits("x", "y")[0])])


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ({}, None),
        ({"queries": "a"}, "documents"),
        ({"items": ["a"]}, "queries"),
        ({"data_2": "a"}, "data_1"),
        ({"text_1": "a", "documents": ["b"]}, "queries"),
        ({"data_1": "a", "text_2": "b"}, "data_2"),
    ],
)
def test_score_without_a_complete_pair(cross: Live, body: dict, missing: str | None) -> None:
    error = assert_error(cross.post("/score", body), 400, "BadRequestError", None)
    for name in ("text_1", "queries", "documents", "items", "data_1", "data_2"):
        assert f"`{name}`" in error["message"], error
    if missing:
        assert f"`{missing}` is missing" in error["message"], error


def test_score_pairs_are_checked_before_the_model(clf: Live) -> None:
    # vLLM validates the body before its handler runs: 400, even where /score would be a 404.
    assert_error(clf.post("/score", {"model": "nope"}), 400, "BadRequestError", None)
    assert_error(clf.post("/score", {"queries": "a", "items": "b"}), 404, "NotFoundError", None)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"queries": ["a", "b"], "items": ["c", "d", "e"]}, "items"),
        ({"queries": [], "documents": "x"}, "queries"),
        ({"data_1": "a", "data_2": ["b", ""]}, "data_2[1]"),
        ({"queries": [""], "documents": ["b", "c"]}, "queries[0]"),
        ({"queries": "a", "documents": [3]}, "documents[0]"),
        ({"data_1": "a", "data_2": "b", "max_tokens_per_doc": "2"}, "max_tokens_per_doc"),
    ],
)
def test_score_bad_pairs_name_their_field(cross: Live, body: dict, param: str) -> None:
    assert_error(cross.post("/score", body), 400, "BadRequestError", param)


# -- /rerank: usage, documents as objects, the older name of use_activation ------------


@pytest.mark.parametrize("route", RERANK_ROUTES)
def test_rerank_usage_has_prompt_tokens(cross: Live, cross_ref: Reference, route: str) -> None:
    response = cross.post(route, {"query": QUERY, "documents": DOCS})
    assert response.status_code == 200, response.text
    tokens = sum(len(cross_ref.ids(QUERY, d)) for d in DOCS)
    assert response.json()["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


@pytest.mark.parametrize("route", RERANK_ROUTES)
def test_rerank_takes_documents_as_objects(cross: Live, route: str) -> None:
    # Cohere's v1 SDK, Jina and litellm send objects; extra fields are ignored.
    documents = [{"text": DOCS[0]}, DOCS[1], {"text": DOCS[2], "title": "t", "id": 7}, DOCS[3]]
    got = cross.post(route, {"query": QUERY, "documents": documents})
    assert got.status_code == 200, got.text
    want = cross.post("/rerank", {"query": QUERY, "documents": DOCS}).json()
    assert got.json()["results"] == want["results"]
    assert all(r["document"] == {"text": DOCS[r["index"]]} for r in got.json()["results"])


@pytest.mark.parametrize(
    ("documents", "param"),
    [([{"title": "t"}], "documents[0]"), (["a", {"text": 3}], "documents[1].text"),
     ([{"text": "a"}, {"text": ""}], "documents[1]"), ([["a"]], "documents[0]")],
)  # fmt: skip
def test_rerank_bad_document_objects(cross: Live, documents: list, param: str) -> None:
    assert_error(cross.post("/rerank", {"query": "q", "documents": documents}), 400,
                 "BadRequestError", param)  # fmt: skip


@pytest.mark.parametrize("route", RERANK_ROUTES)
def test_rerank_older_activation_name(cross: Live, cross_ref: Reference, route: str) -> None:
    body = {"query": QUERY, "documents": DOCS[:2], "activation": False}
    results = cross.post(route, body).json()["results"]
    for r in results:
        raw = cross_ref.logits(QUERY, DOCS[r["index"]])[0]
        assert abs(r["relevance_score"] - raw) <= 1e-5
    # use_activation wins over the older name.
    body["use_activation"] = True
    results = cross.post(route, body).json()["results"]
    for r in results:
        score = sigmoid(cross_ref.logits(QUERY, DOCS[r["index"]])[0])
        assert abs(r["relevance_score"] - score) <= 1e-5


# -- max_tokens_per_doc -----------------------------------------------------------------


@pytest.mark.parametrize("route", RERANK_ROUTES)
@pytest.mark.parametrize("k", [1, 3, 10])
def test_rerank_max_tokens_per_doc(cross: Live, cross_ref: Reference, route: str, k: int) -> None:
    documents = [*DOCS, long_text(40, seed=5)]
    response = cross.post(route, {"query": QUERY, "documents": documents, "max_tokens_per_doc": k})
    assert response.status_code == 200, response.text
    body = response.json()
    encoded = [_per_doc(cross_ref, QUERY, d, k) for d in documents]
    by_index = {r["index"]: r for r in body["results"]}
    for i, pair in enumerate(encoded):
        assert abs(by_index[i]["relevance_score"] - sigmoid(cross_ref.logits_of(pair)[0])) <= 1e-5
        # The answer echoes the document as sent, not as cut.
        assert by_index[i]["document"] == {"text": documents[i]}
    tokens = sum(pair["input_ids"].shape[1] for pair in encoded)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    whole = cross.post(route, {"query": QUERY, "documents": documents}).json()
    assert whole["usage"]["prompt_tokens"] > tokens


@pytest.mark.parametrize("route", SCORE_ROUTES)
def test_score_max_tokens_per_doc_cuts_the_second_texts(
    cross: Live, cross_ref: Reference, route: str
) -> None:
    body = {"queries": FIRSTS, "documents": DOCS, "max_tokens_per_doc": 2}
    got = _scores(cross.post(route, body).json())
    pairs = zip(FIRSTS, DOCS, strict=True)
    assert close(got, [sigmoid(cross_ref.logits_of(_per_doc(cross_ref, a, b, 2))[0])
                       for a, b in pairs])  # fmt: skip


@pytest.mark.parametrize("route", [*RERANK_ROUTES, *SCORE_ROUTES])
@pytest.mark.parametrize("k", [0, -5])
def test_max_tokens_per_doc_must_be_positive(cross: Live, route: str, k: int) -> None:
    body: dict[str, Any] = (
        {"text_1": "a", "text_2": "b"} if "score" in route else {"query": "a", "documents": ["b"]}
    )
    response = cross.post(route, {**body, "max_tokens_per_doc": k})
    error = assert_error(response, 400, "BadRequestError", "max_tokens_per_doc")
    # vLLM's words; its tests and clients match on them.
    assert "max_tokens_per_doc must be a positive integer" in error["message"]


# -- /v2/rerank: Cohere's v2 body -------------------------------------------------------


def test_v2_rerank_takes_coheres_v2_body(cross: Live, cross_ref: Reference) -> None:
    body = {"model": "cross", "query": QUERY, "documents": DOCS, "top_n": 2,
            "max_tokens_per_doc": 4096, "priority": 1, "return_documents": False}  # fmt: skip
    response = cross.post("/v2/rerank", body, headers={"x-request-id": "v2-1"})
    assert response.status_code == 200, response.text
    got = response.json()
    assert set(got) == {"id", "model", "usage", "results"}
    assert got["id"] == "rerank-v2-1" and got["model"] == "cross"
    scores = [sigmoid(cross_ref.logits(QUERY, d)[0]) for d in DOCS]
    order = sorted(range(len(DOCS)), key=lambda i: -scores[i])[:2]
    assert [r["index"] for r in got["results"]] == order
    for r in got["results"]:
        assert abs(r["relevance_score"] - scores[r["index"]]) <= 1e-5
    assert "x-total-time" in response.headers


def test_v2_rerank_errors_are_vllms(cross: Live, clf: Live) -> None:
    assert_error(cross.post("/v2/rerank", {"model": "nope", "query": "a", "documents": ["b"]}),
                 404, "NotFoundError", None)  # fmt: skip
    assert_error(cross.post("/v2/rerank", {"query": "a"}), 400, "BadRequestError", None)
    assert_error(clf.post("/v2/rerank", {"query": "a", "documents": ["b"]}), 404,
                 "NotFoundError", None)  # fmt: skip
    assert cross.get("/v2/rerank").status_code == 405
