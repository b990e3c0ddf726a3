"""When to try a request again, and how long to wait first.

Retried: 429 (admission limit) and 503 (not ready, draining), the 502/504 a proxy in front
answers for a server that is restarting, and answers that never came (refused, dropped,
timed out). Classifying is idempotent, so resending a request the server may have seen is
safe. Everything else (400, 401, 404, 413, 500) is the same on every try and raised at once.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field

from client.errors import APIConnectionError, APIError, APIStatusError

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    # Tries after the first; then the last error is raised.
    max_retries: int = 8
    # The first wait in seconds, doubled on each retry up to max_backoff ("equal jitter":
    # half fixed, half random, so clients refused together do not return together).
    backoff: float = 0.25
    max_backoff: float = 20.0
    # A server's Retry-After is followed as given, up to this many seconds.
    max_retry_after: float = 120.0
    statuses: frozenset[int] = RETRY_STATUSES
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {self.max_retries}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must not be negative")

    def retryable(self, error: APIError) -> bool:
        if isinstance(error, APIConnectionError):
            return True
        return isinstance(error, APIStatusError) and error.status_code in self.statuses

    def delay(self, attempt: int, error: APIError) -> float | None:
        """Seconds to wait before retry number `attempt + 1`; None: give up and raise."""
        if attempt >= self.max_retries or not self.retryable(error):
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            # The server knows best; up to 10 % more spreads a crowd refused at once.
            return min(retry_after, self.max_retry_after) * (1 + 0.1 * self.rng.random())
        ceiling = min(self.max_backoff, self.backoff * 2**attempt)
        return ceiling / 2 + self.rng.random() * ceiling / 2


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)
