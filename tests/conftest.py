from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import build_model, sentences
from tests.reference import reference_probs


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(
        tmp_path_factory.mktemp("bert"), "bert", num_labels=3, labels=["neg", "neu", "pos"]
    )


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("llama"), "llama", num_labels=2)


@pytest.fixture(scope="session")
def texts() -> list[str]:
    # Lengths from 1 to 60 words (3 to ~70 tokens), so batches pad.
    return sentences(60, seed=4)


@pytest.fixture(scope="session")
def reference(bert_dir: Path, texts: list[str]) -> list[list[float]]:
    """`texts` through plain transformers on the tiny BERT, one at a time."""
    return reference_probs(bert_dir, texts)
