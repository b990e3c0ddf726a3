"""`POST /predict`: text-embeddings-inference's classification route, with TEI's reading of
`inputs`, its error body (server/tei_errors.py) and its `x-compute-*` headers.

TEI reads `inputs` as: a string (one text); a list of strings, which must be `[text]` (one
text) or `[a, b]` (one pair); or a batch, a list of lists that are each `[text]` or `[a, b]`.
Anything else (three strings, a string after a list, an empty list) is a 422. Pairs go through
the tokenizer as pairs (NLI models, cross-encoders).
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

from starlette.responses import Response

from engine import ClassifyOptions, ClassifyResult, Prompts
from engine.activation import Activation
from engine.errors import InvalidInput, InvalidPrompt
from protocol.codec import decode, predict_decoder
from protocol.tei import PredictInputs, Prediction, TruncationDirection
from server.classify import classify_prompts, merged, timing_headers
from server.http import Call
from server.prompts import truncation
from server.responses import MsgspecResponse
from server.state import AppState
from server.tei_errors import TeiApiError, batch_too_large, input_error

Item = str | tuple[str, str]

# serde's words for a PredictInput it cannot read, as TEI's clients see them.
_EXPECTED = (
    "expected a string, a pair of strings [string, string] or a batch of mixed strings and "
    "pairs [[string], [string, string], ...]"
)


def _shape_error(what: str) -> TeiApiError:
    return TeiApiError(
        "Validation", f"Failed to deserialize the JSON body into the target type: inputs: {what}"
    )


def _sequence(value: list[str]) -> Item:
    if len(value) == 1:
        return value[0]
    if len(value) == 2:
        return (value[0], value[1])
    raise _shape_error(f"invalid length {len(value)}, {_EXPECTED}")


def read_inputs(inputs: PredictInputs) -> tuple[bool, list[Item]]:
    """(is a batch, the texts and pairs), as TEI's PredictInput deserializer reads `inputs`."""
    if isinstance(inputs, str):
        return False, [inputs]
    if not inputs:
        raise _shape_error(f"invalid length 0, {_EXPECTED}")
    if isinstance(inputs[0], str):
        # Not a batch: `[text]` or `[a, b]`, strings only.
        if not all(isinstance(x, str) for x in inputs):
            raise _shape_error("invalid type: sequence, expected a string")
        return False, [_sequence(cast("list[str]", inputs))]
    items: list[Item] = []
    for value in inputs:
        if isinstance(value, str):
            raise _shape_error(f'invalid type: string "{value}", expected a sequence')
        items.append(_sequence(value))
    return True, items


def characters(items: list[Item]) -> int:
    """TEI's x-compute-characters: the characters of every text, both texts of a pair."""
    return sum(len(x) if isinstance(x, str) else len(x[0]) + len(x[1]) for x in items)


def _ms(seconds: float) -> str:
    # TEI's headers are whole milliseconds (Duration::as_millis).
    return str(int(seconds * 1000))


def tei_headers(
    state: AppState, call: Call, result: ClassifyResult, chars: int, began: float
) -> dict[str, str]:
    """TEI's response headers: x-compute-* and the phase times, in whole milliseconds."""
    timing_headers(call, result)  # records the request's figures for its log line
    elapsed = _ms(time.perf_counter() - began)
    device = state.engine.info.device
    return {
        "x-request-id": call.request_id,
        # TEI's own value on a GPU; classifyd also serves on CPU, and says so.
        "x-compute-type": "cpu" if device.startswith("cpu") else "gpu+optimized",
        "x-compute-time": elapsed,
        "x-compute-characters": str(chars),
        "x-compute-tokens": str(sum(result.prompt_tokens)),
        "x-total-time": elapsed,
        "x-tokenization-time": _ms(result.tokenize_s),
        "x-queue-time": _ms(result.queue_s),
        "x-inference-time": _ms(result.inference_s),
    }


def tei_options(
    state: AppState, truncate: bool | None, direction: TruncationDirection
) -> ClassifyOptions:
    """TEI's `truncate` (absent: --auto-truncate decides) and `truncation_direction`."""
    keep = -1 if truncate else truncation(None, state.config.auto_truncate)
    left = direction.lower() == "left"
    return ClassifyOptions(truncate_prompt_tokens=keep, truncation_side="left" if left else "right")


async def _run_group(
    state: AppState, items: list[Item], group: list[int], options: ClassifyOptions, kind: Activation
) -> tuple[list[list[float]], ClassifyResult]:
    """The items at `group`'s indexes as one engine call; a bad prompt is named by its index
    in the request, not in the group."""
    try:
        return await classify_prompts(
            state, cast("Prompts", [items[i] for i in group]), options, kind
        )
    except InvalidPrompt as exc:
        raise exc.at(group[exc.index]) from None


async def predict(body: bytes, state: AppState, call: Call) -> Response:
    began = time.perf_counter()
    req = decode(predict_decoder, body)
    batch, items = read_inputs(req.inputs)
    limit = state.config.max_client_batch_size
    if len(items) > limit:
        raise batch_too_large(len(items), limit)
    kind = "none" if req.raw_scores else state.default_activation
    options = tei_options(state, req.truncate, req.truncation_direction)
    singles = [i for i, item in enumerate(items) if isinstance(item, str)]
    pairs = [i for i, item in enumerate(items) if isinstance(item, tuple)]
    # The engine takes texts or pairs per call; a mixed batch is two calls run together.
    groups = [g for g in (singles, pairs) if g]
    try:
        outcomes = await asyncio.gather(
            *(_run_group(state, items, g, options, kind) for g in groups)
        )
    except InvalidInput as exc:

        def path(index: int, part: int | None) -> str:
            # The JSON path of the item (or of one text of a pair), whatever shape `inputs` had.
            at = f"[{index}]" if batch else ""
            return "inputs" + at + ("" if part is None else f"[{part}]")

        raise input_error(exc, path) from exc
    labels = state.engine.info.labels
    rows: list[list[Prediction]] = [[] for _ in items]
    for group, (probs, _) in zip(groups, outcomes, strict=True):
        for index, row in zip(group, probs, strict=True):
            ranked = sorted(zip(row, labels, strict=True), key=lambda p: -p[0])
            rows[index] = [Prediction(score=s, label=label) for s, label in ranked]
    result = merged([result for _, result in outcomes])
    headers = tei_headers(state, call, result, characters(items), began)
    return MsgspecResponse(rows if batch else rows[0], headers=headers)
