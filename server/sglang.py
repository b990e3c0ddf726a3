"""`POST /v1/classify` as SGLang answers it: vLLM's classify body and answer, with SGLang's own
refusals of empty and whitespace-only texts (its `serving_classify.py` checks these before
anything else, in these words), its words for an over-long prompt (its tokenizer manager's),
and its flat error envelope (TABLE names `sglang_response`)."""

from __future__ import annotations

from starlette.responses import Response

from engine.errors import InputTooLong
from protocol.codec import classify_decoder, decode
from server.classify import respond
from server.errors import ApiError, bad_request
from server.http import Call
from server.state import AppState


def refuse_blank(value: object) -> None:
    """SGLang's 400s for `""`, `[]`, a text that is only whitespace, and a negative id in one
    tokenized prompt (the request's `input`; `messages` are not its concern)."""
    if isinstance(value, str):
        if not value:
            raise bad_request("Input cannot be empty", "input")
        if value.isspace():
            raise bad_request("Input cannot be empty or whitespace only", "input")
    elif isinstance(value, list):
        if not value:
            raise bad_request("Input cannot be empty", "input")
        if isinstance(value[0], str):
            for index, item in enumerate(value):
                if isinstance(item, str) and not item.strip():
                    raise bad_request(
                        f"Input at index {index} cannot be empty or whitespace only",
                        f"input[{index}]",
                    )
        elif isinstance(value[0], int):
            # One tokenized prompt: SGLang names the negative id by its place.
            for index, item in enumerate(value):
                if isinstance(item, int) and item < 0:
                    message = f"Token ID at index {index} must be non-negative"
                    raise bad_request(message, "input[0]")


async def classify(body: bytes, state: AppState, call: Call) -> Response:
    req = decode(classify_decoder, body)
    call.adopt(req.request_id, req.rid)
    refuse_blank(req.input)
    try:
        return await respond(req, state, call)
    except ApiError as exc:
        # The shared path words an over-long prompt as vLLM does; SGLang has its own text.
        cause = exc.__cause__
        if isinstance(cause, InputTooLong):
            raise too_long(cause) from cause
        raise


def too_long(exc: InputTooLong) -> ApiError:
    """SGLang's refusal of a prompt past the context length, word for word."""
    return bad_request(
        f"The input ({exc.length} tokens) is longer than the model's context length "
        f"({exc.limit} tokens).",
        "input_tokens",
    )
