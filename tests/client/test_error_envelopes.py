"""The client reads an error from vLLM's nested envelope and SGLang's flat one (/v1/classify)."""

from __future__ import annotations

import pytest

from client.errors import BadRequestError, status_error

NESTED = b'{"error":{"message":"no","type":"BadRequestError","param":"input[1]","code":400}}'
FLAT = b'{"object":"error","message":"no","type":"BadRequestError","param":"input[1]","code":400}'


@pytest.mark.parametrize("body", [NESTED, FLAT], ids=["vllm", "sglang"])
def test_either_envelope(body: bytes) -> None:
    error = status_error(400, body, request_id="r-1")
    assert isinstance(error, BadRequestError)
    assert (error.message, error.type, error.param, error.code) == (
        "no", "BadRequestError", "input[1]", 400,
    )  # fmt: skip


def test_other_bodies_keep_their_text() -> None:
    error = status_error(400, b'{"error": "Unauthorized"}')
    assert error.type == "HTTPError" and "Unauthorized" in error.message
