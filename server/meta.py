"""Routes about the server rather than the model's answers: health, models, info, metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from protocol.codec import decode, tokenize_decoder
from protocol.models import Info, Limits, ModelCard, ModelList, Version
from protocol.tokenize import TokenizeResponse
from server import __version__
from server.errors import error_response
from server.http import Call, check_model
from server.responses import MsgspecResponse
from server.state import AppState, state_of


async def health(request: Request) -> Response:
    """Liveness: 200 while the model is loaded and its worker alive (draining included), so
    an orchestrator restarts the pod only when it is really broken."""
    if state_of(request).engine.alive:
        return Response(status_code=200)
    return error_response(503, "ServiceUnavailableError", "The model worker is not running.")


async def ready(request: Request) -> Response:
    """Readiness: 200 while accepting work; 503 from the moment a drain begins."""
    if state_of(request).engine.ready:
        return Response(status_code=200)
    return error_response(503, "ServiceUnavailableError", "Not accepting work.")


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


async def info(request: Request) -> Response:
    state = state_of(request)
    engine = state.engine
    model = engine.info
    cfg = engine.config
    return MsgspecResponse(
        Info(
            version=__version__,
            model=cfg.model,
            served_model_names=list(state.names),
            architecture=model.architecture,
            model_type=model.model_type,
            labels=list(model.labels),
            num_labels=model.num_labels,
            problem_type=model.problem_type,
            activation=state.default_activation,
            dtype=model.dtype,
            device=model.device,
            limits=Limits(
                max_model_len=engine.max_model_len,
                max_batch_tokens=cfg.max_batch_tokens,
                max_num_seqs=cfg.max_num_seqs,
                max_concurrent_requests=cfg.max_concurrent_requests,
                max_client_batch_size=state.config.max_client_batch_size,
                max_body_bytes=state.config.max_body_bytes,
            ),
            quantization=model.quantization,
        )
    )


async def metrics(request: Request) -> Response:
    registry = state_of(request).engine.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def tokenize(body: bytes, state: AppState, call: Call) -> Response:
    req = decode(tokenize_decoder, body)
    check_model(state, req.model)
    ids = await state.engine.tokenize(req.prompt, add_special_tokens=req.add_special_tokens)
    return MsgspecResponse(
        TokenizeResponse(tokens=ids, count=len(ids), max_model_len=state.engine.max_model_len)
    )
