"""The route table: every path classifyd answers, and which handler answers it."""

from __future__ import annotations

from starlette.routing import Route

from server import classify, meta, scoring, tei
from server.http import ModelRoute
from server.openapi import openapi

# The POST model routes by path (server/dispatch.py takes them ahead of Starlette's stack).
model_routes = {
    "/classify": ModelRoute(classify.classify),
    "/v1/classify": ModelRoute(classify.classify),
    "/invocations": ModelRoute(classify.classify),
    "/predict": ModelRoute(tei.predict),
    "/score": ModelRoute(scoring.score),
    "/v1/score": ModelRoute(scoring.score),
    "/rerank": ModelRoute(scoring.rerank),
    "/v1/rerank": ModelRoute(scoring.rerank),
    "/tokenize": ModelRoute(meta.tokenize),
}

routes = [
    # Also in Starlette's table: a GET there is a 405, not a 404, and the routes are listed.
    *(Route(path, route, methods=["POST"]) for path, route in model_routes.items()),
    Route("/health", meta.health, methods=["GET"]),
    Route("/ready", meta.ready, methods=["GET"]),
    # SageMaker's probe: is the container able to take work.
    Route("/ping", meta.ready, methods=["GET", "POST"]),
    Route("/v1/models", meta.models, methods=["GET"]),
    Route("/version", meta.version, methods=["GET"]),
    Route("/info", meta.info, methods=["GET"]),
    Route("/metrics", meta.metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
