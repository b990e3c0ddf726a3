"""The client's exception tree: what went wrong, with the server's own words when it answered.

ClassifydError
└── APIError
    ├── APIConnectionError      no answer: refused, dropped, unreadable (after retries)
    │   └── APITimeoutError     no answer within the timeout (after retries)
    └── APIStatusError          the server answered with an error (docs/API.md's envelope)
        ├── BadRequestError         400
        ├── AuthenticationError     401
        ├── NotFoundError           404
        ├── RequestTooLargeError    413
        ├── OverloadedError         429 (retried first)
        ├── InternalServerError     500
        └── ServiceUnavailableError 503 (retried first)
"""

from __future__ import annotations

import msgspec

from protocol.errors import ErrorInfo, ErrorResponse, FlatErrorResponse


class ClassifydError(Exception):
    """Base of every error this package raises."""


class APIError(ClassifydError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class APIConnectionError(APIError):
    """The server could not be reached, or dropped the connection before answering."""


class APITimeoutError(APIConnectionError):
    """No answer within the client's timeout."""


class APIStatusError(APIError):
    """The server answered with an error status; the fields are its error envelope."""

    status_code: int = 0

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        type: str,
        param: str | None = None,
        code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.type = type
        self.param = param
        self.code = status_code if code is None else code
        self.request_id = request_id
        # Seconds the server asked the client to wait (Retry-After), when it said.
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status_code} {self.type}: {self.message}"


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class RequestTooLargeError(APIStatusError):
    pass


class OverloadedError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


class ServiceUnavailableError(APIStatusError):
    pass


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    413: RequestTooLargeError,
    429: OverloadedError,
    500: InternalServerError,
    503: ServiceUnavailableError,
}

_envelope = msgspec.json.Decoder(ErrorResponse)
# SGLang's flat envelope, which /v1/classify answers.
_flat = msgspec.json.Decoder(FlatErrorResponse)


def _fields(body: bytes) -> ErrorInfo | FlatErrorResponse | None:
    """The error's fields from either envelope; None for any other body."""
    for decoder in (_envelope, _flat):
        try:
            decoded = decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        return decoded.error if isinstance(decoded, ErrorResponse) else decoded
    return None


def status_error(
    status: int,
    body: bytes,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> APIStatusError:
    """The typed error for an error answer, from either envelope; any other body (a proxy's HTML
    page, Starlette's plain 404) still gives its status and the start of its text."""
    cls = _BY_STATUS.get(status, APIStatusError)
    info = _fields(body)
    if info is None:
        text = body.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
        return cls(
            text,
            status_code=status,
            type="HTTPError",
            request_id=request_id,
            retry_after=retry_after,
        )
    return cls(
        info.message,
        status_code=status,
        type=info.type,
        param=info.param,
        code=info.code,
        request_id=request_id,
        retry_after=retry_after,
    )
