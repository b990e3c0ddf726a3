"""Live classifyd servers for the black-box suite, and plain-transformers references.

Tests speak HTTP only; the servers are real uvicorns on 127.0.0.1, all served by one child
process (tests.live.Apps), started once per session.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import build_cross_encoder, build_model
from tests.live import Apps, AppSpecs, Live

# Renders `<|role|>content\n` per message; `greeting` is a chat_template_kwargs hook.
CHAT_TEMPLATE = (
    "{% if greeting is defined %}<|greeting|>{{ greeting }}\n{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
LABELS = ["neg", "neu", "pos"]
API_KEYS = ("k1", "k2")


@dataclass
class Fleet:
    """Every server of the suite in one child; `model_dirs` says which model each serves."""

    apps: Apps
    model_dirs: dict[str, Path]


# -- model directories ------------------------------------------------------------------


@pytest.fixture(scope="session")
def clf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clf")
    return build_model(out, "bert", num_labels=3, labels=LABELS)


@pytest.fixture(scope="session")
def cross_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_cross_encoder(tmp_path_factory.mktemp("cross"))


@pytest.fixture(scope="session")
def chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chat")
    return build_model(out, "llama", num_labels=2, chat_template=CHAT_TEMPLATE)


# -- servers ----------------------------------------------------------------------------

# name → (model, served names, EngineConfig extras, ServerConfig fields)
FLEET: dict[str, tuple[str, tuple[str, ...], dict, dict]] = {
    # (a) 3-label BERT served as "tiny" and "alias", 8 inputs and 4096 bytes per request.
    "clf": ("clf", ("tiny", "alias"), {}, {"max_client_batch_size": 8, "max_body_bytes": 4096}),
    # (b) a 1-label BERT cross-encoder for /score and /rerank.
    "cross": ("cross", ("cross",), {}, {}),
    # (c) a tiny llama with a chat template, for `messages`.
    "chat": ("chat", ("chat",), {}, {}),
    # (d) API keys k1 and k2.
    "secured": ("clf", ("tiny",), {}, {"api_keys": list(API_KEYS)}),
    # (e) --auto-truncate.
    "auto": ("clf", ("tiny",), {}, {"auto_truncate": True}),
    # At most 2 sequences in flight: a 3-input request is refused at once (429).
    "tight": ("clf", ("tiny",), {"max_concurrent_requests": 2}, {}),
}


@pytest.fixture(scope="session")
def fleet(
    clf_dir: Path, cross_dir: Path, chat_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """Every server, started together; each server fixture waits for its own."""
    dirs = {"clf": clf_dir, "cross": cross_dir, "chat": chat_dir}
    apps: AppSpecs = {
        name: ({"model": str(dirs[model]), "served_model_names": list(names), **engine}, server)
        for name, (model, names, engine, server) in FLEET.items()
    }
    fleet = Fleet(
        Apps(apps, tmp_path_factory.mktemp("logs") / "classifyd.log"),
        {name: dirs[model] for name, (model, *_) in FLEET.items()},
    )
    try:
        yield fleet
    finally:
        fleet.apps.stop()


def _live(fleet: Fleet, name: str) -> Iterator[Live]:
    url = fleet.apps.url(name, timeout=120)
    with httpx.Client(base_url=url, timeout=60) as client:
        yield Live(url, fleet.model_dirs[name], client)


@pytest.fixture(scope="session")
def clf(fleet: Fleet) -> Iterator[Live]:
    yield from _live(fleet, "clf")


@pytest.fixture(scope="session")
def cross(fleet: Fleet) -> Iterator[Live]:
    yield from _live(fleet, "cross")


@pytest.fixture(scope="session")
def chat(fleet: Fleet) -> Iterator[Live]:
    yield from _live(fleet, "chat")


@pytest.fixture(scope="session")
def secured(fleet: Fleet) -> Iterator[Live]:
    yield from _live(fleet, "secured")


@pytest.fixture(scope="session")
def auto(fleet: Fleet) -> Iterator[Live]:
    yield from _live(fleet, "auto")


@pytest.fixture(scope="session")
def tight(fleet: Fleet) -> Iterator[Live]:
    yield from _live(fleet, "tight")


# -- references: plain transformers, one input at a time, no padding ------------------


class Reference:
    def __init__(self, model_dir: Path) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        self.model: Any = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()

    def ids(self, text: str, second: str | None = None, **kwargs: Any) -> list[int]:
        ids: list[int] = self.tokenizer(text, second, **kwargs)["input_ids"]
        return ids

    def encode(
        self, text: str, second: str | None = None, side: str = "right", **kwargs: Any
    ) -> dict[str, Any]:
        previous = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = side
        try:
            return dict(self.tokenizer(text, second, return_tensors="pt", **kwargs))
        finally:
            self.tokenizer.truncation_side = previous

    def logits_of(self, encoded: dict[str, Any]) -> list[float]:
        import torch

        with torch.inference_mode():
            row: list[float] = self.model(**encoded).logits[0].float().tolist()
        return row

    def logits(
        self, text: str, second: str | None = None, side: str = "right", **kwargs: Any
    ) -> list[float]:
        return self.logits_of(self.encode(text, second, side, **kwargs))

    def logits_ids(self, ids: list[int]) -> list[float]:
        import torch

        return self.logits_of({"input_ids": torch.tensor([ids])})


@pytest.fixture(scope="session")
def bert_ref(clf_dir: Path) -> Reference:
    return Reference(clf_dir)


@pytest.fixture(scope="session")
def cross_ref(cross_dir: Path) -> Reference:
    return Reference(cross_dir)


@pytest.fixture(scope="session")
def chat_ref(chat_dir: Path) -> Reference:
    return Reference(chat_dir)


# -- helpers the tests share ------------------------------------------------------------


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def long_text(words: int, seed: int = 0) -> str:
    """`words` one-token words (each is in the tiny BERT vocabulary)."""
    from tests.builders import WORDS

    return " ".join(WORDS[(i * 7 + seed) % len(WORDS)] for i in range(words))
