"""TEI's flavour of the error envelope, for TEI's routes (`/predict`, `/`, TEI's `/rerank`):
`{"error": str, "error_type": kind}`, the status following from the kind as in TEI's router.

server/errors.py stays the one place for the other routes; this maps the same exceptions
(engine, decoding, ApiError) to TEI's kinds and statuses instead.
"""

from __future__ import annotations

import logging

import msgspec
from starlette.responses import Response

from engine.errors import (
    EmptyPrompt,
    EngineError,
    EngineUnavailable,
    InputTooLong,
    InvalidInput,
    ModelLoadError,
    Overloaded,
)
from protocol.codec import RequestDecodeError
from protocol.tei import TeiError, TeiErrorType
from server.errors import ApiError, PromptPath, Unauthenticated, error_headers
from server.responses import MsgspecResponse

logger = logging.getLogger("classifyd.server")

# TEI's `impl From<&ErrorType> for StatusCode`.
STATUS: dict[TeiErrorType, int] = {
    "Unhealthy": 503,
    "Backend": 424,
    "Overloaded": 429,
    "Validation": 422,
    "Tokenizer": 422,
    "Empty": 400,
}


class TeiApiError(Exception):
    """An error a TEI route raises itself, already in TEI's terms."""

    def __init__(self, error_type: TeiErrorType, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.error_type: TeiErrorType = error_type
        self.message = message
        self.status = STATUS[error_type] if status is None else status


def batch_too_large(count: int, limit: int) -> TeiApiError:
    """TEI's refusal of more inputs than --max-client-batch-size, word for word."""
    return TeiApiError("Validation", f"batch size {count} > maximum allowed batch size {limit}")


def input_error(exc: InvalidInput, path: PromptPath) -> TeiApiError:
    """An engine 400 in TEI's words; `path` names a prompt by its place in the body."""
    if isinstance(exc, InputTooLong):
        where = path(exc.index, None)
        return TeiApiError(
            "Validation",
            f"Input validation error: `{where}` must have less than {exc.limit} tokens. "
            f"Given: {exc.length}",
        )
    if isinstance(exc, EmptyPrompt):
        where = path(exc.index, exc.part)
        return TeiApiError("Empty", f"Input validation error: `{where}` cannot be empty")
    return TeiApiError("Validation", f"Input validation error: {exc.message}")


def _kind(exc: BaseException) -> tuple[int, TeiErrorType, str]:
    if isinstance(exc, TeiApiError):
        return exc.status, exc.error_type, exc.message
    if isinstance(exc, ApiError):
        # TEI refuses what it validates with 422; other statuses (413 body cap, 404/405 of the
        # router) keep theirs.
        if exc.status == 400:
            return 422, "Validation", exc.message
        return exc.status, "Backend" if exc.status >= 500 else "Validation", exc.message
    if isinstance(exc, RequestDecodeError):
        # As axum's Json extractor: a body that is not JSON is a 400, JSON of the wrong shape
        # a 422.
        shape = isinstance(exc.__cause__, msgspec.ValidationError)
        return (422 if shape else 400), "Validation", exc.message
    if isinstance(exc, InvalidInput):
        return 422, "Validation", f"Input validation error: {exc.message}"
    if isinstance(exc, Overloaded):
        return 429, "Overloaded", "Model is overloaded"
    if isinstance(exc, EngineUnavailable | ModelLoadError):
        return 503, "Unhealthy", exc.message
    if isinstance(exc, EngineError):
        return 424, "Backend", f"Backend error: {exc.message}"
    logger.error("unhandled error", exc_info=exc)
    return 500, "Backend", "Internal server error."


def to_tei_response(exc: BaseException, request_id: str | None = None) -> Response:
    """Any exception as TEI's error body; unknown ones are a logged 500."""
    if isinstance(exc, Unauthenticated):
        # TEI's auth layer answers the bare status: no body at all.
        return Response(status_code=exc.status, headers=error_headers(exc.status, request_id))
    status, error_type, message = _kind(exc)
    headers = error_headers(status, request_id)
    return MsgspecResponse(TeiError(message, error_type), status_code=status, headers=headers)
