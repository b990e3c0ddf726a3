"""protocol/codec.py: what each request decoder accepts, and how it refuses the rest: one
RequestDecodeError whose `param` is the path of the offending field (the error envelope's
`param`), or None when the body as a whole is wrong."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from protocol import codec
from protocol.classify import ClassifyRequest
from protocol.pooling import PoolingRequest
from protocol.scoring import RerankRequest, ScoreRequest
from protocol.tei import PredictRequest
from protocol.tokenize import DetokenizeRequest, TokenizeRequest


def _refused(decoder: msgspec.json.Decoder[Any], body: bytes) -> codec.RequestDecodeError:
    with pytest.raises(codec.RequestDecodeError) as raised:
        codec.decode(decoder, body)
    return raised.value


# -- accepted -------------------------------------------------------------------------------


def test_classify_every_field() -> None:
    body = b"""{
        "model": "m", "input": ["a", "b"], "add_generation_prompt": true,
        "continue_final_message": true, "chat_template_kwargs": {"greeting": "hi"},
        "truncate_prompt_tokens": -1, "truncation_side": "left", "add_special_tokens": false,
        "use_activation": false, "activation": true, "normalize": false, "priority": -3,
        "request_id": "r1", "rid": "r2", "user": "u"
    }"""
    request = codec.decode(codec.classify_decoder, body)
    assert request == ClassifyRequest(
        model="m", input=["a", "b"], add_generation_prompt=True, continue_final_message=True,
        chat_template_kwargs={"greeting": "hi"}, truncate_prompt_tokens=-1,
        truncation_side="left", add_special_tokens=False, use_activation=False, activation=True,
        normalize=False, priority=-3, request_id="r1", rid="r2", user="u",
    )  # fmt: skip


def test_classify_defaults_and_unknown_fields_ignored() -> None:
    request = codec.decode(codec.classify_decoder, b'{"input": "x", "encoding_format": "float"}')
    assert request == ClassifyRequest(input="x")
    assert request.model is None and request.messages is None
    assert (request.add_generation_prompt, request.continue_final_message) == (False, False)
    assert request.priority == 0
    assert request.truncate_prompt_tokens is None and request.truncation_side is None


@pytest.mark.parametrize(
    "value",
    ["one text", ["a", "b"], [101, 7, 102], [[101, 7, 102], [101, 102]], ["a", 3], []],
    ids=["text", "texts", "token ids", "token id lists", "mixed", "empty"],
)
def test_classify_input_shapes(value: Any) -> None:
    # Homogeneity is the server's check (server/prompts.py), not the decoder's.
    body = msgspec.json.encode({"input": value})
    assert codec.decode(codec.classify_decoder, body).input == value


def test_messages_are_kept_as_given() -> None:
    messages = [{"role": "user", "content": "hi", "name": "x"}]
    body = msgspec.json.encode({"messages": messages})
    assert codec.decode(codec.classify_decoder, body).messages == messages


def test_score_rerank_predict_tokenize() -> None:
    score = codec.decode(codec.score_decoder, b'{"text_1": "q", "text_2": ["a", "b"]}')
    assert score == ScoreRequest(text_1="q", text_2=["a", "b"])
    rerank = codec.decode(codec.rerank_decoder, b'{"query": "q", "documents": ["d"], "top_n": 0}')
    assert rerank == RerankRequest(query="q", documents=["d"])
    predict = codec.decode(codec.predict_decoder, b'{"inputs": ["a", ["b", "c"]]}')
    assert predict == PredictRequest(inputs=["a", ["b", "c"]])
    assert (predict.raw_scores, predict.truncate, predict.truncation_direction) == (
        False,
        None,
        "Right",
    )
    tokenize = codec.decode(codec.tokenize_decoder, b'{"prompt": "x"}')
    assert tokenize == TokenizeRequest(prompt="x", model=None, add_special_tokens=None)
    detokenize = codec.decode(codec.detokenize_decoder, b'{"tokens": [1, 2]}')
    assert detokenize == DetokenizeRequest(tokens=[1, 2])
    pooling = codec.decode(codec.pooling_decoder, b'{"input": "x", "task": "classify"}')
    assert pooling == PoolingRequest(input="x", task="classify")


# -- refused --------------------------------------------------------------------------------

REFUSED = [
    # (decoder, body, param, words the message must contain)
    (codec.classify_decoder, b'{"input": 5}', "input", "got `int`"),
    (codec.classify_decoder, b'{"input": ["a", 1.5]}', "input[1]", "got `float`"),
    (codec.classify_decoder, b'{"input": [[1, "x"]]}', "input[0][1]", "got `str`"),
    (codec.classify_decoder, b'{"truncate_prompt_tokens": -2}', "truncate_prompt_tokens", ">= -1"),
    (codec.classify_decoder, b'{"truncation_side": "middle"}', "truncation_side", "'middle'"),
    (codec.classify_decoder, b'{"messages": [1]}', "messages[0]", "Expected `object`"),
    (codec.classify_decoder, b'{"priority": "high"}', "priority", "Expected `int`"),
    (codec.classify_decoder, b'{"use_activation": "yes"}', "use_activation", "got `str`"),
    (codec.score_decoder, b'{"text_1": "a", "text_2": [1]}', "text_2[0]", "got `int`"),
    (codec.rerank_decoder, b'{"query": "q", "documents": ["d"], "top_n": -1}', "top_n", ">= 0"),
    (codec.predict_decoder, b'{"inputs": "a", "truncation_direction": "Up"}',
     "truncation_direction", "'Up'"),
    (codec.predict_decoder, b'{"inputs": [["a", 1]]}', "inputs[0][1]", "got `int`"),
    (codec.tokenize_decoder, b'{"prompt": 3}', "prompt", "got `int`"),
]  # fmt: skip


@pytest.mark.parametrize(("decoder", "body", "param", "words"), REFUSED)
def test_a_wrong_field_is_named(
    decoder: msgspec.json.Decoder[Any], body: bytes, param: str, words: str
) -> None:
    error = _refused(decoder, body)
    assert error.param == param
    assert error.message.startswith("Invalid request: "), error.message
    assert words in error.message, error.message
    assert str(error) == error.message
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("decoder", "body", "field"),
    [
        # /score's pairs are all optional in the struct; the route names the missing half.
        (codec.rerank_decoder, b'{"query": "q"}', "documents"),
        (codec.rerank_decoder, b'{"documents": []}', "query"),
        (codec.predict_decoder, b"{}", "inputs"),
        (codec.detokenize_decoder, b'{"model": "m"}', "tokens"),
    ],
)
def test_a_missing_required_field_is_named_in_the_message(
    decoder: msgspec.json.Decoder[Any], body: bytes, field: str
) -> None:
    error = _refused(decoder, body)
    assert error.message == f"Invalid request: Object missing required field `{field}`"
    assert error.param is None


@pytest.mark.parametrize("body", [b"[1]", b'"text"', b"3", b"null"])
def test_a_body_that_is_not_an_object(body: bytes) -> None:
    error = _refused(codec.classify_decoder, body)
    assert error.message.startswith("Invalid request: Expected `object`, got "), error.message
    assert error.param is None


@pytest.mark.parametrize("body", [b"", b"  \n\t"])
def test_an_empty_body(body: bytes) -> None:
    error = _refused(codec.classify_decoder, body)
    assert error.message == "The request body is empty; expected a JSON object."
    assert error.param is None


@pytest.mark.parametrize("body", [b'{"input": "a",', b"{input: 1}", b"\xff\xfe"])
def test_a_body_that_is_not_json(body: bytes) -> None:
    error = _refused(codec.classify_decoder, body)
    assert error.message.startswith("The request body is not valid JSON: "), error.message
    assert error.param is None


# -- encoded --------------------------------------------------------------------------------


def test_encode_is_compact_json_in_field_order() -> None:
    assert codec.encode({"b": 1, "a": [1.5, None]}) == b'{"b":1,"a":[1.5,null]}'
    assert codec.encode(DetokenizeRequest(tokens=[1])) == b'{"model":null,"tokens":[1]}'


def test_a_classify_request_encodes_only_what_was_set() -> None:
    encoded = codec.encode(ClassifyRequest(input=[1, 2], priority=2))
    assert encoded == b'{"input":[1,2],"priority":2}'
    assert codec.encode(ClassifyRequest()) == b"{}"
