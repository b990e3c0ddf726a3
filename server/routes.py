"""The route table: every path classifyd answers, declared once.

HotPaths' map (`model_routes`), Starlette's `routes`, the API-key exemptions (`OPEN_PATHS`)
and /openapi.json are all built from TABLE, so none of them can list a route the others miss.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from protocol.classify import ClassifyRequest, ClassifyResponse
from protocol.codec import encode
from protocol.errors import ErrorResponse, FlatErrorResponse
from protocol.lora import LoadLoRAAdapterRequest, UnloadLoRAAdapterRequest
from protocol.models import Info, ModelList, Version
from protocol.pooling import PoolingRequest, PoolingResponse
from protocol.scoring import RerankRequest, RerankResponse, ScoreRequest, ScoreResponse
from protocol.tei import PredictRequest, TeiError, TeiRerankRequest
from protocol.tokenize import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
    TokenizerInfo,
)
from server import (
    classify,
    invocations,
    lora_admin,
    meta,
    pooling,
    scoring,
    sglang,
    tei,
    tei_rerank,
)
from server.errors import ErrorMapper, sglang_response, to_response
from server.http import ModelRoute
from server.openapi import PREDICTIONS, RANKS, TEI_ERRORS, Doc, document
from server.tei_errors import to_tei_response


@dataclass(frozen=True)
class Endpoint:
    path: str
    methods: tuple[str, ...]
    # A model route's `(body, state, call)` handler, else a Starlette `(request)` endpoint.
    handler: Callable[..., Awaitable[Response]]
    doc: Doc
    # A POST model route: wrapped in ModelRoute and dispatched by HotPaths.
    model: bool = False
    # Answered without an API key: orchestrators' probes and Prometheus carry none.
    open: bool = False
    # How a model route writes its errors: vLLM's envelope, or its peer's flavour.
    errors: ErrorMapper = to_response

    def __post_init__(self) -> None:
        if self.model and self.methods != ("POST",):
            raise ValueError(f"{self.path}: HotPaths dispatches POST only")


def _model(
    path: str,
    handler: Callable[..., Awaitable[Response]],
    doc: Doc,
    errors: ErrorMapper = to_response,
) -> Endpoint:
    return Endpoint(path, ("POST",), handler, doc, model=True, errors=errors)


@functools.cache
def _openapi_body() -> bytes:
    return encode(document(TABLE))


async def openapi_json(request: Request) -> Response:
    return Response(_openapi_body(), media_type="application/json")


def _either(*structs: type) -> dict[str, Any]:
    return {"anyOf": [{"$ref": f"#/components/schemas/{s.__name__}"} for s in structs]}


def _classify(flavour: str, error_body: type = ErrorResponse) -> Doc:
    return Doc(
        f"Classify texts ({flavour}).", ClassifyRequest, ClassifyResponse, error_body=error_body
    )


_SCORE = Doc("Score text pairs (vLLM; one-label models).", ScoreRequest, ScoreResponse)
_RERANK = Doc("Rank documents for a query (one-label models).", RerankRequest, RerankResponse)
_PREDICT = Doc(
    "Classify texts or text pairs (TEI).",
    PredictRequest,
    PREDICTIONS,
    errors=TEI_ERRORS,
    error_body=TeiError,
    unauthorized_body=None,
)
_TEI_ROOT = Doc(
    "TEI's root: /predict for a classifier, TEI's /rerank for a one-label model.",
    _either(PredictRequest, TeiRerankRequest),
    {"anyOf": [PREDICTIONS, RANKS]},
    errors=TEI_ERRORS,
    error_body=TeiError,
    unauthorized_body=None,
)
_RERANK_BOTH = Doc(
    "Rank documents for a query (one-label models): vLLM's body, or TEI's (`texts`).",
    _either(RerankRequest, TeiRerankRequest),
    {"anyOf": [_either(RerankResponse), RANKS]},
    errors=("400", "404", "413", "422", "424", "429", "500", "503"),
    error_body=_either(ErrorResponse, TeiError),
)
# What /invocations may answer with, by the body it gets.
_ANSWERS = (ClassifyResponse, RerankResponse, ScoreResponse)
_READY = Doc(
    "Ready: 200 while accepting work; 503 once a drain begins.", ok="Ready", errors=("503",)
)

TABLE: tuple[Endpoint, ...] = (
    _model("/classify", classify.classify, _classify("vLLM")),
    _model(
        "/v1/classify", sglang.classify, _classify("SGLang", FlatErrorResponse), sglang_response
    ),
    _model(
        "/invocations",
        invocations.invocations,
        Doc(
            "SageMaker: the body's fields pick the answer (classify, rerank or score), as vLLM.",
            ClassifyRequest,
            {"anyOf": [{"$ref": f"#/components/schemas/{t.__name__}"} for t in _ANSWERS]},
        ),
    ),
    _model(
        "/pooling",
        pooling.pooling,
        Doc("vLLM's pooling route, classify task.", PoolingRequest, PoolingResponse),
    ),
    _model("/predict", tei.predict, _PREDICT, to_tei_response),
    # TEI's root: predict for a classifier, rerank for a one-label model.
    _model("/", tei_rerank.root, _TEI_ROOT, to_tei_response),
    _model("/score", scoring.score, _SCORE),
    _model("/v1/score", scoring.score, _SCORE),
    # vLLM's body (`documents`) or TEI's (`texts`): server/tei_rerank.py tells them apart.
    _model("/rerank", tei_rerank.rerank, _RERANK_BOTH),
    _model("/v1/rerank", scoring.rerank, _RERANK),
    # Cohere's v2 path; vLLM answers it with the same handler and body.
    _model("/v2/rerank", scoring.rerank, _RERANK),
    _model(
        "/tokenize", meta.tokenize, Doc("Token ids of a prompt.", TokenizeRequest, TokenizeResponse)
    ),
    _model(
        "/detokenize",
        meta.detokenize,
        Doc("The text of token ids.", DetokenizeRequest, DetokenizeResponse),
    ),
    # vLLM's run-time adapter routes: a 404 unless --allow-runtime-lora-updating.
    _model(
        "/v1/load_lora_adapter",
        lora_admin.load_lora_adapter,
        Doc(
            "Load a LoRA adapter at run time (vLLM; --allow-runtime-lora-updating).",
            LoadLoRAAdapterRequest,
            {"type": "string"},
            media_type="text/plain",
        ),
    ),
    _model(
        "/v1/unload_lora_adapter",
        lora_admin.unload_lora_adapter,
        Doc(
            "Unload a LoRA adapter (vLLM; --allow-runtime-lora-updating).",
            UnloadLoRAAdapterRequest,
            {"type": "string"},
            media_type="text/plain",
        ),
    ),
    Endpoint(
        "/tokenizer_info",
        ("GET",),
        meta.tokenizer_info,
        Doc("The tokenizer's configuration (vLLM).", response=TokenizerInfo),
    ),
    Endpoint(
        "/v1/models", ("GET",), meta.models, Doc("The served model names.", response=ModelList)
    ),
    Endpoint("/version", ("GET",), meta.version, Doc("The classifyd version.", response=Version)),
    Endpoint(
        "/info",
        ("GET",),
        meta.info,
        Doc("The model, its labels, dtype, device and limits.", response=Info),
    ),
    Endpoint(
        "/health",
        ("GET",),
        meta.health,
        Doc(
            "Live: 200 while the model worker runs (draining included).", ok="Live", errors=("503",)
        ),
        open=True,
    ),
    Endpoint("/ready", ("GET",), meta.ready, _READY, open=True),
    # SageMaker's probe: is the container able to take work.
    Endpoint("/ping", ("GET", "POST"), meta.ready, _READY, open=True),
    Endpoint(
        "/metrics",
        ("GET",),
        meta.metrics,
        Doc(
            "Prometheus metrics.",
            response={"type": "string"},
            ok="Prometheus text format",
            media_type="text/plain",
        ),
        open=True,
    ),
    Endpoint(
        "/openapi.json",
        ("GET",),
        openapi_json,
        Doc("This document.", response={"type": "object"}, ok="OpenAPI 3.1"),
    ),
)

# The POST model routes by path, for HotPaths (server/dispatch.py).
model_routes: dict[str, ModelRoute] = {
    e.path: ModelRoute(e.handler, e.errors) for e in TABLE if e.model
}

# Starlette's table holds the model routes too: a GET there is a 405, not a 404.
routes = [
    Route(e.path, model_routes[e.path] if e.model else e.handler, methods=list(e.methods))
    for e in TABLE
]

OPEN_PATHS = frozenset(e.path for e in TABLE if e.open)

# Each path's error flavour, for the errors answered outside its handler (401, 404, 405).
ERRORS: dict[str, ErrorMapper] = {e.path: e.errors for e in TABLE}
