"""`POST /classify` and `POST /v1/classify`: the vLLM / SGLang request and response."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

# msgspec allows one array-like type per union, so `input` is decoded as "a string or a
# list of (string | int | list[int])"; `prompts.py` checks the list is homogeneous.
InputItem = str | int | list[int]
Input = str | list[InputItem]


class ClassifyRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every field of docs/API.md's table. Unknown fields (vendor extras) are ignored."""

    model: str | None = None
    input: Input | None = None
    messages: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = False
    continue_final_message: bool = False
    chat_template_kwargs: dict[str, Any] | None = None
    truncate_prompt_tokens: Annotated[int, msgspec.Meta(ge=-1)] | None = None
    truncation_side: Literal["left", "right"] | None = None
    add_special_tokens: bool | None = None
    use_activation: bool | None = None
    # vLLM's older name for use_activation.
    activation: bool | None = None
    # Accepted only so it can be rejected with a pointer to use_activation.
    normalize: bool | None = None
    priority: int = 0
    request_id: str | None = None
    rid: str | None = None
    user: str | None = None


class ClassifyData(msgspec.Struct):
    index: int
    label: str
    probs: list[float]
    num_classes: int


class PromptTokensDetails(msgspec.Struct):
    cached_tokens: int = 0


class Usage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None


class ClassifyResponse(msgspec.Struct):
    id: str
    created: int
    model: str
    data: list[ClassifyData]
    usage: Usage
    object: str = "list"
