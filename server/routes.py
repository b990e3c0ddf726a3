"""The route table: every path classifyd answers, and which handler answers it."""

from __future__ import annotations

from starlette.routing import Route

from server import classify, meta, scoring, tei
from server.http import ModelRoute
from server.openapi import openapi

routes = [
    Route("/classify", ModelRoute(classify.classify), methods=["POST"]),
    Route("/v1/classify", ModelRoute(classify.classify), methods=["POST"]),
    Route("/invocations", ModelRoute(classify.classify), methods=["POST"]),
    Route("/predict", ModelRoute(tei.predict), methods=["POST"]),
    Route("/score", ModelRoute(scoring.score), methods=["POST"]),
    Route("/v1/score", ModelRoute(scoring.score), methods=["POST"]),
    Route("/rerank", ModelRoute(scoring.rerank), methods=["POST"]),
    Route("/v1/rerank", ModelRoute(scoring.rerank), methods=["POST"]),
    Route("/tokenize", ModelRoute(meta.tokenize), methods=["POST"]),
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
