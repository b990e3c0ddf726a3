"""Request bodies and response decoding for `POST /classify` and `POST /tokenize`, with
protocol/'s msgspec structs; which text a 400 is about."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

from client.errors import APIError, APIStatusError, BadRequestError
from pipeline import SOMEONE, Blame
from protocol.classify import ClassifyData, ClassifyRequest, ClassifyResponse
from protocol.tokenize import TokenizeRequest, TokenizeResponse

_encoder = msgspec.json.Encoder()
_response = msgspec.json.Decoder(ClassifyResponse)
_tokenized = msgspec.json.Decoder(TokenizeResponse)


@dataclass(frozen=True)
class RequestOptions:
    """The per-request fields of docs/API.md's table; None leaves the server's default."""

    model: str | None = None
    truncate_prompt_tokens: int | None = None
    truncation_side: Literal["left", "right"] | None = None
    add_special_tokens: bool | None = None
    use_activation: bool | None = None
    priority: int = 0

    def body(self, texts: list[str]) -> bytes:
        # ClassifyRequest omits defaults, so unset fields are not sent at all.
        return _encoder.encode(
            ClassifyRequest(
                model=self.model,
                input=list(texts),
                truncate_prompt_tokens=self.truncate_prompt_tokens,
                truncation_side=self.truncation_side,
                add_special_tokens=self.add_special_tokens,
                use_activation=self.use_activation,
                priority=self.priority,
            )
        )

    def tokenize_body(self, text: str) -> bytes:
        return _encoder.encode(
            TokenizeRequest(
                prompt=text,
                model=self.model,
                add_special_tokens=(
                    True if self.add_special_tokens is None else self.add_special_tokens
                ),
            )
        )


@dataclass(frozen=True, slots=True)
class Refused:
    """A text the server refused on its own (a 400 about it: empty, over-long). `error` is
    the refusal as the server sent it; its param counts in the request that carried it."""

    index: int
    text: str
    error: APIStatusError

    @property
    def message(self) -> str:
        return self.error.message


Item = ClassifyData | Refused


def decode_response(content: bytes, count: int) -> ClassifyResponse:
    try:
        response = _response.decode(content)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise APIError(f"The server's answer is not a classify response: {exc}") from exc
    if len(response.data) != count:
        raise APIError(f"Sent {count} texts, the server answered {len(response.data)} results.")
    return response


def decode_tokenized(content: bytes) -> TokenizeResponse:
    try:
        return _tokenized.decode(content)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise APIError(f"The server's answer is not a tokenize response: {exc}") from exc


def blame(error: Exception) -> Blame:
    """Which text of a request a 400 is about: `input[i]` names it; `input_tokens` (vLLM's
    param for an over-long prompt) names none; any other error is the request's own."""
    if not isinstance(error, BadRequestError):
        return None
    param = error.param or ""
    if param == "input_tokens":
        return SOMEONE
    if param.startswith("input["):
        index = param[len("input[") :].split("]")[0]
        return int(index) if index.isdigit() else SOMEONE
    return None
