"""client/: retries (429 with Retry-After, 503, a dropped connection), typed errors, splitting,
bounded requests in flight over reused connections, order, and the async twin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from client import (
    AsyncClient,
    BadRequestError,
    Client,
    OverloadedError,
    Refused,
    RetryPolicy,
)
from client.retry import parse_retry_after
from tests.client.conftest import Fake

TEXTS = [f"text number {i}" for i in range(100)]


def test_retries_429_honouring_retry_after_then_succeeds(fake: Fake) -> None:
    fake.script("429:1", "ok")
    with Client(fake.url, backoff=0.01) as client:
        began = time.monotonic()
        results = client.classify(["a b", "c"])
        waited = time.monotonic() - began
    assert [r.label for r in results] == ["a b", "c"]
    assert [r.index for r in results] == [0, 1]
    # Retry-After: 1 was followed, not the 10 ms backoff.
    assert 1.0 <= waited < 3.0, waited
    assert client.stats.retries == 1
    assert fake.stats()["requests"] == 2


def test_retries_503_and_a_dropped_connection(fake: Fake) -> None:
    fake.script("503", "drop", "429", "ok")
    with Client(fake.url, backoff=0.01, max_backoff=0.05) as client:
        assert [r.label for r in client.classify(["x"])] == ["x"]
    assert client.stats.retries == 3
    assert fake.stats()["requests"] == 4


def test_gives_up_after_max_retries_with_the_wire_error(fake: Fake) -> None:
    fake.script("429:0", "429:0", "429:0", "ok")
    with Client(fake.url, max_retries=2) as client, pytest.raises(OverloadedError) as caught:
        client.classify(["x"])
    error = caught.value
    assert error.status_code == 429 and error.code == 429
    assert error.type == "OverloadedError"
    assert error.message == "The server is at capacity."
    assert error.param is None
    assert error.retry_after == 0.0
    assert fake.stats()["requests"] == 3


def test_a_bad_request_is_raised_typed_and_not_retried(fake: Fake) -> None:
    client = Client(fake.url, truncate_prompt_tokens=10**6)
    with client, pytest.raises(BadRequestError) as caught:
        client.classify(["x"])
    assert caught.value.param == "truncate_prompt_tokens"
    assert caught.value.type == "BadRequestError"
    assert caught.value.status_code == 400
    assert fake.stats()["requests"] == 1


def test_a_refused_text_fails_alone(fake: Fake) -> None:
    texts = ["one", "two", "BAD", "four", "five"]
    with Client(fake.url, batch_size=4) as client:
        items = list(client.classify_iter(texts, errors="return"))
        assert [i.index for i in items] == [0, 1, 2, 3, 4]
        assert isinstance(items[2], Refused) and items[2].text == "BAD"
        assert items[2].error.param == "input[2]"
        assert [getattr(i, "label", None) for i in items] == ["one", "two", None, "four", "five"]
        # The 400 named the text: its batch, then the rest of it together, then "five".
        assert fake.stats()["requests"] == 3
        with pytest.raises(BadRequestError):
            client.classify(texts)


def test_an_over_long_text_names_none_so_each_is_sent_alone(fake: Fake) -> None:
    long = "a b c d e f"
    with Client(fake.url, batch_size=8) as client:
        items = list(client.classify_iter(["one", long, "three"], errors="return"))
        assert isinstance(items[1], Refused) and items[1].error.param == "input_tokens"
        assert [getattr(i, "label", None) for i in items] == ["one", None, "three"]
        assert fake.stats()["requests"] == 1 + 3
        counted = client.tokenize(long)
    assert (counted.count, counted.max_model_len) == (6, 4)


def test_splits_bounds_in_flight_and_reuses_connections(fake: Fake) -> None:
    fake.script(delay=0.05)
    with Client(fake.url, batch_size=7, max_in_flight=3, api_key="sekret") as client:
        results = client.classify(iter(TEXTS))
    assert [r.label for r in results] == TEXTS
    assert [r.index for r in results] == list(range(len(TEXTS)))
    stats = fake.stats()
    assert stats["sizes"] and max(stats["sizes"]) <= 7 and sum(stats["sizes"]) == len(TEXTS)
    # A request leaves with what is ready when there is room: full ones, once reading is ahead.
    assert 15 <= stats["requests"] <= 25 and stats["sizes"].count(7) >= 10
    assert stats["max_active"] == 3
    # Keep-alive: no more connections than requests in flight, not one per request.
    assert stats["connections"] <= 3
    assert set(stats["auth"]) == {"Bearer sekret"}
    assert client.stats.texts == len(TEXTS)


async def test_async_client_bounds_in_flight_retries_and_keeps_order(fake: Fake) -> None:
    fake.script("503", "drop", delay=0.03)

    async def texts() -> AsyncIterator[str]:
        for text in TEXTS:
            yield text

    async with AsyncClient(fake.url, batch_size=5, max_in_flight=4, backoff=0.01) as client:
        results = await client.classify(texts())
        assert [r.label for r in results] == TEXTS
        assert [r.index for r in results] == list(range(len(TEXTS)))
        items = [i async for i in client.classify_iter(["a", "BAD", "c"], errors="return")]
        assert isinstance(items[1], Refused) and [items[0].index, items[2].index] == [0, 2]
    stats = fake.stats()
    assert 2 <= stats["max_active"] <= 4
    assert client.stats.retries == 2


async def test_async_client_gives_up_typed(fake: Fake) -> None:
    fake.script("503", "503", "503")
    async with AsyncClient(fake.url, max_retries=1, backoff=0.01) as client:
        with pytest.raises(Exception) as caught:
            await asyncio.wait_for(client.classify(["x"]), 10)
    assert getattr(caught.value, "status_code", None) == 503


def test_retry_after_forms_and_backoff() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    policy = RetryPolicy(max_retries=3, backoff=1.0, max_backoff=3.0)
    error = OverloadedError("x", status_code=429, type="OverloadedError")
    delays = [policy.delay(attempt, error) for attempt in range(4)]
    assert delays[3] is None
    for attempt, delay in enumerate(delays[:3]):
        ceiling = min(3.0, 2.0**attempt)
        assert delay is not None and ceiling / 2 <= delay <= ceiling
    refused = OverloadedError("x", status_code=429, type="OverloadedError", retry_after=2.0)
    assert 2.0 <= (policy.delay(0, refused) or 0) <= 2.2
    assert policy.delay(0, BadRequestError("x", status_code=400, type="BadRequestError")) is None
