"""The one place that knows HTTP status codes: every error becomes its route family's envelope
(vLLM's, SGLang's; `Envelope`), and the engine's 400s take the names the route's body gives
things (WireNames)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from engine.errors import (
    AdapterNotFound,
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
from protocol.errors import ErrorInfo, ErrorResponse, FlatErrorResponse, Unauthorized
from server.responses import MsgspecResponse

logger = logging.getLogger("classifyd.server")

# Seconds a refused client should wait before retrying; a batch or two on most models.
RETRY_AFTER_S = 1


class ApiError(Exception):
    """An error the HTTP layer raises itself (unknown model, bad field)."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        param: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.param = param
        # Where vLLM has no such route, FastAPI's `detail` (vLLM's envelope carries it too).
        self.detail = detail


class RouterError(ApiError):
    """An error of the routing itself (no such path, a method the path does not take), typed
    as the path's family types its framework's own errors."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, "", message, detail=HTTPStatus(status).phrase)


class Unauthenticated(ApiError):
    """A missing or wrong API key (server/middleware.py). Each flavour answers it as its peer's
    auth middleware does, not in its error envelope."""

    def __init__(self) -> None:
        super().__init__(401, "AuthenticationError", "Unauthorized")


# Any exception → a route's error response (`to_response`, `sglang_response`, or a peer's own
# flavour beside this module); each TABLE entry names its own.
ErrorMapper = Callable[[BaseException, str | None], Response]


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "BadRequestError", message, param)


def not_found(message: str, detail: str | None = None) -> ApiError:
    return ApiError(404, "NotFoundError", message, detail=detail)


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
    (AdapterNotFound, 404, "NotFoundError"),
    (InvalidInput, 400, "BadRequestError"),
    (Overloaded, 429, "OverloadedError"),
    (EngineUnavailable, 503, "ServiceUnavailableError"),
    (ModelLoadError, 503, "ServiceUnavailableError"),
    (InferenceError, 500, "InternalServerError"),
    (EngineError, 500, "InternalServerError"),
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """How one route family writes an error: `render` turns (status, type, message, param)
    into the body; `router_type` is the type its framework gives the errors it raises itself
    (unknown path, wrong method)."""

    render: Callable[[int, str, str, str | None], Any]
    router_type: Callable[[int], str]


def _nested(status: int, type_: str, message: str, param: str | None) -> ErrorResponse:
    return ErrorResponse(ErrorInfo(message=message, type=type_, param=param, code=status))


def _flat(status: int, type_: str, message: str, param: str | None) -> FlatErrorResponse:
    return FlatErrorResponse(message=message, type=type_, param=param, code=status)


# vLLM (and the routes it has no peer for): {"error": {...}}; FastAPI's own 404/405 there
# are typed by the status's phrase ("Not Found").
VLLM = Envelope(_nested, lambda status: HTTPStatus(status).phrase)
# SGLang: {"object": "error", "message", ...} at the top; its own 404/405 typed "404".
SGLANG = Envelope(_flat, str)


def error_response(
    status: int,
    type_: str,
    message: str,
    param: str | None = None,
    request_id: str | None = None,
    envelope: Envelope = VLLM,
    detail: str | None = None,
) -> Response:
    body = envelope.render(status, type_, message, param)
    if detail is not None and isinstance(body, ErrorResponse):
        body.detail = detail
    return MsgspecResponse(body, status_code=status, headers=error_headers(status, request_id))


def error_headers(status: int, request_id: str | None) -> dict[str, str]:
    """The headers of every error answer, whatever its envelope: the request id, and when to
    retry a refusal that a retry can fix."""
    headers = {"x-request-id": request_id} if request_id else {}
    if status == 429 or status == 503:
        headers["retry-after"] = str(RETRY_AFTER_S)
    return headers


def to_response(
    exc: BaseException, request_id: str | None = None, envelope: Envelope = VLLM
) -> Response:
    """Map any exception to the envelope; unknown ones are a logged 500."""
    if isinstance(exc, Unauthenticated):
        # vLLM and SGLang alike: a bare {"error": "Unauthorized"}.
        headers = error_headers(exc.status, request_id)
        return MsgspecResponse(Unauthorized(), status_code=exc.status, headers=headers)
    if isinstance(exc, RouterError):
        type_ = envelope.router_type(exc.status)
        return error_response(
            exc.status, type_, exc.message, None, request_id, envelope, exc.detail
        )
    if isinstance(exc, ApiError):
        return error_response(
            exc.status, exc.type, exc.message, exc.param, request_id, envelope, exc.detail
        )
    if isinstance(exc, RequestDecodeError):
        return error_response(400, "BadRequestError", exc.message, exc.param, request_id, envelope)
    if isinstance(exc, EngineError):
        # A 400 that no route's WireNames translated keeps the engine's name for its argument.
        param = exc.param if isinstance(exc, InvalidInput) else None
        for cls, status, type_ in ENGINE_ERRORS:
            if isinstance(exc, cls):
                return error_response(status, type_, exc.message, param, request_id, envelope)
    logger.error("unhandled error", exc_info=exc)
    return error_response(
        500, "InternalServerError", "Internal server error.", None, request_id, envelope
    )


def sglang_response(exc: BaseException, request_id: str | None = None) -> Response:
    """`to_response` in SGLang's envelope (its /v1/classify)."""
    return to_response(exc, request_id, SGLANG)


ExceptionHandler = Callable[[Request, Exception], Any]


def exception_handlers(errors: Mapping[str, ErrorMapper]) -> dict[Any, ExceptionHandler]:
    """Starlette's handlers: each answers in the error flavour of the path's route (`errors`,
    by path; vLLM's for a path no route has). The request id header is added around them
    (server/middleware.py)."""

    async def router_error(request: Request, exc: Exception) -> Response:
        # Starlette's own 404 (no route) and 405 (with `Allow`), as JSON, not its plain text.
        assert isinstance(exc, HTTPException)
        errors_of = errors.get(request.url.path, to_response)
        response = errors_of(RouterError(exc.status_code, str(exc.detail)), None)
        response.headers.update(exc.headers or {})
        return response

    async def unexpected(request: Request, exc: Exception) -> Response:
        # The last line of defence for anything a route missed.
        return errors.get(request.url.path, to_response)(exc, None)

    return {HTTPException: router_error, Exception: unexpected}
