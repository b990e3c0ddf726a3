"""The error envelopes: vLLM's nested one, and SGLang's flat one (server/errors.py picks per
route)."""

from __future__ import annotations

import msgspec


class ErrorInfo(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: int


class ErrorResponse(msgspec.Struct, omit_defaults=True):
    error: ErrorInfo
    # FastAPI's own {"detail": ...}, beside the envelope, where vLLM has no such route or
    # method and its framework answers alone (its clients and tests read `detail` there).
    detail: str | None = None


class Unauthorized(msgspec.Struct):
    """vLLM's and SGLang's answer to a missing or wrong API key, `{"error": "Unauthorized"}`:
    their auth middleware writes it before any route, outside their error envelopes."""

    error: str = "Unauthorized"


class FlatErrorResponse(msgspec.Struct, kw_only=True):
    """SGLang's envelope: the fields at the top level, tagged `"object": "error"` (its
    clients read `body["message"]`)."""

    object: str = "error"
    message: str
    type: str
    param: str | None
    code: int
