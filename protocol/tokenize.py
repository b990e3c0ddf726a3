"""`POST /tokenize`."""

from __future__ import annotations

import msgspec


class TokenizeRequest(msgspec.Struct, kw_only=True):
    prompt: str
    model: str | None = None
    add_special_tokens: bool = True


class TokenizeResponse(msgspec.Struct):
    tokens: list[int]
    count: int
    max_model_len: int
