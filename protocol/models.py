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


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"


class Version(msgspec.Struct):
    version: str
