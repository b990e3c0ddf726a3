"""Client: the blocking client for `POST /classify`, the same API as AsyncClient.

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        for r in client.classify(texts):          # any number of texts, results in order
            print(r.index, r.label, r.probs)

It runs an AsyncClient on an event loop of its own (a daemon thread): one implementation of
splitting, requests in flight, pooling and retries for both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Literal, Unpack, overload

from client.async_client import AsyncClient, ClientOptions, ClientStats, Errors, checked
from client.wire import Item
from pipeline import LoopThread
from protocol.classify import ClassifyData, ClassifyResponse
from protocol.tokenize import TokenizeResponse


class Client:
    """Thread-safe. A context manager; close() frees the connections and the loop's thread."""

    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", **options: Unpack[ClientOptions]
    ) -> None:
        self._async = AsyncClient(base_url, **options)
        self._loop: LoopThread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            try:
                loop.run(self._async.aclose())
            finally:
                loop.close()

    @property
    def loop(self) -> LoopThread:
        # Started on first use, so a Client that is made and never used costs no thread.
        with self._lock:
            if self._loop is None:
                self._loop = LoopThread("classifyd-client")
            return self._loop

    @property
    def stats(self) -> ClientStats:
        return self._async.stats

    @property
    def base_url(self) -> str:
        return self._async.base_url

    def classify(self, texts: str | Iterable[str]) -> list[ClassifyData]:
        """Every text's result in input order (`index` counts across the whole input);
        raises the first error (BadRequestError for a text the server refuses)."""
        return list(self.classify_iter(texts))

    @overload
    def classify_iter(
        self, texts: str | Iterable[str], *, errors: Literal["raise"] = ...
    ) -> Iterator[ClassifyData]: ...

    @overload
    def classify_iter(
        self, texts: str | Iterable[str], *, errors: Literal["return"]
    ) -> Iterator[Item]: ...

    def classify_iter(
        self, texts: str | Iterable[str], *, errors: Errors = "raise"
    ) -> Iterator[Any]:
        """Results in input order as they arrive; `texts` is read on a helper thread only as
        fast as requests finish (bounded memory for any input). errors="return": a text the
        server refuses on its own yields a `Refused` in its place."""
        for items in self.loop.iterate(self._async.item_chunks(texts)):
            yield from checked(items, errors)

    def post(self, texts: list[str]) -> ClassifyResponse:
        """One request for `texts`, with retries; the decoded response."""
        return self.loop.run(self._async.post(texts))

    def tokenize(self, text: str) -> TokenizeResponse:
        """`POST /tokenize` for one text, with retries: its token ids, their count and the
        server's maximum length."""
        return self.loop.run(self._async.tokenize(text))
