"""Random, near-valid and hostile bodies on every model route: never a 5xx, every 4xx in the
route family's envelope, and the server still answers a normal request afterwards.

Bounded: 40 generated examples per route (no deadline, no example database), plus a fixed
list of hostile bodies sent to every route. The server is the one-label cross-encoder, so
/score, /rerank and TEI's rerank do real work.
"""

from __future__ import annotations

import json
import string
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import WORDS
from tests.reliability.conftest import LiveServer

EXAMPLES_PER_ROUTE = 40

# -- values ---------------------------------------------------------------------------------

words = st.sampled_from(sorted(set(WORDS)))
sentence = st.lists(words, min_size=1, max_size=8).map(" ".join)
texts = st.one_of(
    sentence,
    st.text(max_size=30),  # any unicode, control characters, "" included
    st.sampled_from(["", " ", "\x00", "\ud800", "[CLS]", "[MASK] [SEP]", "é" * 40, "a" * 600]),
    st.integers(130, 400).map(lambda n: " ".join(["movie"] * n)),  # past max_model_len
)
ints = st.one_of(
    st.integers(-3, 200),  # around the vocabulary [0, 156)
    st.sampled_from([-1, 0, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
token_rows = st.lists(ints, min_size=0, max_size=6)
inputs = st.one_of(
    texts,
    st.lists(texts, max_size=4),
    token_rows,
    st.lists(token_rows, max_size=3),
    st.lists(st.one_of(texts, ints, token_rows), max_size=3),  # mixed shapes
    json_values,
)
models = st.one_of(st.none(), st.just("cross"), st.text(max_size=8), json_values)
maybe = st.one_of(scalars, json_values)
messages = st.one_of(
    st.lists(
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["user", "system", "x"]),
                "content": st.one_of(
                    texts,
                    st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": texts})),
                    json_values,
                ),
            }
        ),
        max_size=2,
    ),
    json_values,
)


def variants(
    required: dict[str, Any], optional: dict[str, Any], wild: dict[str, Any]
) -> st.SearchStrategy[Any]:
    """Valid bodies, the same with one field dropped or replaced by any JSON value, and
    bodies whose every field may be wild."""
    valid = st.fixed_dictionaries(required, optional=optional)
    keys = sorted({*required, *optional, "unknown_field"})

    def mutate(case: tuple[dict[str, Any], str, Any, bool]) -> dict[str, Any]:
        body, key, value, drop = case
        body = dict(body)
        if drop:
            body.pop(key, None)
        else:
            body[key] = value
        return body

    mutated = st.tuples(valid, st.sampled_from(keys), json_values, st.booleans()).map(mutate)
    near = st.fixed_dictionaries(
        {}, optional={**required, **optional, **wild, "unknown_field": json_values}
    )
    return st.one_of(valid, valid, mutated, mutated, near)


good_rows = st.lists(st.integers(0, 155), min_size=1, max_size=8)
good_texts = st.one_of(sentence, st.text(min_size=1, max_size=20))
some_texts = st.lists(good_texts, min_size=1, max_size=4)
one_or_more = st.one_of(good_texts, some_texts)
sides = st.sampled_from(["left", "right"])
flags = st.booleans()
truncations = st.sampled_from([-1, 1, 3, 128, 129])
per_doc = st.sampled_from([-5, 0, 1, 3, 200, 2**63])
ids = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
documents = st.one_of(
    st.lists(st.one_of(good_texts, st.fixed_dictionaries({"text": good_texts})), max_size=4),
    good_texts,  # one bare document
)

CLASSIFY = variants(
    {"input": st.one_of(good_texts, some_texts, good_rows, st.lists(good_rows, max_size=3))},
    {
        "model": st.sampled_from(["cross", "other"]),
        "truncate_prompt_tokens": truncations,
        "truncation_side": sides,
        "add_special_tokens": flags,
        "use_activation": flags,
        "activation": flags,
        "priority": st.integers(-5, 5),
        "request_id": ids,
        "user": st.text(max_size=5),
    },
    {
        "input": inputs,
        "model": models,
        "messages": messages,
        "chat_template_kwargs": maybe,
        "truncate_prompt_tokens": st.one_of(ints, maybe),
        "truncation_side": st.one_of(st.sampled_from(["left", "right", "middle"]), maybe),
        "add_special_tokens": maybe,
        "use_activation": maybe,
        "normalize": maybe,
        "priority": st.one_of(ints, maybe),
        "request_id": st.one_of(texts, maybe),
        "rid": st.one_of(texts, maybe),
    },
)
POOLING = variants(
    {"input": one_or_more},
    {
        "task": st.sampled_from(["classify", "score", "embed", "token_classify", "nope"]),
        "encoding_format": st.sampled_from(["float", "base64", "bytes", "bytes_only", "x"]),
        "embed_dtype": st.sampled_from(["float32", "float16", "bfloat16", "fp8_e4m3", "int4"]),
        "endianness": st.sampled_from(["native", "big", "little", "middle"]),
        "dimensions": st.one_of(st.none(), ints),
        "use_activation": flags,
    },
    {"input": inputs, "task": maybe, "encoding_format": maybe, "dimensions": maybe},
)
PREDICT = variants(
    {
        "inputs": st.one_of(
            good_texts,
            st.tuples(good_texts, good_texts).map(list),
            st.lists(
                st.one_of(good_texts, st.tuples(good_texts, good_texts).map(list)),
                min_size=1,
                max_size=3,
            ),
        )
    },
    {
        "raw_scores": flags,
        "truncate": flags,
        "truncation_direction": st.sampled_from(["left", "right", "Left", "Right"]),
    },
    {
        "inputs": st.one_of(inputs, st.lists(st.lists(texts, max_size=3), max_size=3)),
        "raw_scores": maybe,
        "truncate": maybe,
        "truncation_direction": st.one_of(st.sampled_from(["up", "Left"]), maybe),
    },
)
TEI_RERANK = variants(
    {"query": good_texts, "texts": some_texts},
    {"raw_scores": flags, "return_text": flags, "truncate": flags},
    {"query": st.one_of(texts, maybe), "texts": st.one_of(st.lists(texts), maybe)},
)
# vLLM's four pairs of fields, complete, half given, or mixed with each other.
SCORE_FIELDS = ("text_1", "text_2", "queries", "documents", "items", "data_1", "data_2")
SCORE = st.one_of(
    *(
        variants(
            {a: one_or_more, b: one_or_more},
            {
                "model": st.sampled_from(["cross", "other"]),
                "truncate_prompt_tokens": truncations,
                "max_tokens_per_doc": per_doc,
                "use_activation": flags,
                "priority": st.integers(-5, 5),
                "request_id": ids,
            },
            {a: st.one_of(texts, st.lists(texts, max_size=3), maybe), "max_tokens_per_doc": maybe},
        )
        for a, b in (("text_1", "text_2"), ("queries", "documents"), ("queries", "items"))
    ),
    st.fixed_dictionaries(
        {}, optional={f: st.one_of(one_or_more, maybe) for f in SCORE_FIELDS}
    ),  # mixed pair forms
)
RERANK = variants(
    {"query": good_texts, "documents": documents},
    {
        "model": st.sampled_from(["cross", "other"]),
        "top_n": st.integers(0, 6),
        "truncate_prompt_tokens": truncations,
        "max_tokens_per_doc": per_doc,
        "use_activation": flags,
        "return_documents": flags,
        "rank_fields": st.just(["text"]),
        "priority": st.integers(-5, 5),
        "request_id": ids,
    },
    {
        "query": st.one_of(texts, maybe),
        "documents": st.one_of(st.lists(st.one_of(texts, json_values), max_size=4), maybe),
        "top_n": st.one_of(ints, maybe),
        "max_tokens_per_doc": st.one_of(ints, maybe),
        "texts": st.one_of(st.lists(texts), maybe),  # TEI's field beside vLLM's
    },
)
TOKENIZE = st.one_of(
    variants(
        {"prompt": good_texts},
        {"add_special_tokens": flags, "return_token_strs": flags, "model": st.just("cross")},
        {"prompt": st.one_of(texts, maybe), "return_token_strs": maybe, "model": models},
    ),
    variants(
        {"messages": messages},
        {
            "add_generation_prompt": flags,
            "continue_final_message": flags,
            "return_token_strs": flags,
        },
        {"tools": maybe, "chat_template_kwargs": maybe, "prompt": texts},
    ),
)
DETOKENIZE = variants(
    {"tokens": good_rows},
    {"model": st.sampled_from(["cross", "other"])},
    {"tokens": st.one_of(token_rows, st.lists(token_rows, max_size=2), maybe)},
)

BODIES: dict[str, st.SearchStrategy[Any]] = {
    "/classify": CLASSIFY,
    "/v1/classify": CLASSIFY,
    "/pooling": POOLING,
    "/invocations": st.one_of(CLASSIFY, RERANK, SCORE),
    "/predict": PREDICT,
    "/": st.one_of(PREDICT, TEI_RERANK),
    "/score": SCORE,
    "/rerank": st.one_of(RERANK, TEI_RERANK),
    "/v2/rerank": RERANK,
    "/tokenize": TOKENIZE,
    "/detokenize": DETOKENIZE,
}

# A request each route answers 200, sent after the hostile ones.
GOOD: dict[str, dict[str, Any]] = {
    "/classify": {"input": "a good movie"},
    "/v1/classify": {"input": "a good movie"},
    "/pooling": {"input": "a good movie"},
    "/invocations": {"query": "movie", "documents": ["a good movie"]},
    "/predict": {"inputs": "a good movie"},
    "/": {"query": "movie", "texts": ["a good movie"]},
    "/score": {"queries": "movie", "items": ["a good movie"]},
    "/rerank": {"query": "movie", "documents": [{"text": "a good movie"}]},
    "/v2/rerank": {"query": "movie", "documents": ["a good movie"]},
    "/tokenize": {"prompt": "a good movie", "return_token_strs": True},
    "/detokenize": {"tokens": [5, 6]},
}

# -- envelopes ------------------------------------------------------------------------------

TEI_KINDS = {"Empty", "Validation", "Tokenizer", "Overloaded", "Backend", "Unhealthy"}


def _vllm(body: Any, status: int) -> None:
    # `detail`: FastAPI's own word beside the envelope, where vLLM has no such route.
    assert set(body) - {"detail"} == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    _fields(error, status)


def _sglang(body: Any, status: int) -> None:
    assert list(body) == ["object", "message", "type", "param", "code"], body
    assert body["object"] == "error", body
    _fields(body, status)


def _fields(error: dict[str, Any], status: int) -> None:
    assert error["code"] == status, error
    assert isinstance(error["type"], str) and error["type"].endswith("Error"), error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["param"] is None or isinstance(error["param"], str), error


def _tei(body: Any, status: int) -> None:
    assert set(body) == {"error", "error_type"}, body
    assert body["error_type"] in TEI_KINDS, body
    assert isinstance(body["error"], str) and body["error"], body


def _vllm_or_tei(body: Any, status: int) -> None:
    # /rerank: a body naming `texts` (and no `documents`) is TEI's, answered in TEI's body.
    (_tei if isinstance(body, dict) and "error_type" in body else _vllm)(body, status)


ENVELOPE = {
    "/v1/classify": _sglang,
    "/predict": _tei,
    "/": _tei,
    "/rerank": _vllm_or_tei,
}


def check(response: httpx.Response, route: str, sent: bytes = b"") -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500], sent[:80])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.text
        assert response.headers.get("x-request-id"), response.headers
        ENVELOPE.get(route, _vllm)(response.json(), response.status_code)
    else:
        assert response.status_code == 200, response.text[:500]
        # Well-formed, strict JSON: a NaN or Infinity number (not text that says so) fails.
        json.loads(response.content, parse_constant=_not_json)


def _not_json(constant: str) -> Any:
    raise AssertionError(f"the response holds {constant}, which is not JSON")


def still_serves(client: httpx.Client, route: str) -> None:
    response = client.post(route, json=GOOD[route])
    assert response.status_code == 200, (route, response.text[:500])
    assert client.get("/health").status_code == 200


# -- generated bodies -----------------------------------------------------------------------


def encoded(value: Any) -> bytes:
    # Python's json writes lone surrogates as \ud800 escapes: valid JSON, invalid UTF-16.
    return json.dumps(value).encode()


def bodies(route: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        BODIES[route].map(encoded),
        BODIES[route].map(encoded),
        BODIES[route].map(encoded),
        json_values.map(encoded),
        st.binary(max_size=40),
    )


@pytest.mark.parametrize("route", list(BODIES))
def test_no_body_makes_a_server_error(chaos_server: LiveServer, route: str) -> None:
    client = chaos_server.client

    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies(route))
    def one(body: bytes) -> None:
        response = client.post(route, content=body, headers={"content-type": "application/json"})
        check(response, route)

    one()
    still_serves(client, route)


# -- hostile bodies, the same on every route ------------------------------------------------

DEEP = 5_000
HOSTILE: list[bytes] = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"input"',
    b"1e999",
    b"NaN",
    b'{"input": Infinity, "inputs": -Infinity}',
    b"\xff\xfe{\x00}",  # not UTF-8
    b'{"input": "\xff\xfe", "inputs": "\xc3\x28", "prompt": "\xed\xa0\x80"}',  # bad UTF-8
    b"[" * DEEP + b"]" * DEEP,  # deep JSON
    b'{"input": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    b'{"query": {"a": ' * 500 + b"1" + b"}" * 1000,
    b'{"input": "a", "input": 3}',  # duplicate keys
    b'{"input": "a"}' + b" " * 100 + b"trailing",
    encoded({"input": [[10**30]], "tokens": [10**30], "inputs": [[10**30]]}),
    encoded({"input": [[-1, 2**63]], "tokens": [-1], "query": -(2**64), "texts": [2**64]}),
    encoded({"input": [], "inputs": [], "documents": [], "texts": [], "tokens": [], "prompt": ""}),
    encoded({"input": [[]], "inputs": [[]], "documents": [[]], "messages": [[]]}),
    encoded({"input": {"a": [{"b": None}]}, "messages": {"role": "user"}, "tools": "x"}),
    encoded({"query": "a", "documents": "movie", "max_tokens_per_doc": -(2**63) - 1}),
    encoded({"query": "a", "documents": [{"text": 1}, {}, None], "top_n": -1}),
    encoded({"text_1": "a", "documents": ["b"], "items": 7, "data_2": [None]}),
    encoded({"queries": ["a", "b", "c"], "items": ["x", "y"], "max_tokens_per_doc": 1.5}),
    encoded({"query": "a", "texts": ["b"], "documents": ["c"], "return_text": "yes"}),
    encoded({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}),
    encoded({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
    encoded({"messages": [{"role": "user", "content": "b"}], "chat_template_kwargs": [1]}),
    encoded({"input": "a", "task": "embed", "encoding_format": "bytes", "dimensions": 2**70}),
    encoded({"input": "a", "embed_dtype": "fp8_e4m3", "endianness": 1, "task": ["classify"]}),
    encoded({"inputs": ["a", ["b", "c"]], "truncation_direction": "Up", "raw_scores": 1}),
    encoded({"input": "movie " * 2_000, "inputs": "movie " * 2_000}),  # far past max length
]
# A valid-looking body under other content types: the decoder reads the bytes either way.
CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""]


@pytest.mark.parametrize("route", list(BODIES))
def test_hostile_bodies(chaos_server: LiveServer, route: str) -> None:
    client = chaos_server.client
    for body in HOSTILE:
        response = client.post(route, content=body, headers={"content-type": "application/json"})
        check(response, route, body)
    good = encoded(GOOD[route])
    for content_type in CONTENT_TYPES:
        check(client.post(route, content=good, headers={"content-type": content_type}), route)
    still_serves(client, route)


def test_tokenizer_info_ignores_junk(chaos_server: LiveServer) -> None:
    """GET /tokenizer_info takes no input: junk in the query or a body changes nothing, and
    POST is a 405 in vLLM's envelope."""
    client = chaos_server.client
    plain = client.get("/tokenizer_info")
    assert plain.status_code == 200, plain.text
    for params in ({"model": "\x00" * 10}, {"a": ["1", "2"]}, {"x": "é" * 500}):
        response = client.get("/tokenizer_info", params=params)
        assert response.status_code == 200 and response.json() == plain.json(), response.text
    with_body = client.request("GET", "/tokenizer_info", content=b"[" * DEEP)
    assert with_body.status_code == 200, with_body.text
    refused = client.post("/tokenizer_info", json={"tokens": [1]})
    assert refused.status_code == 405, refused.text
    assert refused.json()["error"]["type"] == "Method Not Allowed", refused.text
