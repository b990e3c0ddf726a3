"""`POST /pooling`: vLLM's generic pooling route, for a classifier its classify task.

The body is a classify request plus vLLM's pooling fields; each prompt's `data` is what
`/classify` puts in `probs` (the activated scores, or logits with `use_activation: false`).
"""

from __future__ import annotations

import base64
import struct
import sys
import time

from starlette.responses import Response

from protocol.classify import Usage
from protocol.codec import decode, pooling_decoder
from protocol.pooling import PoolingData, PoolingRequest, PoolingResponse
from server.classify import classified, timing_headers
from server.errors import bad_request
from server.http import Call, check_model
from server.responses import MsgspecResponse
from server.state import AppState

# struct codes of the dtypes base64 can carry; bfloat16 is float32's upper half.
_FORMATS = {"float32": "f", "float16": "e"}
_ORDER = {"little": "<", "big": ">", "native": "<" if sys.byteorder == "little" else ">"}


def _tasks(state: AppState) -> tuple[str, ...]:
    # What vLLM lists for a sequence classifier: a one-label model also scores pairs.
    return ("classify", "score") if state.engine.info.num_labels == 1 else ("classify",)


def _task_refusal(task: str, supported: tuple[str, ...]) -> str:
    # vLLM's words: a plugin task needs an IO processor; a classifier's head could pool per
    # token, but that task is not the one served; any other task the model cannot do.
    if task == "plugin":
        return (
            "No IOProcessor plugin installed. Please refer to the documentation and to the "
            "'prithvi_geospatial_mae_io_processor' offline inference example for more details."
        )
    if task == "token_classify":
        return f'Try switching the model\'s pooling_task via `PoolerConfig(task="{task}")`'
    return f"Unsupported task: {task!r} Supported tasks: {supported}"


def check_pooling(req: PoolingRequest, state: AppState) -> None:
    """vLLM's refusals, in its order: the model, `dimensions`, a task this model has not."""
    check_model(state, req.model)
    if req.dimensions is not None:
        raise bad_request("dimensions is currently not supported", "dimensions")
    supported = _tasks(state)
    if req.task is not None and req.task not in supported:
        raise bad_request(_task_refusal(req.task, supported), "task")
    if req.encoding_format in ("bytes", "bytes_only"):
        raise bad_request(
            f"encoding_format {req.encoding_format!r} is not supported here; use 'float' or "
            "'base64'.",
            "encoding_format",
        )
    if req.encoding_format == "base64" and req.embed_dtype.startswith("fp8"):
        raise bad_request(
            f"embed_dtype {req.embed_dtype!r} is not supported here; use float32, float16 or "
            "bfloat16.",
            "embed_dtype",
        )


def encoded(row: list[float], req: PoolingRequest) -> list[float] | str:
    """The row as JSON floats, or as base64 of its `embed_dtype` bytes in `endianness`."""
    if req.encoding_format == "float":
        return row
    order = _ORDER[req.endianness]
    if req.embed_dtype == "bfloat16":
        halves = []
        for bits in struct.unpack(f"<{len(row)}I", struct.pack(f"<{len(row)}f", *row)):
            # Round to nearest even, as a float32 → bfloat16 cast does.
            halves.append(((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF)
        raw = struct.pack(f"{order}{len(row)}H", *halves)
    else:
        raw = struct.pack(f"{order}{len(row)}{_FORMATS[req.embed_dtype]}", *row)
    return base64.b64encode(raw).decode("ascii")


async def pooling(body: bytes, state: AppState, call: Call) -> Response:
    req = decode(pooling_decoder, body)
    check_pooling(req, state)
    model, rows, result = await classified(req, state, call)
    tokens = sum(result.prompt_tokens)
    response = PoolingResponse(
        id=f"pooling-{call.request_id}",
        created=int(time.time()),
        model=model,
        data=[PoolingData(index, encoded(row, req)) for index, row in enumerate(rows)],
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )
    return MsgspecResponse(response, headers=timing_headers(call, result))
