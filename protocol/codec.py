"""Shared msgspec encoder and decoders: built once, reused by every request."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from protocol.classify import ClassifyRequest
from protocol.pooling import PoolingRequest
from protocol.scoring import RerankRequest, ScoreRequest
from protocol.tei import PredictRequest, TeiRerankRequest
from protocol.tokenize import DetokenizeRequest, TokenizeRequest

T = TypeVar("T")

encoder = msgspec.json.Encoder()
classify_decoder = msgspec.json.Decoder(ClassifyRequest)
predict_decoder = msgspec.json.Decoder(PredictRequest)
score_decoder = msgspec.json.Decoder(ScoreRequest)
rerank_decoder = msgspec.json.Decoder(RerankRequest)
tei_rerank_decoder = msgspec.json.Decoder(TeiRerankRequest)
tokenize_decoder = msgspec.json.Decoder(TokenizeRequest)
detokenize_decoder = msgspec.json.Decoder(DetokenizeRequest)
pooling_decoder = msgspec.json.Decoder(PoolingRequest)


class RequestDecodeError(ValueError):
    """A body that is not JSON or does not match the struct; `param` is the field path."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _param_from(message: str) -> str | None:
    # msgspec ends validation messages with "- at `$.field[0]`"; report that path as the param.
    marker = "at `$."
    at = message.rfind(marker)
    if at == -1:
        return None
    path = message[at + len(marker) :].rstrip("`")
    return path or None


def decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """Decode `body` or raise RequestDecodeError with a message that names the field path."""
    if not body.strip():
        raise RequestDecodeError("The request body is empty; expected a JSON object.", None)
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise RequestDecodeError(f"Invalid request: {text}", _param_from(text)) from exc
    except msgspec.DecodeError as exc:
        raise RequestDecodeError(f"The request body is not valid JSON: {exc}", None) from exc
    except RecursionError as exc:
        # msgspec's guard against deep nesting (it raises this even for a Raw field).
        raise RequestDecodeError("The request body is nested too deeply.", None) from exc


def encode(obj: Any) -> bytes:
    return encoder.encode(obj)
