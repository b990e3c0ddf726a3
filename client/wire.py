"""Request bodies and response decoding for `POST /classify`, with protocol/'s msgspec structs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

from client.errors import APIError, APIStatusError
from protocol.classify import ClassifyData, ClassifyRequest, ClassifyResponse

_encoder = msgspec.json.Encoder()
_response = msgspec.json.Decoder(ClassifyResponse)


@dataclass(frozen=True)
class RequestOptions:
    """The per-request fields of API.md's table; None leaves the server's default."""

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


@dataclass(frozen=True, slots=True)
class Failed:
    """A text the server refused on its own (400 naming it: empty, over-long)."""

    index: int
    error: APIStatusError

    @property
    def message(self) -> str:
        return self.error.message


Item = ClassifyData | Failed


def decode_response(content: bytes, count: int) -> ClassifyResponse:
    try:
        response = _response.decode(content)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise APIError(f"The server's answer is not a classify response: {exc}") from exc
    if len(response.data) != count:
        raise APIError(f"Sent {count} texts, the server answered {len(response.data)} results.")
    return response


def per_text(error: APIStatusError) -> bool:
    """A 400 about one text (empty, over-long, bad token), not about the request."""
    param = error.param or ""
    return error.status_code == 400 and (param == "input_tokens" or param.startswith("input["))


def renumbered(data: list[ClassifyData], start: int) -> list[ClassifyData]:
    """A response's results with indexes into the caller's whole input."""
    return [ClassifyData(start + d.index, d.label, d.probs, d.num_classes) for d in data]
