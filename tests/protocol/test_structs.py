"""The wire structs' shapes, as clients see them: field names and order, the JSON a response
encodes to, and requests that survive a trip through JSON unchanged. A change here is a change
of the API (docs/API.md), so these fail on any field added, dropped, renamed or reordered."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from protocol import codec
from protocol.classify import (
    ClassifyData,
    ClassifyRequest,
    ClassifyResponse,
    PromptTokensDetails,
    Usage,
)
from protocol.errors import ErrorInfo, ErrorResponse, FlatErrorResponse, Unauthorized
from protocol.models import Info, Limits, ModelCard, ModelList, Version
from protocol.pooling import PoolingData, PoolingRequest, PoolingResponse
from protocol.scoring import (
    RerankDocument,
    RerankInput,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
    ScoreData,
    ScoreRequest,
    ScoreResponse,
)
from protocol.tei import Prediction, PredictRequest, Rank, RerankFields, TeiError, TeiRerankRequest
from protocol.tokenize import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
    TokenizerInfo,
)

FIELDS: dict[type[msgspec.Struct], tuple[str, ...]] = {
    ClassifyRequest: (
        "model", "input", "messages", "add_generation_prompt", "continue_final_message",
        "chat_template_kwargs", "truncate_prompt_tokens", "truncation_side",
        "add_special_tokens", "use_activation", "activation", "normalize", "priority",
        "request_id", "rid", "user",
    ),
    ClassifyData: ("index", "label", "probs", "num_classes"),
    PromptTokensDetails: ("cached_tokens",),
    Usage: ("prompt_tokens", "total_tokens", "completion_tokens", "prompt_tokens_details"),
    ClassifyResponse: ("id", "created", "model", "data", "usage", "object"),
    ErrorInfo: ("message", "type", "param", "code"),
    ErrorResponse: ("error", "detail"),
    FlatErrorResponse: ("object", "message", "type", "param", "code"),
    Unauthorized: ("error",),
    ModelCard: ("id", "created", "max_model_len", "object", "owned_by", "root", "parent"),
    ModelList: ("data", "object"),
    Version: ("version",),
    Limits: (
        "max_model_len", "max_batch_tokens", "max_num_seqs", "max_concurrent_requests",
        "max_client_batch_size", "max_body_bytes",
    ),
    Info: (
        "version", "model", "served_model_names", "architecture", "model_type", "labels",
        "num_labels", "problem_type", "activation", "dtype", "device", "limits", "quantization",
    ),
    ScoreRequest: (
        "model", "text_1", "text_2", "queries", "documents", "items", "data_1", "data_2",
        "truncate_prompt_tokens", "truncation_side", "max_tokens_per_doc", "use_activation",
        "activation", "priority", "request_id",
    ),
    ScoreData: ("index", "score", "object"),
    ScoreResponse: ("id", "created", "model", "data", "usage", "object"),
    RerankInput: ("text",),
    RerankRequest: (
        "model", "query", "documents", "top_n", "truncate_prompt_tokens", "truncation_side",
        "max_tokens_per_doc", "use_activation", "activation", "priority", "request_id",
    ),
    RerankDocument: ("text",),
    RerankResult: ("index", "document", "relevance_score"),
    RerankUsage: ("prompt_tokens", "total_tokens"),
    RerankResponse: ("id", "model", "usage", "results"),
    PredictRequest: ("inputs", "raw_scores", "truncate", "truncation_direction"),
    Prediction: ("score", "label"),
    TeiRerankRequest: (
        "query", "texts", "raw_scores", "return_text", "truncate", "truncation_direction",
    ),
    Rank: ("index", "score", "text"),
    TeiError: ("error", "error_type"),
    RerankFields: ("texts", "documents"),
    TokenizeRequest: (
        "model", "prompt", "messages", "add_special_tokens", "add_generation_prompt",
        "continue_final_message", "chat_template_kwargs", "tools", "return_token_strs",
    ),
    TokenizeResponse: ("count", "max_model_len", "tokens", "token_strs"),
    DetokenizeRequest: ("model", "tokens"),
    DetokenizeResponse: ("prompt",),
    TokenizerInfo: ("tokenizer_class",),
    PoolingRequest: (
        "model", "input", "messages", "add_generation_prompt", "continue_final_message",
        "chat_template_kwargs", "truncate_prompt_tokens", "truncation_side",
        "add_special_tokens", "use_activation", "activation", "normalize", "priority",
        "request_id", "rid", "user", "task", "encoding_format", "embed_dtype", "endianness",
        "dimensions",
    ),
    PoolingData: ("index", "data", "object"),
    PoolingResponse: ("id", "created", "model", "data", "usage", "object"),
}  # fmt: skip


@pytest.mark.parametrize("struct", list(FIELDS), ids=lambda s: s.__name__)
def test_fields(struct: type[msgspec.Struct]) -> None:
    assert struct.__struct_fields__ == FIELDS[struct]


def test_every_wire_struct_is_listed() -> None:
    import protocol.classify
    import protocol.errors
    import protocol.models
    import protocol.pooling
    import protocol.scoring
    import protocol.tei
    import protocol.tokenize

    modules = (
        protocol.classify, protocol.errors, protocol.models, protocol.pooling, protocol.scoring,
        protocol.tei, protocol.tokenize,
    )  # fmt: skip
    found = {
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, msgspec.Struct)
        and value.__module__ == module.__name__
    }
    assert found == set(FIELDS)


@pytest.mark.parametrize(
    "struct",
    [ClassifyRequest, ScoreRequest, RerankRequest, PredictRequest, TokenizeRequest],
    ids=lambda s: s.__name__,
)
def test_requests_take_keywords_only(struct: Any) -> None:
    with pytest.raises(TypeError, match="positional"):
        struct("positional")


# -- responses: the exact JSON --------------------------------------------------------------


def _json(obj: Any) -> Any:
    return msgspec.json.decode(codec.encode(obj))


def test_classify_response() -> None:
    response = ClassifyResponse(
        id="classify-1",
        created=1700000000,
        model="tiny",
        data=[ClassifyData(index=0, label="pos", probs=[0.25, 0.75], num_classes=2)],
        usage=Usage(prompt_tokens=4, total_tokens=4),
    )
    assert _json(response) == {
        "id": "classify-1",
        "created": 1700000000,
        "model": "tiny",
        "data": [{"index": 0, "label": "pos", "probs": [0.25, 0.75], "num_classes": 2}],
        "usage": {
            "prompt_tokens": 4,
            "total_tokens": 4,
            "completion_tokens": 0,
            "prompt_tokens_details": None,
        },
        "object": "list",
    }
    details = Usage(1, 1, prompt_tokens_details=PromptTokensDetails())
    assert _json(details)["prompt_tokens_details"] == {"cached_tokens": 0}


def test_error_envelope() -> None:
    body = ErrorResponse(ErrorInfo(message="no", type="BadRequestError", param=None, code=400))
    assert codec.encode(body) == (
        b'{"error":{"message":"no","type":"BadRequestError","param":null,"code":400}}'
    )


def test_flat_error_envelope() -> None:
    """SGLang's: the fields at the top, `object` first, as its ErrorResponse dumps them."""
    body = FlatErrorResponse(message="no", type="BadRequestError", param="input", code=400)
    assert codec.encode(body) == (
        b'{"object":"error","message":"no","type":"BadRequestError","param":"input","code":400}'
    )


def test_models_and_version() -> None:
    card = ModelCard(id="tiny", created=1, max_model_len=128)
    assert _json(ModelList(data=[card])) == {
        "data": [
            {
                "id": "tiny",
                "created": 1,
                "max_model_len": 128,
                "object": "model",
                "owned_by": "classifyd",
                "root": None,
                "parent": None,
            }
        ],
        "object": "list",
    }
    assert codec.encode(Version("1.2.3")) == b'{"version":"1.2.3"}'


def test_info_defaults_to_no_quantization() -> None:
    limits = Limits(128, 16384, 256, 1024, 512, 8 << 20)
    info = Info(
        "1.0", "m", ["m"], "BertForSequenceClassification", "bert", ["a", "b"], 2, None,
        "softmax", "float32", "cpu", limits,
    )  # fmt: skip
    out = _json(info)
    assert out["quantization"] == "none"
    assert out["limits"]["max_body_bytes"] == 8 << 20
    assert out["problem_type"] is None


def test_score_and_rerank_responses() -> None:
    score = ScoreResponse("score-1", 5, "cross", [ScoreData(0, 0.5)], Usage(3, 3))
    assert _json(score)["data"] == [{"index": 0, "score": 0.5, "object": "score"}]
    assert _json(score)["object"] == "list"
    rerank = RerankResponse(
        "rerank-1", "cross", RerankUsage(9, 9), [RerankResult(1, RerankDocument("d"), 0.9)]
    )
    assert _json(rerank) == {
        "id": "rerank-1",
        "model": "cross",
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
        "results": [{"index": 1, "document": {"text": "d"}, "relevance_score": 0.9}],
    }


def test_prediction_and_tokenize_response() -> None:
    assert codec.encode([Prediction(0.5, "pos")]) == b'[{"score":0.5,"label":"pos"}]'
    assert _json(TokenizeResponse(2, 128, [101, 102])) == {
        "count": 2,
        "max_model_len": 128,
        "tokens": [101, 102],
        "token_strs": None,
    }


# -- requests: through JSON and back --------------------------------------------------------

CHAT_REQUEST = ClassifyRequest(
    model="m", messages=[{"role": "user", "content": "hi"}], add_generation_prompt=True,
    chat_template_kwargs={"k": [1, 2]}, truncation_side="left", use_activation=False,
    priority=-1, request_id="r", user="u",
)  # fmt: skip
ROUND_TRIPS: list[tuple[msgspec.json.Decoder[Any], msgspec.Struct]] = [
    (codec.classify_decoder, ClassifyRequest(input=[[101, 5, 102]], truncate_prompt_tokens=3)),
    (codec.classify_decoder, CHAT_REQUEST),
    (codec.score_decoder, ScoreRequest(text_1=["a", "b"], text_2=["c", "d"], activation=True)),
    (codec.rerank_decoder, RerankRequest(query="q", documents=["x", "y"], top_n=1)),
    (codec.predict_decoder, PredictRequest(inputs=[["a", "b"]], raw_scores=True, truncate=False)),
    (codec.tokenize_decoder, TokenizeRequest(prompt="p", add_special_tokens=False)),
]


@pytest.mark.parametrize(("decoder", "request_"), ROUND_TRIPS)
def test_round_trip(decoder: msgspec.json.Decoder[Any], request_: msgspec.Struct) -> None:
    assert codec.decode(decoder, codec.encode(request_)) == request_
