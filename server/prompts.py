"""From a decoded classify request to engine prompts and options, with 400s that name fields."""

from __future__ import annotations

from engine import ClassifyOptions, Engine
from engine.activation import Activation, default_activation
from protocol.classify import ClassifyRequest
from server.errors import bad_request

_INPUT_SHAPES = (
    "`input` must be a string, a list of strings, a list of token ids, or a list of lists "
    "of token ids."
)


async def prompts_of(req: ClassifyRequest, engine: Engine) -> list[str] | list[list[int]]:
    if req.messages is not None:
        if req.input is not None:
            raise bad_request("Send either `input` or `messages`, not both.", "messages")
        if not req.messages:
            raise bad_request("`messages` must not be an empty list.", "messages")
        text = await engine.render_chat(
            req.messages,
            add_generation_prompt=req.add_generation_prompt,
            continue_final_message=req.continue_final_message,
            chat_template_kwargs=req.chat_template_kwargs,
        )
        return [text]
    value = req.input
    if value is None:
        raise bad_request("`input` is required.", "input")
    if isinstance(value, str):
        if not value:
            raise bad_request("`input` must not be an empty string.", "input")
        return [value]
    if not value:
        raise bad_request("`input` must not be an empty list.", "input")
    first = value[0]
    if isinstance(first, str):
        texts: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise bad_request(_INPUT_SHAPES, f"input[{i}]")
            if not item:
                raise bad_request(f"`input[{i}]` must not be an empty string.", f"input[{i}]")
            texts.append(item)
        return texts
    if isinstance(first, int):
        ids: list[int] = []
        for i, item in enumerate(value):
            if not isinstance(item, int):
                raise bad_request(_INPUT_SHAPES, f"input[{i}]")
            ids.append(item)
        return [ids]
    rows: list[list[int]] = []
    for i, item in enumerate(value):
        if not isinstance(item, list):
            raise bad_request(_INPUT_SHAPES, f"input[{i}]")
        if not item:
            raise bad_request(
                f"`input[{i}]` must not be an empty list of token ids.", f"input[{i}]"
            )
        rows.append(item)
    return rows


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


def activation_of(req: ClassifyRequest, problem_type: str | None, num_labels: int) -> Activation:
    if req.normalize is not None:
        raise bad_request(
            "`normalize` applies to embeddings; for classification use `use_activation`.",
            "normalize",
        )
    use = req.use_activation if req.use_activation is not None else req.activation
    if use is False:
        return "none"
    return default_activation(problem_type, num_labels)
