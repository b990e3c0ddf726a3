"""Small helpers every kind of test shares: ports, the error envelope, probabilities, polling."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# The paths that answer SGLang's flat envelope instead of vLLM's nested one.
SGLANG_PATHS = frozenset({"/v1/classify"})


def assert_error(
    response: httpx.Response, status: int, type_: str, param: str | None = None
) -> dict[str, Any]:
    """docs/API.md's envelope: {"error": {message, type, param, code}} and nothing else, or on
    SGLang's paths {"object": "error", message, type, param, code}; `param` names the offending
    field, null when the error is not about one. Returns the fields without `object`."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    # A response built by hand (the soak's raw client) has no request: not an SGLang path.
    path = response.request.url.path if response._request is not None else None
    if path in SGLANG_PATHS:
        assert list(body) == ["object", "message", "type", "param", "code"], body
        assert body.pop("object") == "error", body
        error = body
    else:
        # `detail`: FastAPI's own word where vLLM has no such route (a router 404/405).
        assert set(body) - {"detail"} == {"error"}, body
        error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] == type_, error
    assert error["param"] == param, error
    assert error["code"] == status, error
    assert isinstance(error["message"], str) and error["message"], error
    return dict(error)


def softmax(row: Sequence[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(x - top) for x in row]
    total = sum(exps)
    return [e / total for e in exps]


def max_abs_diff(got: Sequence[Sequence[float]], want: Sequence[Sequence[float]]) -> float:
    """The largest difference of one output, over rows that must pair up one to one."""
    assert len(got) == len(want), (len(got), len(want))
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        assert len(a) == len(b), (a, b)
        worst = max([worst, *(abs(x - y) for x, y in zip(a, b, strict=True))])
    return worst


def probs_of(response: httpx.Response) -> list[list[float]]:
    assert response.status_code == 200, response.text
    return [d["probs"] for d in response.json()["data"]]


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def assert_tei_error(response: httpx.Response, status: int, error_type: str) -> str:
    """TEI's error body on its routes: {"error": str, "error_type": kind} and nothing else;
    returns the message."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error", "error_type"}, body
    assert body["error_type"] == error_type, body
    assert isinstance(body["error"], str) and body["error"], body
    return str(body["error"])


# TEI's paths: its auth layer answers a 401 with no body.
TEI_AUTH_PATHS = frozenset({"/predict", "/"})


def assert_unauthorized(response: httpx.Response, path: str) -> None:
    """A missing or wrong API key, as the path's peer answers it: `{"error": "Unauthorized"}`
    (vLLM, SGLang, and any path no route has), or TEI's bare 401; with `WWW-Authenticate` and
    `x-request-id` either way."""
    assert response.status_code == 401, (response.status_code, response.text[:500])
    assert response.headers["www-authenticate"] == "Bearer", response.headers
    assert response.headers.get("x-request-id"), response.headers
    if path in TEI_AUTH_PATHS:
        assert response.content == b"", response.content
        assert "content-type" not in response.headers, response.headers
    else:
        assert response.headers["content-type"].startswith("application/json"), response.headers
        assert response.json() == {"error": "Unauthorized"}, response.text
