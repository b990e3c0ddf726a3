"""The server's own Prometheus figures (HTTP outcomes), kept in the engine's registry so that
/metrics is one exposition, while the engine itself carries no HTTP labels."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter

# (outcome, status) pairs every server answers sooner or later; others appear when they happen.
_EXPECTED_OUTCOMES = (
    ("success", "200"), ("error", "400"), ("error", "429"), ("error", "500"), ("error", "503"),
    ("cancelled", "499"),
)  # fmt: skip


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "classifyd_requests", "Requests answered, by outcome and HTTP status.",
            ["outcome", "status"], registry=registry,
        )  # fmt: skip
        # Exist from the first scrape at 0: a series that appears already at 1 is invisible
        # to rate()/increase(), so the first answer of each kind would be lost.
        for outcome, status in _EXPECTED_OUTCOMES:
            self.requests.labels(outcome, status)

    def answered(self, status: int) -> None:
        """Count one model-route answer; 499 is a client that went away before it."""
        outcome = "success" if status < 400 else "cancelled" if status == 499 else "error"
        self.requests.labels(outcome, str(status)).inc()


# One per registry: an app started twice over one engine must not register the series twice.
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, ServerMetrics] = (
    weakref.WeakKeyDictionary()
)


def server_metrics(registry: CollectorRegistry) -> ServerMetrics:
    """The ServerMetrics registered in `registry`, created on first use."""
    metrics = _by_registry.get(registry)
    if metrics is None:
        metrics = _by_registry[registry] = ServerMetrics(registry)
    return metrics
