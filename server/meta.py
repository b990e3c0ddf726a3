"""Routes about the server rather than the model's answers: health, models, info, metrics,
and the tokenizer's (tokenize, detokenize, tokenizer_info)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from protocol.codec import decode, detokenize_decoder, tokenize_decoder
from protocol.models import Info, Limits, ModelCard, ModelList, Version
from protocol.tokenize import DetokenizeResponse, TokenizeResponse
from server import __version__
from server.adapters import target_of
from server.errors import bad_request, error_response
from server.http import Call
from server.prompts import text_messages
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
    # LoRA adapters as vLLM lists them: root is the adapter's directory, parent its base.
    # Those loaded at run time included (engine/adapter_registry.py).
    for adapter in engine.adapters.residents:
        cards.append(
            ModelCard(
                id=adapter.info.name,
                created=state.created,
                max_model_len=engine.max_model_len,
                root=adapter.root,  # as given: a Hub id stays an id
                parent=adapter.parent or state.names[0],
            )
        )
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
    """vLLM's /tokenize: a `prompt`, or chat `messages` rendered with the chat template."""
    req = decode(tokenize_decoder, body)
    target_of(state, req.model)  # adapters share the base's tokenizer
    engine = state.engine
    if req.messages is not None:
        if req.prompt is not None:
            raise bad_request("Send either `prompt` or `messages`, not both.", "messages")
        if not req.messages:
            raise bad_request("`messages` must not be an empty list.", "messages")
        kwargs = dict(req.chat_template_kwargs or {})
        if req.tools is not None:
            kwargs["tools"] = req.tools
        # vLLM's default is true here, unless the final message is to be continued.
        generation = req.add_generation_prompt
        if generation is None:
            generation = not req.continue_final_message
        text = await engine.render_chat(
            text_messages(req.messages),
            add_generation_prompt=generation,
            continue_final_message=req.continue_final_message,
            chat_template_kwargs=kwargs,
        )
        special = False
    elif req.prompt is None:
        raise bad_request("Send `prompt` (a string) or `messages` (a chat).")
    else:
        text, special = req.prompt, True
    if req.add_special_tokens is not None:
        special = req.add_special_tokens
    ids = await engine.tokenize(text, add_special_tokens=special)
    return MsgspecResponse(
        TokenizeResponse(
            count=len(ids),
            max_model_len=engine.max_model_len,
            tokens=ids,
            token_strs=engine.token_strings(ids) if req.return_token_strs else None,
        )
    )


async def detokenize(body: bytes, state: AppState, call: Call) -> Response:
    """vLLM's /detokenize: token ids back to text; an id outside the vocabulary is a 400."""
    req = decode(detokenize_decoder, body)
    target_of(state, req.model)
    return MsgspecResponse(DetokenizeResponse(prompt=await state.engine.detokenize(req.tokens)))


async def tokenizer_info(request: Request) -> Response:
    """vLLM's /tokenizer_info: the tokenizer's configuration and class name."""
    return MsgspecResponse(state_of(request).engine.tokenizer_config())
