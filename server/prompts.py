"""From a decoded classify request to engine prompts and options, with 400s that name fields.

Shapes are checked here; what makes a prompt unusable (an empty text) is the engine's rule,
named on the wire by the route's WireNames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from engine import ClassifyOptions, Engine, InvalidInput
from engine.activation import Activation
from engine.errors import InputTooLong
from protocol.classify import ClassifyRequest
from server.errors import ApiError, WireNames, bad_request

T = TypeVar("T")

_INPUT_SHAPES = (
    "`input` must be a string, a list of strings, a list of token ids, or a list of lists "
    "of token ids."
)


def input_names(req: ClassifyRequest) -> WireNames:
    """The chat's `messages`, `input` itself when it is one string, else `input[i]` (a flat
    list of token ids is one prompt, which its first item stands for)."""
    if req.messages is not None:
        return WireNames("input", lambda index, part: "messages")
    if isinstance(req.input, str) or req.input is None:
        return WireNames("input", lambda index, part: "input")
    return WireNames("input", lambda index, part: f"input[{index}]")


async def prompts_of(req: ClassifyRequest, engine: Engine) -> list[str] | list[list[int]]:
    if req.messages is not None:
        if req.input is not None:
            raise bad_request("Send either `input` or `messages`, not both.", "messages")
        if not req.messages:
            raise bad_request("`messages` must not be an empty list.", "messages")
        text = await engine.render_chat(
            text_messages(req.messages),
            add_generation_prompt=req.add_generation_prompt,
            continue_final_message=req.continue_final_message,
            chat_template_kwargs=req.chat_template_kwargs,
        )
        return [text]
    value = req.input
    if value is None:
        raise bad_request("`input` is required.", "input")
    if isinstance(value, str):
        return [value]
    if not value:
        raise bad_request("`input` must not be an empty list.", "input")
    first = value[0]
    if isinstance(first, str):
        return [_shaped(item, str, i) for i, item in enumerate(value)]
    if isinstance(first, int):
        return [[_shaped(item, int, i) for i, item in enumerate(value)]]
    return [_shaped(item, list, i) for i, item in enumerate(value)]


# Content parts that carry text, in OpenAI's chat form and its Responses form.
_TEXT_PARTS = ("text", "input_text")


def text_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages whose `content` is a list of parts, with their text parts joined by newlines
    into one string, as vLLM does for a template that reads strings; any other part is a 400."""
    out = messages
    for i, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        texts: list[str] = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
                continue
            kind = part.get("type") if isinstance(part, dict) else None
            text = part.get("text") if isinstance(part, dict) else None
            if kind not in _TEXT_PARTS or not isinstance(text, str):
                raise bad_request(
                    f"`messages[{i}].content[{j}]` is not a text part (type {kind!r}); this "
                    "model reads text only: send parts of type 'text' with a string `text`.",
                    "messages",
                )
            texts.append(text)
        if out is messages:
            out = list(messages)
        out[i] = {**message, "content": "\n".join(texts)}
    return out


def check_truncation(asked: int | None, max_model_len: int) -> None:
    """vLLM's refusal of a truncation longer than the model, word for word (clients match it)."""
    if asked is not None and asked > max_model_len:
        raise bad_request(
            f"truncate_prompt_tokens={asked} cannot be greater than max_model_len - "
            f"max_output_tokens = {max_model_len}. Please request a smaller truncation size. "
            f"(parameter=truncate_prompt_tokens, value={asked})",
            "truncate_prompt_tokens",
        )


# How a route words the engine's refusal of one prompt: vLLM's (below) or a peer's own.
Wording = Callable[[WireNames, InvalidInput], ApiError]


def vllm_error(names: WireNames, exc: InvalidInput) -> ApiError:
    """The engine's 400 on a vLLM route: an over-long prompt in vLLM's words ("Please reduce
    the length of the input prompt.", which clients match), the rest as `names` says."""
    if isinstance(exc, InputTooLong):
        return bad_request(
            f"You passed {exc.length} input tokens and requested 0 output tokens. However, "
            f"the model's context length is only {exc.limit} tokens, resulting in a maximum "
            f"input length of {exc.limit} tokens. Please reduce the length of the input "
            f"prompt. (parameter=input_tokens, value={exc.length})",
            "input_tokens",
        )
    return names.error(exc)


def _shaped(item: object, kind: type[T], index: int) -> T:
    # The first item decides the shape; every other item must have it too.
    if not isinstance(item, kind):
        raise bad_request(_INPUT_SHAPES, f"input[{index}]")
    return item


def truncation(asked: int | None, auto_truncate: bool) -> int | None:
    """What to truncate to: as asked, else the model's maximum under --auto-truncate."""
    if asked is None and auto_truncate:
        return -1
    return asked


def options_of(req: ClassifyRequest, auto_truncate: bool) -> ClassifyOptions:
    return ClassifyOptions(
        truncate_prompt_tokens=truncation(req.truncate_prompt_tokens, auto_truncate),
        truncation_side=req.truncation_side,
        # A rendered chat template already holds the special tokens it wants.
        add_special_tokens=(
            req.messages is None if req.add_special_tokens is None else req.add_special_tokens
        ),
        priority=req.priority,
    )


def activation(
    default: Activation, use_activation: bool | None, older_name: bool | None = None
) -> Activation:
    """None when the request turns activation off, by `use_activation` or by vLLM's older
    name for it, `activation`; else the model's default."""
    use = use_activation if use_activation is not None else older_name
    return "none" if use is False else default


def activation_of(req: ClassifyRequest, default: Activation) -> Activation:
    if req.normalize is not None:
        raise bad_request(
            "`normalize` applies to embeddings; for classification use `use_activation`.",
            "normalize",
        )
    return activation(default, req.use_activation, req.activation)
