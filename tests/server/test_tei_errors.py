"""TEI's error flavour (server/tei_errors.py): each exception's kind, status and words as TEI's
router answers them, for the failures a live test cannot provoke on demand."""

from __future__ import annotations

import json

import pytest

from engine.errors import EngineUnavailable, InferenceError, Overloaded, RequestTimeout
from server.errors import ApiError
from server.tei_errors import to_tei_response


@pytest.mark.parametrize(
    ("exc", "status", "kind", "message"),
    [
        (Overloaded(3, 2, 2), 429, "Overloaded", "Model is overloaded"),
        (EngineUnavailable("draining"), 503, "Unhealthy", "draining"),
        (RequestTimeout("too slow"), 503, "Unhealthy", "too slow"),
        (InferenceError("boom"), 424, "Backend", "Backend error: boom"),
        (ApiError(400, "BadRequestError", "bad"), 422, "Validation", "bad"),
        (ApiError(413, "RequestTooLargeError", "big"), 413, "Validation", "big"),
        (RuntimeError("secret"), 500, "Backend", "Internal server error."),
    ],
)
def test_kind_status_and_message(exc: Exception, status: int, kind: str, message: str) -> None:
    response = to_tei_response(exc, "rid-1")
    assert response.status_code == status
    assert json.loads(bytes(response.body)) == {"error": message, "error_type": kind}
    assert response.headers["x-request-id"] == "rid-1"
    assert ("retry-after" in response.headers) == (status in (429, 503))
