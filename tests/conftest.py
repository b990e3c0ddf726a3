from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import build_model


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(
        tmp_path_factory.mktemp("bert"), "bert", num_labels=3, labels=["neg", "neu", "pos"]
    )


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("llama"), "llama", num_labels=2)
