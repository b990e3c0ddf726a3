"""`GET /v1/models` and `GET /version`."""

from __future__ import annotations

import msgspec


class ModelCard(msgspec.Struct):
    id: str
    created: int
    max_model_len: int
    object: str = "model"
    owned_by: str = "classifyd"
    root: str | None = None
    # A LoRA adapter's base model (vLLM's field); None for the base itself.
    parent: str | None = None


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"


class Version(msgspec.Struct):
    version: str


class Limits(msgspec.Struct):
    max_model_len: int
    max_batch_tokens: int
    max_num_seqs: int
    max_concurrent_requests: int
    max_client_batch_size: int
    max_body_bytes: int


class Info(msgspec.Struct):
    """`GET /info`: what is served and how."""

    version: str
    model: str
    served_model_names: list[str]
    architecture: str
    model_type: str
    labels: list[str]
    num_labels: int
    problem_type: str | None
    activation: str
    dtype: str
    device: str
    limits: Limits
    # "int8" when served with --quantization int8 (dynamic, Linear layers), else "none".
    quantization: str = "none"
