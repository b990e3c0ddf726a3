"""The error envelopes: vLLM's nested one, and SGLang's flat one (server/errors.py picks per
route)."""

from __future__ import annotations

import msgspec


class ErrorInfo(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: int


class ErrorResponse(msgspec.Struct):
    error: ErrorInfo


class FlatErrorResponse(msgspec.Struct, kw_only=True):
    """SGLang's envelope: the fields at the top level, tagged `"object": "error"` (its
    clients read `body["message"]`)."""

    object: str = "error"
    message: str
    type: str
    param: str | None
    code: int
