"""The route table: every path classifyd answers, declared once.

HotPaths' map (`model_routes`), Starlette's `routes`, the API-key exemptions (`OPEN_PATHS`)
and /openapi.json are all built from TABLE, so none of them can list a route the others miss.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from protocol.classify import ClassifyRequest, ClassifyResponse
from protocol.codec import encode
from protocol.models import Info, ModelList, Version
from protocol.scoring import RerankRequest, RerankResponse, ScoreRequest, ScoreResponse
from protocol.tei import PredictRequest
from protocol.tokenize import TokenizeRequest, TokenizeResponse
from server import classify, meta, scoring, tei
from server.http import ModelRoute
from server.openapi import PREDICTIONS, Doc, document


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

    def __post_init__(self) -> None:
        if self.model and self.methods != ("POST",):
            raise ValueError(f"{self.path}: HotPaths dispatches POST only")


def _model(path: str, handler: Callable[..., Awaitable[Response]], doc: Doc) -> Endpoint:
    return Endpoint(path, ("POST",), handler, doc, model=True)


@functools.cache
def _openapi_body() -> bytes:
    return encode(document(TABLE))


async def openapi_json(request: Request) -> Response:
    return Response(_openapi_body(), media_type="application/json")


def _classify(flavour: str) -> Doc:
    return Doc(f"Classify texts ({flavour}).", ClassifyRequest, ClassifyResponse)


_SCORE = Doc("Score text pairs (vLLM; one-label models).", ScoreRequest, ScoreResponse)
_RERANK = Doc("Rank documents for a query (one-label models).", RerankRequest, RerankResponse)
_READY = Doc(
    "Ready: 200 while accepting work; 503 once a drain begins.", ok="Ready", errors=("503",)
)

TABLE: tuple[Endpoint, ...] = (
    _model("/classify", classify.classify, _classify("vLLM")),
    _model("/v1/classify", classify.classify, _classify("SGLang")),
    _model("/invocations", classify.classify, _classify("SageMaker")),
    _model(
        "/predict",
        tei.predict,
        Doc("Classify texts or text pairs (TEI).", PredictRequest, PREDICTIONS),
    ),
    _model("/score", scoring.score, _SCORE),
    _model("/v1/score", scoring.score, _SCORE),
    _model("/rerank", scoring.rerank, _RERANK),
    _model("/v1/rerank", scoring.rerank, _RERANK),
    _model(
        "/tokenize", meta.tokenize, Doc("Token ids of a prompt.", TokenizeRequest, TokenizeResponse)
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
model_routes: dict[str, ModelRoute] = {e.path: ModelRoute(e.handler) for e in TABLE if e.model}

# Starlette's table holds the model routes too: a GET there is a 405, not a 404.
routes = [
    Route(e.path, model_routes[e.path] if e.model else e.handler, methods=list(e.methods))
    for e in TABLE
]

OPEN_PATHS = frozenset(e.path for e in TABLE if e.open)
