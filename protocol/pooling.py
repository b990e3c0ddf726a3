"""`POST /pooling`: vLLM's generic pooling route, answered for the classify task."""

from __future__ import annotations

from typing import Literal

import msgspec

from protocol.classify import ClassifyRequest, Usage

# vLLM's pooling task names; a classifier answers "classify" only.
PoolingTask = Literal[
    "embed", "classify", "score", "token_embed", "token_classify", "plugin", "embed&token_classify"
]


class PoolingRequest(ClassifyRequest, kw_only=True, omit_defaults=True):
    """A classify request plus vLLM's pooling fields."""

    task: PoolingTask | None = None
    encoding_format: Literal["float", "base64", "bytes", "bytes_only"] = "float"
    embed_dtype: Literal["float32", "float16", "bfloat16", "fp8_e4m3", "fp8_e5m2"] = "float32"
    endianness: Literal["native", "big", "little"] = "native"
    # Embedding-only; refused as vLLM refuses it.
    dimensions: int | None = None


class PoolingData(msgspec.Struct):
    index: int
    # The class probabilities (or logits with use_activation false); base64 when asked.
    data: list[float] | str
    object: str = "pooling"


class PoolingResponse(msgspec.Struct):
    id: str
    created: int
    model: str
    data: list[PoolingData]
    usage: Usage
    object: str = "list"
