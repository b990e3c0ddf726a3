"""`POST /v1/classify` as SGLang answers it: vLLM's classify body and answer, with SGLang's own
refusals of empty and whitespace-only texts (its `serving_classify.py` checks these before
anything else, in these words) and its flat error envelope (TABLE names `sglang_response`)."""

from __future__ import annotations

from starlette.responses import Response

from protocol.codec import classify_decoder, decode
from server.classify import respond
from server.errors import bad_request
from server.http import Call
from server.state import AppState


def refuse_blank(value: object) -> None:
    """SGLang's 400s for `""`, `[]`, and a text that is only whitespace (the request's
    `input`; `messages` and token ids are not its concern)."""
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


async def classify(body: bytes, state: AppState, call: Call) -> Response:
    req = decode(classify_decoder, body)
    call.adopt(req.request_id, req.rid)
    refuse_blank(req.input)
    return await respond(req, state, call)
