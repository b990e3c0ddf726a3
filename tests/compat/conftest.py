"""Live classifyd servers for the peers' client libraries, and a guard against the internet.

Two servers in one child (tests/live.py): a 3-label classifier served as "tiny" and a
one-label cross-encoder served as "cross", both behind an API key, so every client's way of
sending its key is exercised too. Each library is imported inside the guard: a library that
looks up any host but 127.0.0.1 fails its test at once instead of hanging on DNS.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import build_cross_encoder, build_model
from tests.live import Apps, Live

LABELS = ["neg", "neu", "pos"]
API_KEY = "compat-key"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# The libraries read these at import: no cost-map download (litellm), no telemetry
# (haystack, posthog, huggingface_hub). Not HF_HUB_OFFLINE: InferenceClient refuses every
# URL under it, 127.0.0.1 included.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "HAYSTACK_TELEMETRY_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "COHERE_API_KEY": API_KEY,
    "CO_API_KEY": API_KEY,
    "OPENAI_API_KEY": API_KEY,
}


def _local_only(real: Any, refused: list[str]) -> Any:
    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOCAL_HOSTS:
            refused.append(str(name))
            raise OSError(f"tests/compat: no internet, yet a library looked up {name!r}")
        return real(host, *args, **kwargs)

    return getaddrinfo


# Package scope: undone after the last test here, so no other folder runs under it.
@pytest.fixture(scope="package", autouse=True)
def offline() -> Iterator[None]:
    """The libraries' environment, and name look-ups refused for any host but this one; a
    refused look-up fails the session even where a library swallowed the error."""
    patch = pytest.MonkeyPatch()
    for name, value in OFFLINE_ENV.items():
        patch.setenv(name, value)
    refused: list[str] = []
    patch.setattr(socket, "getaddrinfo", _local_only(socket.getaddrinfo, refused))
    # huggingface_hub fetches huggingface.co/api/agent-harnesses once a day for its
    # user-agent (best effort, gated only by HF_HUB_OFFLINE): seed its in-process cache empty.
    try:
        from huggingface_hub.utils import _detect_agent
    except ImportError:
        pass
    else:
        patch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)
    try:
        yield
    finally:
        patch.undo()
    assert not refused, f"libraries looked up {sorted(set(refused))}"


@pytest.fixture(scope="session")
def clf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("clf"), "bert", num_labels=3, labels=LABELS)


@pytest.fixture(scope="session")
def cross_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_cross_encoder(tmp_path_factory.mktemp("cross"))


@pytest.fixture(scope="session")
def apps(
    clf_dir: Path, cross_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Apps]:
    keyed = {"api_keys": [API_KEY]}
    specs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "clf": ({"model": str(clf_dir), "served_model_names": ["tiny"]}, keyed),
        "cross": ({"model": str(cross_dir), "served_model_names": ["cross"]}, keyed),
    }
    apps = Apps(specs, tmp_path_factory.mktemp("compat-logs") / "classifyd.log")
    try:
        yield apps
    finally:
        apps.stop()


def _live(apps: Apps, name: str, model_dir: Path) -> Iterator[Live]:
    url = apps.url(name, timeout=180)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        yield Live(url, model_dir, client)


@pytest.fixture(scope="session")
def clf(apps: Apps, clf_dir: Path) -> Iterator[Live]:
    yield from _live(apps, "clf", clf_dir)


@pytest.fixture(scope="session")
def cross(apps: Apps, cross_dir: Path) -> Iterator[Live]:
    yield from _live(apps, "cross", cross_dir)


# -- the server's own answers, which every client's must match ------------------------

QUERY = "what is the plot of the movie"
DOCS = ["the plot was great", "coffee and cafe", "a boring film", "the actor was brilliant"]


def server_rerank(cross: Live, query: str = QUERY, docs: list[str] = DOCS) -> list[dict]:
    """vLLM's /rerank over every document, best first: the order and scores to expect."""
    response = cross.post("/rerank", {"model": "cross", "query": query, "documents": docs})
    assert response.status_code == 200, response.text
    results: list[dict] = response.json()["results"]
    return results


def same_ranking(got: list[tuple[int, float]], want: list[dict], top_n: int) -> None:
    """(index, score) pairs, best first, equal to the server's first `top_n` to float rounding
    (batch-mates may differ in the last bits)."""
    assert [i for i, _ in got] == [r["index"] for r in want[:top_n]], (got, want)
    for (_, score), r in zip(got, want, strict=False):
        assert score == pytest.approx(r["relevance_score"], abs=1e-5), (got, want)
