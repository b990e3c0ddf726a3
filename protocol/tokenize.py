"""`POST /tokenize`, `POST /detokenize` and `GET /tokenizer_info` (vLLM)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec


class TokenizeRequest(msgspec.Struct, kw_only=True):
    """vLLM's two request forms in one struct: a `prompt`, or chat `messages` (exactly one)."""

    model: str | None = None
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    # Default true for `prompt`, false for `messages` (the template holds its own), as in vLLM.
    add_special_tokens: bool | None = None
    # vLLM's default for /tokenize (unlike /classify): the chat ends with the assistant's turn.
    add_generation_prompt: bool | None = None
    continue_final_message: bool = False
    chat_template_kwargs: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    return_token_strs: bool | None = False


class TokenizeResponse(msgspec.Struct):
    count: int
    max_model_len: int
    tokens: list[int]
    # Null unless `return_token_strs` asked for them.
    token_strs: list[str] | None = None


class DetokenizeRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    tokens: list[Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]]


class DetokenizeResponse(msgspec.Struct):
    prompt: str


class TokenizerInfo(msgspec.Struct):
    """What the OpenAPI document says of `GET /tokenizer_info`: the tokenizer's own
    configuration (tokenizer_config.json's fields) comes beside `tokenizer_class`."""

    tokenizer_class: str
