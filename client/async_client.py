"""AsyncClient: the asyncio client for `POST /classify` (classifyd, vLLM, SGLang).

    async with AsyncClient("http://127.0.0.1:8000") as client:
        results = await client.classify(texts)          # any number, results in order

A large input is split into requests of `batch_size` texts, at most `max_in_flight` requests
at once over as many pooled keep-alive connections; refused (429, 503) or lost requests are
retried with backoff, following Retry-After (client/retry.py). Client is the blocking twin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypedDict, Unpack, overload

import httpx

from client.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    status_error,
)
from client.retry import RetryPolicy, parse_retry_after
from client.wire import (
    Item,
    Refused,
    RequestOptions,
    blame,
    decode_response,
    decode_tokenized,
)
from pipeline import ItemFailed, isolate, ordered_chunks
from protocol.classify import ClassifyData, ClassifyResponse
from protocol.tokenize import TokenizeResponse

logger = logging.getLogger("classifyd.client")

Errors = Literal["raise", "return"]


class ClientOptions(TypedDict, total=False):
    # Bearer key, for a server started with --api-key.
    api_key: str | None
    # Texts per request (at most the server's --max-client-batch-size); default 64.
    batch_size: int
    # Requests at once, each on its own pooled keep-alive connection; default 4.
    max_in_flight: int
    # Seconds to wait for one answer (connecting: at most 10); default 120.
    timeout: float
    # Retries of a refused or lost request, and the first backoff wait in seconds, doubled
    # up to max_backoff (client/retry.py); defaults 8, 0.25 and 20.
    max_retries: int
    backoff: float
    max_backoff: float
    # /classify (vLLM, classifyd) or /v1/classify (SGLang); default /classify.
    path: str
    headers: dict[str, str]
    # The request fields of docs/API.md; unset: the server's defaults.
    model: str | None
    truncate_prompt_tokens: int | None
    truncation_side: Literal["left", "right"] | None
    add_special_tokens: bool | None
    use_activation: bool | None
    priority: int


@dataclass
class ClientStats:
    """Totals since the client was made (progress lines, tests)."""

    requests: int = 0
    retries: int = 0
    texts: int = 0
    prompt_tokens: int = 0


class AsyncClient:
    """One connection pool for its lifetime. An async context manager; aclose() frees it."""

    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", **options: Unpack[ClientOptions]
    ) -> None:
        """`base_url` is the server's root, e.g. http://127.0.0.1:8000."""
        self.base_url = base_url.rstrip("/")
        self.path = options.get("path", "/classify")
        self.batch_size = options.get("batch_size", 64)
        self.max_in_flight = options.get("max_in_flight", 4)
        timeout = options.get("timeout", 120.0)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {self.max_in_flight}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.options = RequestOptions(
            model=options.get("model"),
            truncate_prompt_tokens=options.get("truncate_prompt_tokens"),
            truncation_side=options.get("truncation_side"),
            add_special_tokens=options.get("add_special_tokens"),
            use_activation=options.get("use_activation"),
            priority=options.get("priority", 0),
        )
        self.policy = RetryPolicy(
            max_retries=options.get("max_retries", 8),
            backoff=options.get("backoff", 0.25),
            max_backoff=options.get("max_backoff", 20.0),
        )
        self.stats = ClientStats()
        headers = {"content-type": "application/json", **options.get("headers", {})}
        if api_key := options.get("api_key"):
            headers["authorization"] = f"Bearer {api_key}"
        self._headers = headers
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._http: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def http(self) -> httpx.AsyncClient:
        """The pooled connections: one per request in flight, kept alive between requests."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                timeout=self._timeout,
                limits=httpx.Limits(
                    max_connections=self.max_in_flight,
                    max_keepalive_connections=self.max_in_flight,
                ),
            )
        return self._http

    async def classify(self, texts: str | Iterable[str] | AsyncIterable[str]) -> list[ClassifyData]:
        """Every text's result in input order (`index` counts across the whole input);
        raises the first error (BadRequestError for a text the server refuses)."""
        return [r async for r in self.classify_iter(texts)]

    @overload
    def classify_iter(
        self, texts: str | Iterable[str] | AsyncIterable[str], *, errors: Literal["raise"] = ...
    ) -> AsyncIterator[ClassifyData]: ...

    @overload
    def classify_iter(
        self, texts: str | Iterable[str] | AsyncIterable[str], *, errors: Literal["return"]
    ) -> AsyncIterator[Item]: ...

    async def classify_iter(
        self, texts: str | Iterable[str] | AsyncIterable[str], *, errors: Errors = "raise"
    ) -> AsyncIterator[Any]:
        """Results in input order as they arrive, reading `texts` only as fast as requests
        finish. errors="return": a text the server refuses on its own (a 400 about it)
        yields a `Refused` in its place; other errors are raised either way."""
        async for items in self.item_chunks(texts):
            for item in checked(items, errors):
                yield item

    def item_chunks(
        self, texts: str | Iterable[str] | AsyncIterable[str]
    ) -> AsyncIterator[list[Item]]:
        """The results request by request, in input order. Twice the requests in flight
        are read ahead, so the connections stay busy while the oldest request is slow."""
        return ordered_chunks(
            [texts] if isinstance(texts, str) else texts,
            self._batch,
            chunk_size=self.batch_size,
            window=2 * self.max_in_flight * self.batch_size,
        )

    async def _batch(self, texts: list[str], start: int) -> list[Item]:
        # One bad text fails its whole request: pipeline.isolate finds it, so only it fails.
        outcomes = await isolate(texts, self._data, blame)
        items: list[Item] = []
        for index, (text, outcome) in enumerate(zip(texts, outcomes, strict=True), start):
            if isinstance(outcome, ItemFailed):
                assert isinstance(outcome.error, APIStatusError)  # the only kind blame lays
                items.append(Refused(index, text, outcome.error))
            else:
                # The index into the caller's whole input, not into this request.
                items.append(ClassifyData(index, outcome.label, outcome.probs, outcome.num_classes))
        return items

    async def _data(self, texts: list[str]) -> list[ClassifyData]:
        return (await self.post(texts)).data

    async def post(self, texts: list[str]) -> ClassifyResponse:
        """One request for `texts`, retried as `policy` says; the decoded response. At most
        max_in_flight requests hold a connection at once (waits between tries do not)."""
        content = await self._send(self.path, self.options.body(texts))
        decoded = decode_response(content, len(texts))
        self.stats.requests += 1
        self.stats.texts += len(texts)
        self.stats.prompt_tokens += decoded.usage.prompt_tokens
        return decoded

    async def tokenize(self, text: str) -> TokenizeResponse:
        """`POST /tokenize` for one text, retried as `post` is: its token ids, their count
        and the server's maximum length (how far over it a refused text is)."""
        return decode_tokenized(await self._send("/tokenize", self.options.tokenize_body(text)))

    async def _send(self, path: str, body: bytes) -> bytes:
        """The body of a 200 answer to `body` at `path`, retried as `policy` says."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
        attempt = 0
        while True:
            error: APIError | None
            async with self._slots:
                try:
                    response = await self.http.post(path, content=body)
                except httpx.TransportError as exc:
                    error = self._lost(exc, path)
                else:
                    error = _error_of(response)
                    if error is None:
                        return response.content
            delay = self.policy.delay(attempt, error)
            if delay is None:
                raise error
            self.stats.retries += 1
            logger.info("retrying in %.2f s (try %d): %s", delay, attempt + 2, error)
            attempt += 1
            await asyncio.sleep(delay)

    def _lost(self, exc: httpx.TransportError, path: str) -> APIError:
        cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
        error = cls(f"{type(exc).__name__} from {self.base_url}{path}: {exc or 'no detail'}")
        error.__cause__ = exc
        return error


def _error_of(response: httpx.Response) -> APIError | None:
    """None for a 200; else the typed error its body and headers describe."""
    if response.status_code == 200:
        return None
    return status_error(
        response.status_code,
        response.content,
        request_id=response.headers.get("x-request-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def checked(items: list[Item], errors: Errors) -> Iterator[Item]:
    for item in items:
        if isinstance(item, Refused) and errors == "raise":
            raise item.error
        yield item
