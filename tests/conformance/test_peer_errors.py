"""Where classifyd's refusals follow a peer's own words or reading: SGLang's text for an
over-long prompt on /v1/classify, vLLM's reading of one bare string as `documents`, and bodies
too deeply nested to decode (a 400 in each family's envelope, never a 500)."""

from __future__ import annotations

import pytest

from tests.conformance.conftest import Live, Reference, long_text, sigmoid
from tests.support import assert_error, assert_tei_error

RERANK_ROUTES = ("/rerank", "/v1/rerank", "/v2/rerank", "/invocations")
QUERY = "is the hotel room good"
DOCUMENT = "the room was lovely and the staff were great"


# -- SGLang's words for an over-long prompt ---------------------------------------------


def test_sglang_over_long_input_is_sglangs_text(clf: Live, bert_ref: Reference) -> None:
    text = long_text(200)
    tokens = len(bert_ref.ids(text))
    limit = clf.post("/tokenize", {"prompt": "a"}).json()["max_model_len"]
    assert tokens > limit
    error = assert_error(clf.post("/v1/classify", {"input": text}), 400, "BadRequestError",
                         "input_tokens")  # fmt: skip
    # SGLang's tokenizer manager, word for word.
    assert error["message"] == (
        f"The input ({tokens} tokens) is longer than the model's context length ({limit} tokens)."
    )


def test_sglang_over_long_item_of_a_batch(clf: Live) -> None:
    response = clf.post("/v1/classify", {"input": ["a good movie", long_text(300, seed=2)]})
    error = assert_error(response, 400, "BadRequestError", "input_tokens")
    assert "is longer than the model's context length" in error["message"]


def test_vllm_routes_keep_vllms_text(clf: Live) -> None:
    for route in ("/classify", "/invocations", "/pooling"):
        error = assert_error(clf.post(route, {"input": long_text(200)}), 400, "BadRequestError",
                             "input_tokens")  # fmt: skip
        assert "Please reduce the length of the input prompt." in error["message"], route


def test_sglang_within_the_length_is_answered(clf: Live) -> None:
    response = clf.post("/v1/classify", {"input": long_text(20)})
    assert response.status_code == 200, response.text


# -- one bare string as `documents` (vLLM: `documents = [documents]`) --------------------


@pytest.mark.parametrize("route", RERANK_ROUTES)
def test_rerank_takes_one_bare_document(cross: Live, cross_ref: Reference, route: str) -> None:
    response = cross.post(route, {"query": QUERY, "documents": DOCUMENT})
    assert response.status_code == 200, response.text
    body = response.json()
    [result] = body["results"]
    assert result["index"] == 0 and result["document"] == {"text": DOCUMENT}
    want = sigmoid(cross_ref.logits(QUERY, DOCUMENT)[0])
    assert abs(result["relevance_score"] - want) <= 1e-5
    tokens = len(cross_ref.ids(QUERY, DOCUMENT))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_bare_document_matches_a_list_of_one(cross: Live) -> None:
    bare = cross.post("/rerank", {"query": QUERY, "documents": DOCUMENT, "top_n": 1}).json()
    listed = cross.post("/rerank", {"query": QUERY, "documents": [DOCUMENT], "top_n": 1}).json()
    assert bare["results"] == listed["results"] and bare["usage"] == listed["usage"]


@pytest.mark.parametrize("route", RERANK_ROUTES)
@pytest.mark.parametrize(
    ("documents", "param"), [("", "documents"), (5, "documents"), ({"text": "a"}, "documents")]
)
def test_bad_bare_document(cross: Live, route: str, documents: object, param: str) -> None:
    response = cross.post(route, {"query": QUERY, "documents": documents})
    assert_error(response, 400, "BadRequestError", param)


# -- nested too deeply: a 400, never a 500 ----------------------------------------------

# Past the decoder's depth guard, within the clf server's 4096-byte body cap.
DEEP = b"[" * 1_500 + b"]" * 1_500
# In a field no struct declares: skipping it recurses as deep as reading it would.
DEEP_BODY = b'{"unknown": ' + DEEP + b', "input": "a"}'


@pytest.mark.parametrize(
    "route", ["/classify", "/v1/classify", "/invocations", "/pooling", "/tokenize", "/detokenize"]
)
def test_deep_json_is_a_400(clf: Live, route: str) -> None:
    response = clf.client.post(
        route, content=DEEP_BODY, headers={"content-type": "application/json"}
    )
    error = assert_error(response, 400, "BadRequestError", None)
    assert error["message"] == "The request body is nested too deeply."


@pytest.mark.parametrize("route", ["/predict", "/"])
def test_deep_json_on_tei_routes(clf: Live, route: str) -> None:
    response = clf.client.post(
        route, content=DEEP_BODY, headers={"content-type": "application/json"}
    )
    assert assert_tei_error(response, 400, "Validation") == "The request body is nested too deeply."


def test_deep_json_beside_tei_texts(cross: Live) -> None:
    """/rerank tells TEI's body from vLLM's by `texts`: a body it cannot read is vLLM's 400."""
    body = b'{"query": "a", "texts": ["b"], "x": ' + DEEP + b"}"
    response = cross.client.post(
        "/rerank", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "BadRequestError", None)
