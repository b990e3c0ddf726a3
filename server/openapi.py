"""`GET /openapi.json`: an OpenAPI 3.1 document generated from the msgspec structs.

The schemas come from the same structs that decode and encode the wire, so the document
cannot drift from what the server accepts; the path table below says which struct each
route takes and returns.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from protocol.classify import ClassifyRequest, ClassifyResponse
from protocol.codec import encode
from protocol.errors import ErrorResponse
from protocol.models import Info, ModelList, Version
from protocol.scoring import RerankRequest, RerankResponse, ScoreRequest, ScoreResponse
from protocol.tei import Prediction, PredictRequest
from protocol.tokenize import TokenizeRequest, TokenizeResponse
from server import __version__

_REF = "#/components/schemas/{name}"
_ERRORS = {
    "400": "Bad request: the message names the field (`param`).",
    "401": "Missing or wrong API key (when the server has keys).",
    "404": "Unknown model, or a route this model cannot answer.",
    "413": "The body is larger than --max-body-bytes.",
    "429": "Admission limit reached; retry after `Retry-After` seconds.",
    "500": "The model failed on this request's batch.",
    "503": "The engine is not ready, is shutting down, or its worker died.",
}
# One input gives a list of predictions, a batch a list of those (msgspec cannot express the
# union of two list types, so it is written by hand).
_ONE = {"type": "array", "items": {"$ref": _REF.format(name="Prediction")}}
_PREDICTIONS = {"anyOf": [_ONE, {"type": "array", "items": _ONE}]}

# path → (summary, request struct, response struct or schema)
_POST_ROUTES: dict[str, tuple[str, type, Any]] = {
    "/classify": ("Classify texts (vLLM).", ClassifyRequest, ClassifyResponse),
    "/v1/classify": ("Classify texts (SGLang).", ClassifyRequest, ClassifyResponse),
    "/invocations": ("Classify texts (SageMaker).", ClassifyRequest, ClassifyResponse),
    "/predict": ("Classify texts or text pairs (TEI).", PredictRequest, _PREDICTIONS),
    "/score": ("Score text pairs (vLLM; one-label models).", ScoreRequest, ScoreResponse),
    "/v1/score": ("Score text pairs (vLLM; one-label models).", ScoreRequest, ScoreResponse),
    "/rerank": ("Rank documents for a query (one-label models).", RerankRequest, RerankResponse),
    "/v1/rerank": ("Rank documents for a query (one-label models).", RerankRequest, RerankResponse),
    "/tokenize": ("Token ids of a prompt.", TokenizeRequest, TokenizeResponse),
}
_GET_ROUTES: dict[str, tuple[str, Any]] = {
    "/v1/models": ("The served model names.", ModelList),
    "/version": ("The classifyd version.", Version),
    "/info": ("The model, its labels, dtype, device and limits.", Info),
}


def _content(schema: Any) -> dict[str, Any]:
    if isinstance(schema, type):
        schema = {"$ref": _REF.format(name=schema.__name__)}
    return {"application/json": {"schema": schema}}


def _errors(codes: list[str]) -> dict[str, Any]:
    return {
        code: {"description": _ERRORS[code], "content": _content(ErrorResponse)} for code in codes
    }


@functools.cache
def document() -> dict[str, Any]:
    structs: list[Any] = [ErrorResponse, Prediction]
    structs += [s for _, req, resp in _POST_ROUTES.values() for s in (req, resp)]
    structs += [resp for _, resp in _GET_ROUTES.values()]
    types = list(dict.fromkeys(s for s in structs if isinstance(s, type)))
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    paths: dict[str, Any] = {}
    for path, (summary, request, response) in _POST_ROUTES.items():
        paths[path] = {
            "post": {
                "summary": summary,
                "requestBody": {"required": True, "content": _content(request)},
                "responses": {
                    "200": {"description": "OK", "content": _content(response)},
                    **_errors(["400", "401", "404", "413", "429", "500", "503"]),
                },
            }
        }
    for path, (summary, response) in _GET_ROUTES.items():
        paths[path] = {
            "get": {
                "summary": summary,
                "responses": {
                    "200": {"description": "OK", "content": _content(response)},
                    **_errors(["401"]),
                },
            }
        }
    probe = {
        "summary": "Ready: 200 while accepting work; 503 once a drain begins.",
        "responses": {"200": {"description": "Ready"}, **_errors(["503"])},
    }
    live = {
        "summary": "Live: 200 while the model worker runs (draining included).",
        "responses": {"200": {"description": "Live"}, **_errors(["503"])},
    }
    paths["/health"] = {"get": live}
    paths["/ready"] = {"get": probe}
    paths["/ping"] = {"get": probe, "post": probe}
    paths["/metrics"] = {
        "get": {
            "summary": "Prometheus metrics.",
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document.",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "classifyd", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi(request: Request) -> Response:
    return Response(encode(document()), media_type="application/json")
