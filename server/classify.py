"""`POST /classify` and `/v1/classify` (vLLM, SGLang); `/invocations` dispatches here too."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from starlette.responses import Response

from engine import ClassifyOptions, ClassifyResult, InvalidInput, Prompts
from engine.activation import Activation, activate, argmax
from protocol.classify import ClassifyData, ClassifyRequest, ClassifyResponse, Usage
from protocol.codec import classify_decoder, decode
from server.adapters import target_of
from server.errors import bad_request
from server.http import Call
from server.prompts import (
    Wording,
    activation_of,
    check_truncation,
    input_names,
    options_of,
    prompts_of,
    vllm_error,
)
from server.responses import MsgspecResponse
from server.state import AppState


def check_batch_size(state: AppState, count: int, field: str) -> None:
    """The per-request prompt cap every model route shares (--max-client-batch-size)."""
    limit = state.config.max_client_batch_size
    if count > limit:
        raise bad_request(
            f"This request has {count} inputs, more than the limit of {limit} per request "
            "(--max-client-batch-size); split it.",
            field,
        )


async def classify_prompts(
    state: AppState, prompts: Prompts, options: ClassifyOptions, kind: Activation
) -> tuple[list[list[float]], ClassifyResult]:
    """Prompts → activated rows, and the engine's figures."""
    result = await state.engine.classify(prompts, options)
    return [activate(row, kind) for row in result.logits], result


def merged(results: Sequence[ClassifyResult]) -> ClassifyResult:
    """Engine calls that answered one request together, as one: rows, prompts and tokens
    add up; each phase is the longest call's, since the calls ran at the same time."""
    if len(results) == 1:
        return results[0]
    return ClassifyResult(
        logits=[row for r in results for row in r.logits],
        prompt_tokens=[n for r in results for n in r.prompt_tokens],
        tokenize_s=max(r.tokenize_s for r in results),
        queue_s=max(r.queue_s for r in results),
        inference_s=max(r.inference_s for r in results),
        total_s=max(r.total_s for r in results),
    )


def timing_headers(call: Call, result: ClassifyResult) -> dict[str, str]:
    """The x-*-time headers; also records the request's figures for its log line."""
    call.prompts = len(result.prompt_tokens)
    call.tokens = sum(result.prompt_tokens)
    call.timings = {
        "tokenize": round(result.tokenize_s * 1000, 3),
        "queue": round(result.queue_s * 1000, 3),
        "inference": round(result.inference_s * 1000, 3),
        "total": round(result.total_s * 1000, 3),
    }
    return {
        "x-request-id": call.request_id,
        "x-tokenization-time": f"{call.timings['tokenize']:.3f}",
        "x-queue-time": f"{call.timings['queue']:.3f}",
        "x-inference-time": f"{call.timings['inference']:.3f}",
        "x-total-time": f"{call.timings['total']:.3f}",
    }


async def classified(
    req: ClassifyRequest, state: AppState, call: Call, wording: Wording = vllm_error
) -> tuple[str, list[list[float]], ClassifyResult]:
    """A decoded classify (or pooling) request → the served name, activated rows, figures;
    the engine's 400s worded by `wording` (vLLM's unless a route speaks for another peer)."""
    call.adopt(req.request_id, req.rid)
    target = target_of(state, req.model)
    kind = activation_of(req, target.activation)
    check_truncation(req.truncate_prompt_tokens, state.engine.max_model_len)
    options = options_of(req, state.config.auto_truncate)
    if target.adapter is not None:
        options = dataclasses.replace(options, adapter=target.adapter)
        call.lora_name = target.adapter
    try:
        prompts = await prompts_of(req, state.engine)
        check_batch_size(state, len(prompts), "input")
        rows, result = await classify_prompts(state, prompts, options, kind)
    except InvalidInput as exc:
        raise wording(input_names(req), exc) from exc
    return target.name, rows, result


async def classify(body: bytes, state: AppState, call: Call) -> Response:
    return await respond(decode(classify_decoder, body), state, call)


async def respond(
    req: ClassifyRequest, state: AppState, call: Call, wording: Wording = vllm_error
) -> Response:
    """A decoded classify request's answer (server/sglang.py checks its own rules first)."""
    model, rows, result = await classified(req, state, call, wording)
    labels = target_of(state, model).labels
    data = [
        ClassifyData(index, labels[argmax(probs)], probs, len(probs))
        for index, probs in enumerate(rows)
    ]
    tokens = sum(result.prompt_tokens)
    response = ClassifyResponse(
        id=f"classify-{call.request_id}",
        created=int(time.time()),
        model=model,
        data=data,
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )
    return MsgspecResponse(response, headers=timing_headers(call, result))
