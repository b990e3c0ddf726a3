"""Every error is JSON in its route family's envelope (vLLM's nested one, SGLang's flat one on
/v1/classify), and every answer carries `x-request-id`, over real HTTP."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conformance.conftest import Live
from tests.support import assert_error, assert_unauthorized

HEX_ID = re.compile(r"[0-9a-f]{32}")


# -- SGLang's envelope on /v1/classify, vLLM's on /classify -----------------------------


@pytest.mark.parametrize(
    ("body", "status", "type_", "param"),
    [
        ({"input": 5}, 400, "BadRequestError", "input"),
        ({"input": "a", "truncation_side": "middle"}, 400, "BadRequestError", "truncation_side"),
        ({"input": "a", "model": "nope"}, 404, "NotFoundError", None),
        ({"input": ["a", "b"], "normalize": True}, 400, "BadRequestError", "normalize"),
    ],
)
def test_same_error_two_envelopes(
    clf: Live, body: dict, status: int, type_: str, param: str | None
) -> None:
    vllm = clf.post("/classify", body)
    sglang = clf.post("/v1/classify", body)
    nested = assert_error(vllm, status, type_, param)
    flat = sglang.json()
    # SGLang's ErrorResponse dumped: `object` first, the fields at the top, nothing nested.
    assert list(flat) == ["object", "message", "type", "param", "code"], flat
    assert flat == {"object": "error", **nested}
    assert_error(sglang, status, type_, param)


def test_sglang_body_not_json(clf: Live) -> None:
    response = clf.client.post("/v1/classify", content=b"{", headers={"x-request-id": "bad-1"})
    error = assert_error(response, 400, "BadRequestError", None)
    assert response.json()["message"] == error["message"]
    assert response.headers["x-request-id"] == "bad-1"


# SGLang's serving_classify.py refuses these before anything else, in these words.
@pytest.mark.parametrize(
    ("value", "message", "param"),
    [
        ("", "Input cannot be empty", "input"),
        ([], "Input cannot be empty", "input"),
        ("   ", "Input cannot be empty or whitespace only", "input"),
        ("\t\n", "Input cannot be empty or whitespace only", "input"),
        (["ok", " "], "Input at index 1 cannot be empty or whitespace only", "input[1]"),
        (["", "ok"], "Input at index 0 cannot be empty or whitespace only", "input[0]"),
    ],
)
def test_sglang_refuses_blank_input(clf: Live, value: object, message: str, param: str) -> None:
    response = clf.post("/v1/classify", {"input": value, "rid": "blank-1"})
    error = assert_error(response, 400, "BadRequestError", param)
    assert error["message"] == message
    assert response.headers["x-request-id"] == "blank-1"


def test_vllm_classifies_whitespace(clf: Live) -> None:
    """vLLM has no such rule: a whitespace text is a prompt of special tokens only."""
    response = clf.post("/classify", {"input": ["   ", "ok"]})
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 2


def test_sglang_still_classifies(clf: Live) -> None:
    for body in ({"input": ["a b", "c"]}, {"input": [2, 10, 3]}, {"input": " padded "}):
        response = clf.post("/v1/classify", body)
        assert response.status_code == 200, (body, response.text)


# -- what the router answers: JSON, never plain text -----------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/nope"), ("POST", "/v9/classify"), ("DELETE", "/x/y")]
)
def test_unknown_path_is_vllm_json(clf: Live, method: str, path: str) -> None:
    response = clf.client.request(method, path, headers={"x-request-id": "lost-1"})
    error = assert_error(response, 404, "Not Found", None)
    assert error["message"] == "Not Found"
    assert response.headers["x-request-id"] == "lost-1"


@pytest.mark.parametrize(
    ("path", "type_"), [("/v1/classify", "405"), ("/classify", "Method Not Allowed")]
)
def test_wrong_method_in_the_paths_envelope(clf: Live, path: str, type_: str) -> None:
    response = clf.client.get(path)
    assert_error(response, 405, type_, None)
    assert response.headers["allow"] == "POST"
    assert HEX_ID.fullmatch(response.headers["x-request-id"])


# -- x-request-id on every answer ------------------------------------------------------

GETS = [
    "/health",
    "/ready",
    "/ping",
    "/v1/models",
    "/version",
    "/info",
    "/metrics",
    "/openapi.json",
]


@pytest.mark.parametrize("path", GETS)
def test_get_routes_echo_the_request_id(clf: Live, path: str) -> None:
    response = clf.get(path, headers={"x-request-id": "probe-7"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "probe-7"


@pytest.mark.parametrize("path", GETS)
def test_get_routes_draw_a_request_id(clf: Live, path: str) -> None:
    first, second = clf.get(path), clf.get(path)
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(HEX_ID.fullmatch(i) for i in ids) and ids[0] != ids[1], ids


def test_one_request_id_header(clf: Live) -> None:
    response = clf.post("/classify", {"input": "hi", "request_id": "body-1"})
    assert response.headers.get_list("x-request-id") == ["body-1"]
    response = clf.get("/health", headers={"x-request-id": "h-1"})
    assert response.headers.get_list("x-request-id") == ["h-1"]


# -- 401 -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/classify", "/v1/classify", "/predict", "/info", "/nope"])
def test_401_carries_the_request_id(secured: Live, path: str) -> None:
    method = "GET" if path in ("/info", "/nope") else "POST"
    echoed = secured.client.request(method, path, headers={"x-request-id": "no-key-1"})
    assert_unauthorized(echoed, path)
    assert echoed.headers["x-request-id"] == "no-key-1"
    drawn = secured.client.request(method, path)
    assert HEX_ID.fullmatch(drawn.headers["x-request-id"])


@pytest.mark.parametrize("path", ["/classify", "/v1/classify", "/rerank", "/v2/rerank", "/nope"])
def test_401_is_the_peers_bare_body(secured: Live, path: str) -> None:
    """vLLM's and SGLang's auth middleware answer `{"error": "Unauthorized"}`, outside their
    error envelopes (a TEI body on /rerank changes nothing: the key is checked first)."""
    response = secured.post(path, {"query": "a", "texts": ["b"]})
    assert_unauthorized(response, path)


def test_authorised_unknown_path_is_404_json(secured: Live) -> None:
    response = secured.get("/nope", headers={"Authorization": "Bearer k1"})
    assert_error(response, 404, "Not Found", None)


def test_openai_style_client_reads_the_message(clf: Live) -> None:
    """A client that reads `body["message"]` (SGLang's) or `body["error"]["message"]`
    (vLLM's) finds it on the route it speaks to."""
    with httpx.Client(base_url=clf.url) as client:
        sglang = client.post("/v1/classify", json={"input": " "}).json()
        vllm = client.post("/classify", json={"input": ""}).json()
    assert sglang["message"] == "Input cannot be empty or whitespace only"
    assert vllm["error"]["message"]


def test_openapi_documents_each_envelope(clf: Live) -> None:
    spec = clf.get("/openapi.json").json()

    def error_ref(path: str) -> str:
        ref: str = spec["paths"][path]["post"]["responses"]["400"]["content"]["application/json"][
            "schema"
        ]["$ref"]
        return ref.rsplit("/", 1)[1]

    assert error_ref("/v1/classify") == "FlatErrorResponse"
    assert error_ref("/classify") == "ErrorResponse"
    flat = spec["components"]["schemas"]["FlatErrorResponse"]
    assert list(flat["properties"]) == ["object", "message", "type", "param", "code"]
