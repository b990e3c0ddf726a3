"""LoRA adapters by Hub id (engine/adapter_hub.py) through the real huggingface_hub download
path against the fake Hub: only the adapter's files are fetched, the snapshot serves exactly,
and a repo that is not an adapter or does not exist is one sentence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import EngineConfig
from engine.adapter_hub import fetch_adapters
from engine.errors import ModelLoadError
from engine.model.runner import TransformersRunner
from tests.builders import build_model, sentences
from tests.fakehub import FakeHub, files_of
from tests.lora_builders import build_adapter, peft_logits
from tests.support import max_abs_diff, softmax


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lora-hub")
    base = build_model(root / "base", "bert", num_labels=3, seed=1)
    return base, build_adapter(base, root / "adapter", "bert", num_labels=4, seed=2)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, dirs: tuple[Path, Path]) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    with FakeHub() as fake:
        fake.add("org/adapter", files_of(dirs[1], {"README.md": b"# not fetched"}))
        fake.add("org/not-an-adapter", {"README.md": b"# nothing"})
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        template = fake.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield fake


def config(base: Path, cache: Path, path: str) -> EngineConfig:
    return EngineConfig(
        model=str(base), device="cpu", num_threads=1, enable_lora=True,
        lora_modules=(f"a={path}",), download_dir=str(cache),
    )  # fmt: skip


def test_an_adapter_by_hub_id_serves_exactly(
    hub: FakeHub, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    base, adapter = dirs
    local = fetch_adapters(config(base, tmp_path, "org/adapter"))
    path = Path(local.adapters[0].path)
    assert path.is_relative_to(tmp_path)
    assert {p.name for p in path.iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    tokenizer: Any = AutoTokenizer.from_pretrained(base)
    prompts = [tokenizer(t)["input_ids"] for t in sentences(6, seed=3)]
    runner = TransformersRunner(local)
    runner.load()
    got = runner.finish(runner.launch(prompts, None, [1] * len(prompts)))
    want = peft_logits(base, adapter, prompts)
    assert max_abs_diff([softmax(r) for r in got], [softmax(r) for r in want]) <= 1e-5


def test_local_paths_are_never_looked_up(
    hub: FakeHub, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    base, adapter = dirs
    assert fetch_adapters(config(base, tmp_path, str(adapter))).adapters[0].path == str(adapter)
    assert not hub.requests


def test_repos_that_are_not_adapters(hub: FakeHub, dirs: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has no adapter_config\.json"):
        fetch_adapters(config(dirs[0], tmp_path, "org/not-an-adapter"))
    with pytest.raises(ModelLoadError, match="No local directory and no Hugging Face Hub"):
        fetch_adapters(config(dirs[0], tmp_path, "org/missing"))
