"""Route handlers. Each reads the wire, calls the engine, and writes the wire."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine import ClassifyResult, Engine
from protocol.classify import ClassifyData, ClassifyRequest, ClassifyResponse, Usage
from protocol.codec import classify_decoder, decode
from protocol.models import ModelCard, ModelList, Version
from server import __version__
from server.activation import activate, argmax
from server.errors import error_response, not_found, to_response
from server.prompts import activation_of, options_of, prompts_of
from server.responses import MsgspecResponse


@dataclass
class AppState:
    engine: Engine
    names: tuple[str, ...]
    created: int


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.classifyd
    return state


def _request_id(req: ClassifyRequest | None, request: Request) -> str:
    if req is not None and (req.request_id or req.rid):
        return str(req.request_id or req.rid)
    return request.headers.get("x-request-id") or uuid.uuid4().hex


async def classify(request: Request) -> Response:
    state = state_of(request)
    metrics = state.engine.metrics
    req: ClassifyRequest | None = None
    try:
        req = decode(classify_decoder, await request.body())
        response = await _until_disconnect(request, _classify(state, req, request))
    except Exception as exc:
        response = to_response(exc, _request_id(req, request))
    outcome = "success" if response.status_code == 200 else "error"
    if response.status_code == 499:
        outcome = "cancelled"
    metrics.requests.labels(outcome, str(response.status_code)).inc()
    return response


async def _classify(state: AppState, req: ClassifyRequest, request: Request) -> Response:
    request_id = _request_id(req, request)
    if req.model is not None and req.model not in state.names:
        raise not_found(f"The model `{req.model}` does not exist.")
    engine = state.engine
    info = engine.info
    prompts = await prompts_of(req, engine)
    kind = activation_of(req, info.problem_type, info.num_labels)
    result = await engine.classify(prompts, options_of(req))
    data = []
    for index, row in enumerate(result.logits):
        probs = activate(row, kind)
        data.append(ClassifyData(index, info.labels[argmax(probs)], probs, len(probs)))
    tokens = sum(result.prompt_tokens)
    body = ClassifyResponse(
        id=f"classify-{request_id}",
        created=int(time.time()),
        model=req.model or state.names[0],
        data=data,
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )
    return MsgspecResponse(body, headers=_timing_headers(request_id, result))


def _timing_headers(request_id: str, result: ClassifyResult) -> dict[str, str]:
    return {
        "x-request-id": request_id,
        "x-tokenization-time": f"{result.tokenize_s * 1000:.3f}",
        "x-queue-time": f"{result.queue_s * 1000:.3f}",
        "x-inference-time": f"{result.inference_s * 1000:.3f}",
        "x-total-time": f"{result.total_s * 1000:.3f}",
    }


async def _until_disconnect(request: Request, work: Awaitable[Response]) -> Response:
    """Run `work`, cancelling it if the client goes away first.

    Neither uvicorn nor Starlette cancels a handler whose client disconnected; without this,
    an abandoned request would still occupy the model. Cancelling reaches the engine, whose
    futures are cancelled, so the scheduler drops those prompts before they are batched.
    """
    handler = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((handler, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if handler.done():
        return handler.result()
    handler.cancel()
    # Nobody is listening any more; 499 (nginx's "client closed request") is only for metrics.
    return Response(status_code=499)


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def health(request: Request) -> Response:
    if state_of(request).engine.ready:
        return Response(status_code=200)
    return error_response(503, "ServiceUnavailableError", "The engine is not ready.")


async def models(request: Request) -> Response:
    state = state_of(request)
    engine = state.engine
    cards = [
        ModelCard(
            id=name,
            created=state.created,
            max_model_len=engine.max_model_len,
            root=engine.config.model,
        )
        for name in state.names
    ]
    return MsgspecResponse(ModelList(data=cards))


async def version(request: Request) -> Response:
    return MsgspecResponse(Version(version=__version__))


async def metrics(request: Request) -> Response:
    registry = state_of(request).engine.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/classify", classify, methods=["POST"]),
    Route("/v1/classify", classify, methods=["POST"]),
    Route("/health", health, methods=["GET"]),
    Route("/v1/models", models, methods=["GET"]),
    Route("/version", version, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
