"""What the ports of the peers' own tests share (test_peer_suites*.py): texts like theirs, and
reading an answer as their tests read it."""

from __future__ import annotations

import httpx

from tests.conformance.conftest import Live

TEXT = "the movie was great and the music was lovely"
TEXTS_1 = ["what is the plot", "what is the music"]
TEXTS_2 = ["the plot was dull", "the music was lovely"]
QUERY = "the plot of the film"
DOCS = ["the ending was awful", "a great plot and a good story"]
CHAT = [
    {"role": "user", "content": "the cat sat on the mat"},
    {"role": "assistant", "content": "a cat was resting"},
    {"role": "user", "content": "stars are very bright"},
]


def max_len(live: Live) -> int:
    """The server's maximum prompt length, as /v1/models gives it."""
    length: int = live.get("/v1/models").json()["data"][0]["max_model_len"]
    return length


def ok(response: httpx.Response) -> dict:
    """The body of a 200 (the peers' `raise_for_status()`)."""
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


def error_of(response: httpx.Response, status: int) -> dict:
    """vLLM's `error` object of a refusal with this status."""
    assert response.status_code == status, response.text
    body: dict = response.json()
    assert "error" in body, body
    error: dict = body["error"]
    return error
