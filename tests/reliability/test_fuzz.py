"""Random and near-valid bodies on every model route: never a 5xx, 4xx always the envelope.

Bounded: 40 examples per route (200 in all), no deadline, no example database.
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


def near(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A body with the route's fields, each with a plausible or a random value."""
    return st.fixed_dictionaries(
        {}, optional={**required, **optional, "unknown_field": json_values}
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
    return st.one_of(valid, valid, mutated, mutated, near(required, wild))


good_rows = st.lists(st.integers(0, 155), min_size=1, max_size=8)
good_texts = st.one_of(sentence, st.text(min_size=1, max_size=20))
some_texts = st.lists(good_texts, min_size=1, max_size=4)
sides = st.sampled_from(["left", "right"])
flags = st.booleans()
truncations = st.sampled_from([-1, 1, 3, 128, 129])
ids = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)

BODIES: dict[str, st.SearchStrategy[Any]] = {
    "/classify": variants(
        {
            "input": st.one_of(
                good_texts, some_texts, good_rows, st.lists(good_rows, min_size=1, max_size=3)
            )
        },
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
            "messages": st.one_of(
                st.lists(
                    st.fixed_dictionaries(
                        {"role": st.sampled_from(["user", "system", "x"]), "content": texts}
                    ),
                    max_size=2,
                ),
                json_values,
            ),
            "truncate_prompt_tokens": st.one_of(ints, maybe),
            "truncation_side": st.one_of(st.sampled_from(["left", "right", "middle"]), maybe),
            "add_special_tokens": maybe,
            "use_activation": maybe,
            "normalize": maybe,
            "priority": st.one_of(ints, maybe),
            "request_id": st.one_of(texts, maybe),
            "rid": st.one_of(texts, maybe),
        },
    ),
    "/predict": variants(
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
    ),
    "/score": variants(
        {"text_1": st.one_of(good_texts, some_texts), "text_2": st.one_of(good_texts, some_texts)},
        {
            "model": st.sampled_from(["cross", "other"]),
            "truncate_prompt_tokens": truncations,
            "use_activation": flags,
            "activation": flags,
            "priority": st.integers(-5, 5),
            "request_id": ids,
        },
        {
            "text_1": st.one_of(texts, st.lists(texts, max_size=3), maybe),
            "text_2": st.one_of(texts, st.lists(texts, max_size=3), maybe),
            "model": models,
            "truncate_prompt_tokens": st.one_of(ints, maybe),
            "priority": st.one_of(ints, maybe),
        },
    ),
    "/rerank": variants(
        {"query": good_texts, "documents": st.lists(good_texts, min_size=1, max_size=4)},
        {
            "model": st.sampled_from(["cross", "other"]),
            "top_n": st.integers(0, 6),
            "truncate_prompt_tokens": truncations,
            "use_activation": flags,
            "priority": st.integers(-5, 5),
            "request_id": ids,
        },
        {
            "query": st.one_of(texts, maybe),
            "documents": st.one_of(st.lists(texts, max_size=4), maybe),
            "top_n": st.one_of(ints, maybe),
            "model": models,
            "truncate_prompt_tokens": st.one_of(ints, maybe),
        },
    ),
    "/tokenize": variants(
        {"prompt": good_texts},
        {"add_special_tokens": flags, "model": st.sampled_from(["cross", "other"])},
        {"prompt": st.one_of(texts, maybe), "add_special_tokens": maybe, "model": models},
    ),
}


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


# Routes that answer errors in TEI's envelope, {"error": str, "error_type": kind}.
TEI_ROUTES = {"/predict"}
TEI_KINDS = {"Empty", "Validation", "Tokenizer", "Overloaded", "Backend", "Unhealthy"}


def check(response: httpx.Response, route: str) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400 and route in TEI_ROUTES:
        assert response.headers["content-type"].startswith("application/json"), response.text
        body = response.json()
        assert set(body) == {"error", "error_type"}, body
        assert body["error_type"] in TEI_KINDS, body
        assert isinstance(body["error"], str) and body["error"], body
    elif response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.text
        body = response.json()
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert error["code"] == response.status_code, error
        assert isinstance(error["type"], str) and error["type"].endswith("Error"), error
        assert isinstance(error["message"], str) and error["message"], error
        assert error["param"] is None or isinstance(error["param"], str), error
    else:
        assert response.status_code == 200, response.text[:500]
        # Well-formed, strict JSON: a NaN or Infinity number (not text that says so) fails.
        json.loads(response.content, parse_constant=_not_json)


def _not_json(constant: str) -> Any:
    raise AssertionError(f"the response holds {constant}, which is not JSON")


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
    assert client.get("/health").status_code == 200
