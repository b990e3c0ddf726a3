"""The one place that knows HTTP status codes: every error becomes API.md's envelope."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from engine.errors import (
    EngineError,
    EngineUnavailable,
    InferenceError,
    InvalidInput,
    ModelLoadError,
    Overloaded,
)
from protocol.codec import RequestDecodeError
from protocol.errors import ErrorInfo, ErrorResponse
from server.responses import MsgspecResponse

logger = logging.getLogger("classifyd.server")

# Seconds a refused client should wait before retrying; a batch or two on most models.
RETRY_AFTER_S = 1


class ApiError(Exception):
    """An error the HTTP layer raises itself (unknown model, bad field)."""

    def __init__(self, status: int, type_: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.param = param


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "BadRequestError", message, param)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFoundError", message)


# Engine exception → (status, error type). Order matters: subclasses before their bases.
ENGINE_ERRORS: tuple[tuple[type[EngineError], int, str], ...] = (
    (InvalidInput, 400, "BadRequestError"),
    (Overloaded, 429, "OverloadedError"),
    (EngineUnavailable, 503, "ServiceUnavailableError"),
    (ModelLoadError, 503, "ServiceUnavailableError"),
    (InferenceError, 500, "InternalServerError"),
    (EngineError, 500, "InternalServerError"),
)


def error_response(
    status: int, type_: str, message: str, param: str | None = None, request_id: str | None = None
) -> Response:
    headers = {"x-request-id": request_id} if request_id else {}
    if status == 429 or status == 503:
        headers["retry-after"] = str(RETRY_AFTER_S)
    body = ErrorResponse(ErrorInfo(message=message, type=type_, param=param, code=status))
    return MsgspecResponse(body, status_code=status, headers=headers)


def to_response(exc: BaseException, request_id: str | None = None) -> Response:
    """Map any exception to the envelope; unknown ones are a logged 500."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.type, exc.message, exc.param, request_id)
    if isinstance(exc, RequestDecodeError):
        return error_response(400, "BadRequestError", exc.message, exc.param, request_id)
    if isinstance(exc, EngineError):
        for cls, status, type_ in ENGINE_ERRORS:
            if isinstance(exc, cls):
                return error_response(status, type_, exc.message, exc.param, request_id)
    logger.error("unhandled error", exc_info=exc)
    return error_response(500, "InternalServerError", "Internal server error.", None, request_id)


async def handle_exception(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: the last line of defence for anything a route missed."""
    return to_response(exc, request.headers.get("x-request-id"))
