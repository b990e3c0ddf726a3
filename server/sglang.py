"""`POST /v1/classify` as SGLang answers it: vLLM's classify body and answer, with SGLang's own
refusals of empty and whitespace-only texts (its `serving_classify.py` checks these before
anything else, in these words), its words for an over-long prompt (its tokenizer manager's),
and its flat error envelope (TABLE names `sglang_response`)."""

from __future__ import annotations

from starlette.responses import Response

from engine.errors import InputTooLong, InvalidInput
from protocol.codec import classify_decoder, decode
from server.classify import respond
from server.errors import ApiError, WireNames, bad_request
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
    return await respond(req, state, call, sglang_error)


def sglang_error(names: WireNames, exc: InvalidInput) -> ApiError:
    """The engine's 400s in SGLang's words: its tokenizer manager's text for a prompt past the
    context length, word for word; the rest as `names` says."""
    if isinstance(exc, InputTooLong):
        return bad_request(
            f"The input ({exc.length} tokens) is longer than the model's context length "
            f"({exc.limit} tokens).",
            "input_tokens",
        )
    return names.error(exc)
