"""docs/API.md's error table, each row produced by a real request."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conformance.conftest import API_KEYS, Live, Reference, long_text
from tests.support import assert_error, assert_tei_error, assert_unauthorized

MODEL_ROUTES = ("/classify", "/v1/classify", "/invocations")


# -- 400: the body ----------------------------------------------------------------------


@pytest.mark.parametrize("route", MODEL_ROUTES)
@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"input": "a",}', b"\xff\xfe"])
def test_body_not_json(clf: Live, route: str, raw: bytes) -> None:
    response = clf.client.post(route, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "BadRequestError", None)


@pytest.mark.parametrize("route", MODEL_ROUTES)
def test_empty_body(clf: Live, route: str) -> None:
    assert_error(clf.client.post(route, content=b""), 400, "BadRequestError", None)


@pytest.mark.parametrize("route", MODEL_ROUTES)
@pytest.mark.parametrize("body", [[1, 2], "text", 3, None])
def test_body_not_an_object(clf: Live, route: str, body: object) -> None:
    response = clf.client.post(route, content=json.dumps(body).encode())
    assert_error(response, 400, "BadRequestError", None)


@pytest.mark.parametrize("route", MODEL_ROUTES)
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 5}, "input"),
        ({"input": {"text": "a"}}, "input"),
        ({"input": [1.5]}, "input[0]"),
        ({"input": [[1, "a"]]}, "input[0][1]"),
        ({"input": "a", "model": 3}, "model"),
        ({"input": "a", "priority": "high"}, "priority"),
        ({"input": "a", "use_activation": "yes"}, "use_activation"),
        ({"input": "a", "add_special_tokens": 1}, "add_special_tokens"),
        ({"input": "a", "truncate_prompt_tokens": "5"}, "truncate_prompt_tokens"),
        ({"input": "a", "request_id": 7}, "request_id"),
        ({"messages": "hi"}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
    ],
)
def test_wrong_json_type(clf: Live, route: str, body: dict, param: str) -> None:
    error = assert_error(clf.post(route, body), 400, "BadRequestError", param)
    assert param.split("[")[0] in error["message"]


@pytest.mark.parametrize("route", MODEL_ROUTES)
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "a", "truncate_prompt_tokens": -2}, "truncate_prompt_tokens"),
        ({"input": "a", "truncation_side": "middle"}, "truncation_side"),
    ],
)
def test_constraint_broken(clf: Live, route: str, body: dict, param: str) -> None:
    error = assert_error(clf.post(route, body), 400, "BadRequestError", param)
    assert param in error["message"]


@pytest.mark.parametrize("route", MODEL_ROUTES)
@pytest.mark.parametrize(
    ("value", "param"),
    [
        ("", "input"),
        ([], "input"),
        ([""], "input[0]"),
        (["ok", ""], "input[1]"),
        ([[]], "input[0]"),
        ([[5], []], "input[1]"),
        (["ok", 5], "input[1]"),
        ([5, "ok"], "input[1]"),
        ([[5], "ok"], "input[1]"),
    ],
)
def test_empty_or_mixed_input(clf: Live, route: str, value: object, param: str) -> None:
    error = assert_error(clf.post(route, {"input": value}), 400, "BadRequestError", param)
    # SGLang's own words on /v1/classify: "Input cannot be empty", "Input at index 1 ...".
    assert "input" in error["message"].lower()


@pytest.mark.parametrize("route", MODEL_ROUTES)
def test_missing_input(clf: Live, route: str) -> None:
    assert_error(clf.post(route, {"model": "tiny"}), 400, "BadRequestError", "input")


@pytest.mark.parametrize("route", MODEL_ROUTES)
@pytest.mark.parametrize("shape", ["ids", "rows"])
def test_token_id_out_of_vocabulary(clf: Live, bert_ref: Reference, route: str, shape: str) -> None:
    vocab = bert_ref.model.config.vocab_size
    for bad in (-1, vocab, vocab + 1000):
        ids = [2, 10, bad, 3]
        value = ids if shape == "ids" else [[2, 3], ids]
        index = 0 if shape == "ids" else 1
        response = clf.post(route, {"input": value})
        error = assert_error(response, 400, "BadRequestError", f"input[{index}]")
        if route == "/v1/classify" and shape == "ids" and bad < 0:
            # SGLang's own check of one tokenized prompt, in its words.
            assert error["message"] == "Token ID at index 2 must be non-negative"
            continue
        assert str(bad) in error["message"] and str(vocab) in error["message"]
    # The edges of the vocabulary are fine.
    assert clf.post(route, {"input": [0, vocab - 1]}).status_code == 200


# -- 400: lengths and counts ----------------------------------------------------------


@pytest.mark.parametrize("route", MODEL_ROUTES)
@pytest.mark.parametrize("shape", ["text", "ids", "texts", "rows"])
def test_input_too_long_names_input_tokens_and_both_lengths(
    clf: Live, bert_ref: Reference, route: str, shape: str
) -> None:
    text = long_text(150)
    ids = bert_ref.ids(text)
    assert len(ids) > 128
    value = {"text": text, "ids": ids, "texts": ["ok", text], "rows": [[5], ids]}[shape]
    error = assert_error(clf.post(route, {"input": value}), 400, "BadRequestError", "input_tokens")
    assert str(len(ids)) in error["message"] and "128" in error["message"]


@pytest.mark.parametrize("route", MODEL_ROUTES)
def test_more_inputs_than_max_client_batch_size(clf: Live, route: str) -> None:
    assert clf.post(route, {"input": ["a"] * 8}).status_code == 200
    error = assert_error(clf.post(route, {"input": ["a"] * 9}), 400, "BadRequestError", "input")
    assert "9" in error["message"] and "8" in error["message"]
    ids = assert_error(clf.post(route, {"input": [[5]] * 9}), 400, "BadRequestError", "input")
    assert "9" in ids["message"]


def test_predict_more_inputs_than_max_client_batch_size(clf: Live) -> None:
    # TEI's refusal, word for word: a 422 `Validation`.
    assert clf.post("/predict", {"inputs": [["a"]] * 8}).status_code == 200
    message = assert_tei_error(clf.post("/predict", {"inputs": [["a"]] * 9}), 422, "Validation")
    assert message == "batch size 9 > maximum allowed batch size 8"


def test_predict_mixed_batch_counts_every_input(clf: Live) -> None:
    # 5 texts and 4 pairs are 9 inputs, whatever the server does with them inside.
    inputs = [*([["a"]] * 5), *([["a", "b"]] * 4)]
    message = assert_tei_error(clf.post("/predict", {"inputs": inputs}), 422, "Validation")
    assert "9" in message


# -- 413 ------------------------------------------------------------------------------


def _big_body() -> bytes:
    body = json.dumps({"input": ["word " * 100] * 10}).encode()
    assert len(body) > 4096
    return body


# TEI's routes answer the same 413 in TEI's body (test_tei_compat.py).
@pytest.mark.parametrize("route", [*MODEL_ROUTES, "/tokenize", "/score"])
def test_body_over_limit_with_content_length(clf: Live, route: str) -> None:
    body = _big_body()
    response = clf.client.post(route, content=body, headers={"content-type": "application/json"})
    assert response.request.headers["content-length"] == str(len(body))
    error = assert_error(response, 413, "RequestTooLargeError", None)
    assert "4096" in error["message"]


@pytest.mark.parametrize("route", MODEL_ROUTES)
def test_body_over_limit_chunked(clf: Live, route: str) -> None:
    body = _big_body()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    # A fresh connection: the server may close it after refusing a body it did not read.
    with httpx.Client(base_url=clf.url, timeout=30) as client:
        response = client.post(
            route, content=chunks(), headers={"content-type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, "RequestTooLargeError", None)


def test_body_at_limit_is_read(clf: Live) -> None:
    body = b'{"input": "hi", "user": "' + b"x" * 4000
    body += b"x" * (4096 - len(body) - 2) + b'"}'
    assert len(body) == 4096
    assert clf.client.post("/classify", content=body).status_code == 200


# -- 404 unknown model ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "body"),
    [
        *((r, {"model": "nope", "input": "hi"}) for r in MODEL_ROUTES),
        ("/tokenize", {"model": "nope", "prompt": "hi"}),
    ],
)
def test_unknown_model(clf: Live, route: str, body: dict) -> None:
    error = assert_error(clf.post(route, body), 404, "NotFoundError", None)
    assert error["message"] == "The model `nope` does not exist."


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/score", {"model": "nope", "text_1": "a", "text_2": "b"}),
        ("/rerank", {"model": "nope", "query": "a", "documents": ["b"]}),
    ],
)
def test_unknown_model_scoring(cross: Live, route: str, body: dict) -> None:
    error = assert_error(cross.post(route, body), 404, "NotFoundError", None)
    assert error["message"] == "The model `nope` does not exist."


# -- 401 ------------------------------------------------------------------------------

GUARDED = [
    ("POST", "/classify", {"input": "hi"}),
    ("POST", "/v1/classify", {"input": "hi"}),
    ("POST", "/invocations", {"input": "hi"}),
    ("POST", "/predict", {"inputs": "hi"}),
    ("POST", "/", {"inputs": "hi"}),
    ("POST", "/pooling", {"input": "hi"}),
    ("POST", "/tokenize", {"prompt": "hi"}),
    ("POST", "/detokenize", {"tokens": [5]}),
    ("GET", "/tokenizer_info", None),
    ("GET", "/v1/models", None),
    ("GET", "/version", None),
    ("GET", "/info", None),
    ("GET", "/openapi.json", None),
]


def _send(live: Live, method: str, path: str, body: object, headers: dict) -> httpx.Response:
    return live.client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), GUARDED)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer k3"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer k1x"},
        {"Authorization": "Basic k1"},
        {"Authorization": "k1"},
    ],
    ids=["none", "wrong", "empty", "prefix", "basic", "no-scheme"],
)
def test_missing_or_wrong_key_is_401(
    secured: Live, method: str, path: str, body: object, headers: dict
) -> None:
    """As the path's peer answers it: vLLM's and SGLang's `{"error": "Unauthorized"}`, TEI's
    bare 401 on its own paths."""
    assert_unauthorized(_send(secured, method, path, body, headers), path)


@pytest.mark.parametrize(("method", "path", "body"), GUARDED)
@pytest.mark.parametrize("key", API_KEYS)
def test_right_key_is_200(secured: Live, method: str, path: str, body: object, key: str) -> None:
    response = _send(secured, method, path, body, {"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/health"), ("GET", "/ping"), ("POST", "/ping"), ("GET", "/metrics")],
)
def test_open_routes_need_no_key(secured: Live, method: str, path: str) -> None:
    assert secured.client.request(method, path).status_code == 200


# -- 404 / 405 routing -------------------------------------------------------------------

# The paths that answer TEI's error body.
TEI_PATHS = frozenset({"/predict", "/"})


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/nope"), ("POST", "/v2/classify"), ("POST", "/classify/x")]
)
def test_unknown_route_is_404(clf: Live, method: str, path: str) -> None:
    """vLLM's envelope, as its FastAPI handler writes a 404: type and message "Not Found"."""
    response = clf.client.request(method, path, json={"input": "hi"})
    error = assert_error(response, 404, "Not Found", None)
    assert error["message"] == "Not Found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/classify"),
        ("PUT", "/v1/classify"),
        ("GET", "/score"),
        ("DELETE", "/predict"),
        ("POST", "/health"),
        ("POST", "/metrics"),
        ("POST", "/v1/models"),
        ("PUT", "/ping"),
    ],
)
def test_wrong_method_is_405(clf: Live, method: str, path: str) -> None:
    """JSON in the path's error flavour (SGLang types its own 405 "405"), with `Allow`."""
    response = clf.client.request(method, path)
    assert "allow" in response.headers
    if path in TEI_PATHS:
        assert assert_tei_error(response, 405, "Validation") == "Method Not Allowed"
        return
    sglang = path == "/v1/classify"
    error = assert_error(response, 405, "405" if sglang else "Method Not Allowed", None)
    assert error["message"] == "Method Not Allowed"


# -- admission (429 under load is proved in tests/reliability/test_overload.py) -------


def test_request_over_the_admission_limit_is_400(tight: Live) -> None:
    assert tight.post("/classify", {"input": ["a", "b"]}).status_code == 200
    # More inputs than may ever be in flight: a 429 would have the client retry forever.
    response = tight.post("/classify", {"input": ["a", "b", "c"]})
    error = assert_error(response, 400, "BadRequestError", "input")
    assert "--max-concurrent-requests" in error["message"]
    # The refusal held nothing: the server still takes a request at the limit.
    assert tight.post("/classify", {"input": ["a", "b"]}).status_code == 200


# -- request ids that cannot be an HTTP header value ---------------------------------------

ID_ROUTES = [
    ("clf", "/classify", {"input": "hi"}, "request_id"),
    ("clf", "/v1/classify", {"input": "hi"}, "rid"),
    ("clf", "/invocations", {"input": "hi"}, "request_id"),
    ("cross", "/score", {"text_1": "a", "text_2": "b"}, "request_id"),
    ("cross", "/rerank", {"query": "a", "documents": ["b"]}, "request_id"),
]


@pytest.mark.parametrize(("server", "route", "body", "field"), ID_ROUTES)
@pytest.mark.parametrize("value", ["check-\u2713", "line\nbreak", "cr\r\nx-evil: 1"])
def test_request_id_that_is_no_header_value(
    request: pytest.FixtureRequest, server: str, route: str, body: dict, field: str, value: str
) -> None:
    """Echoing the id must not break the response: a 200 or a 400 naming the field, no 5xx."""
    live: Live = request.getfixturevalue(server)
    response = live.post(route, {**body, field: value})
    assert "x-evil" not in response.headers
    if response.status_code == 400:
        assert_error(response, 400, "BadRequestError", field)
    else:
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"]
