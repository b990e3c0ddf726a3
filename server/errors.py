"""The one place that knows HTTP status codes: every error becomes docs/API.md's envelope, and
the engine's 400s take the names the route's body gives things (WireNames)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from engine.errors import (
    EmptyPrompt,
    EngineError,
    EngineUnavailable,
    InferenceError,
    InputTooLong,
    InvalidInput,
    InvalidPrompt,
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


# A prompt's index in the request (and, for a pair, which of its texts: 0 or 1) → the JSON
# path that names it in the route's body.
PromptPath = Callable[[int, int | None], str]


@dataclass(frozen=True, slots=True)
class WireNames:
    """How one route's body names what the engine's 400s point at. Built only once a route
    has an error to name, so a request that succeeds pays nothing for it."""

    # The field that holds the prompts (too many of them, too many tokens in all).
    prompts: str
    prompt: PromptPath

    def error(self, exc: InvalidInput) -> ApiError:
        if isinstance(exc, InputTooLong):
            # vLLM's param for this refusal, whichever field held the prompt.
            return bad_request(exc.message, "input_tokens")
        if isinstance(exc, EmptyPrompt):
            path = self.prompt(exc.index, exc.part)
            what = "list of token ids" if exc.token_ids else "string"
            return bad_request(f"`{path}` must not be an empty {what}.", path)
        if isinstance(exc, InvalidPrompt):
            return bad_request(exc.message, self.prompt(exc.index, None))
        if exc.param == "prompts":
            return bad_request(exc.message, self.prompts)
        # The engine's other arguments (truncate_prompt_tokens, messages, ...) go by the same
        # names in every route's body.
        return bad_request(exc.message, exc.param)


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
        # A 400 that no route's WireNames translated keeps the engine's name for its argument.
        param = exc.param if isinstance(exc, InvalidInput) else None
        for cls, status, type_ in ENGINE_ERRORS:
            if isinstance(exc, cls):
                return error_response(status, type_, exc.message, param, request_id)
    logger.error("unhandled error", exc_info=exc)
    return error_response(500, "InternalServerError", "Internal server error.", None, request_id)


async def handle_exception(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: the last line of defence for anything a route missed."""
    return to_response(exc, request.headers.get("x-request-id"))
