"""Models by Hub id (engine/hub.py) through the real huggingface_hub download path, against
the fake Hub of tests/fakehub.py on 127.0.0.1: only the needed files, revisions, tokens for
gated and private repos, the Hub's errors as one sentence each, and the offline cache."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import ClassifyOptions, Engine, EngineConfig
from engine.errors import ModelLoadError
from engine.hub import choose_files, fetch_model, is_local
from offline.classifier import Classifier
from tests.builders import build_model
from tests.fakehub import OUTSIDER_TOKEN, READER_TOKEN, FakeHub, files_of
from tests.reference import reference_probs
from tests.support import max_abs_diff, softmax

TOL = 1e-5
# What a repo holds besides the model: none of it is fetched.
EXTRAS = {
    "pytorch_model.bin": b"not needed when safetensors exist",
    "onnx/model.safetensors": b"another format's weights",
    "README.md": b"# tiny",
    "modeling_tiny.py": b"# remote code, fetched only with trust_remote_code",
}
NEEDED = {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"}


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("other"), "bert", num_labels=2, labels=["a", "b"])


@pytest.fixture(scope="module")
def headless_dir(tmp_path_factory: pytest.TempPathFactory, bert_dir: Path) -> Path:
    """A BERT trunk without a classification head (BertModel)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    out = tmp_path_factory.mktemp("headless")
    AutoModel.from_config(AutoConfig.from_pretrained(bert_dir)).save_pretrained(out)
    AutoTokenizer.from_pretrained(bert_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def hub(bert_dir: Path, other_dir: Path, headless_dir: Path) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        tiny = fake.add("org/tiny", files_of(bert_dir, EXTRAS))
        tiny.add_commit(files_of(other_dir), "v1")
        fake.add("org/gated", files_of(bert_dir), gated=True)
        fake.add("org/private", files_of(bert_dir), private=True)
        fake.add("org/headless", files_of(headless_dir))
        fake.add("org/no-config", {"README.md": b"# nothing"})
        tokenizer_only = {k: v for k, v in files_of(bert_dir).items() if "safetensors" not in k}
        fake.add("org/tokenizer", tokenizer_only)
        yield fake


@pytest.fixture
def use_hub(monkeypatch: pytest.MonkeyPatch, hub: FakeHub) -> FakeHub:
    """huggingface_hub pointed at the fake Hub (its constants are read at import, so
    HF_ENDPOINT cannot be set now), online, without a token."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    template = hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    hub.requests.clear()
    return hub


def fetch(cache: Path, model: str, **kw: object) -> EngineConfig:
    return fetch_model(EngineConfig(model=model, download_dir=str(cache), **kw))  # type: ignore[arg-type]


def error_of(cache: Path, model: str, **kw: object) -> str:
    with pytest.raises(ModelLoadError) as caught:
        fetch(cache, model, **kw)
    message = caught.value.message
    assert "\n" not in message and "Traceback" not in message
    return message


def test_local_directories_are_never_looked_up(use_hub: FakeHub, bert_dir: Path) -> None:
    cfg = fetch_model(EngineConfig(model=str(bert_dir)))
    assert cfg.model == str(bert_dir) and cfg.tokenizer is None
    assert is_local("./models/x") and is_local("/abs/missing") and is_local("a/b/c")
    assert not is_local("org/name") and not is_local("bert-base-uncased")
    with pytest.raises(ModelLoadError, match="does not exist"):
        fetch_model(EngineConfig(model="./no/such/dir"))
    assert use_hub.requests == []


def test_an_id_that_cannot_be_one(use_hub: FakeHub, tmp_path: Path) -> None:
    message = error_of(tmp_path, "org/bad name!")
    assert "neither a local directory nor a Hugging Face Hub id" in message
    assert use_hub.requests == []


def test_downloads_only_what_a_classifier_needs(use_hub: FakeHub, tmp_path: Path) -> None:
    cfg = fetch(tmp_path / "cache", "org/tiny")
    snapshot = Path(cfg.model)
    assert snapshot.is_relative_to(tmp_path / "cache" / "models--org--tiny" / "snapshots")
    assert {p.name for p in snapshot.iterdir()} == NEEDED
    assert use_hub.fetched() == NEEDED  # no .bin beside safetensors, no onnx/, no README
    # The names clients use stay the id, not the cache path.
    assert cfg.names == ("org/tiny",)


def test_remote_code_and_bin_only_repos() -> None:
    files = ["config.json", "tokenizer.json", "pytorch_model.bin", "training_args.bin",
             "modeling_x.py", "sub/other.py"]  # fmt: skip
    chosen = choose_files("o/m", files, weights=True, remote_code=False)
    assert chosen == ["config.json", "tokenizer.json", "pytorch_model.bin"]
    chosen = choose_files("o/m", files, weights=True, remote_code=True)
    assert "modeling_x.py" in chosen and "sub/other.py" not in chosen
    with pytest.raises(ModelLoadError, match="no Transformers weights"):
        choose_files("o/m", ["config.json", "tf_model.h5"], weights=True, remote_code=False)


def test_revision_pins_a_commit(use_hub: FakeHub, tmp_path: Path) -> None:
    main = Path(fetch(tmp_path, "org/tiny").model)
    pinned = Path(fetch(tmp_path, "org/tiny", revision="v1").model)
    assert main != pinned
    assert '"a"' in (pinned / "config.json").read_text()
    assert '"neg"' in (main / "config.json").read_text()
    message = error_of(tmp_path, "org/tiny", revision="nope")
    assert message == "The Hub repo 'org/tiny' has no revision 'nope' (a branch, tag or commit)."


def test_gated_repo_needs_a_token_with_access(
    use_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = error_of(tmp_path, "org/gated")
    assert "gated" in message and "HF_TOKEN" in message
    monkeypatch.setenv("HF_TOKEN", OUTSIDER_TOKEN)
    assert "has no access" in error_of(tmp_path, "org/gated")
    monkeypatch.setenv("HF_TOKEN", READER_TOKEN)
    assert (Path(fetch(tmp_path, "org/gated").model) / "model.safetensors").is_file()


def test_private_and_missing_repos(
    use_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = error_of(tmp_path, "org/nothing")
    assert message == (
        "No local directory and no Hugging Face Hub model 'org/nothing'; check the name, or "
        "set HF_TOKEN if it is a private repo."
    )
    assert "set HF_TOKEN" in error_of(tmp_path, "org/private")
    monkeypatch.setenv("HF_TOKEN", READER_TOKEN)
    assert (Path(fetch(tmp_path, "org/private").model) / "config.json").is_file()
    monkeypatch.setenv("HF_TOKEN", "hf_unknown")
    assert "HF_TOKEN" in error_of(tmp_path, "org/tiny")


def test_a_repo_that_is_not_a_model(use_hub: FakeHub, tmp_path: Path) -> None:
    message = error_of(tmp_path, "org/no-config")
    assert (
        message
        == "The Hub repo 'org/no-config' has no config.json; it is not a Transformers model."
    )


def test_offline_from_the_cache(
    use_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    online = fetch(tmp_path, "org/tiny")
    use_hub.requests.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert fetch(tmp_path, "org/tiny").model == online.model
    # No Hub at all (nothing listens there): the cache too.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/x")
    assert fetch(tmp_path, "org/tiny").model == online.model
    # A cache without the listing (an older huggingface_hub wrote it): the snapshot as it is.
    shutil.rmtree(tmp_path / "models--org--tiny" / "trees")
    assert fetch(tmp_path, "org/tiny").model == online.model
    assert use_hub.requests == []
    message = error_of(tmp_path / "empty", "org/tiny")
    assert message.startswith("Cannot reach the Hugging Face Hub and 'org/tiny' is not")
    assert "download it once with network access" in message
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert error_of(tmp_path, "org/tiny", revision="v1").startswith("Cannot reach")


def test_a_separate_tokenizer_repo(use_hub: FakeHub, tmp_path: Path, bert_dir: Path) -> None:
    cfg = fetch(tmp_path, str(bert_dir), tokenizer="org/tokenizer")
    assert cfg.model == str(bert_dir)
    assert cfg.tokenizer is not None and (Path(cfg.tokenizer) / "tokenizer.json").is_file()
    assert use_hub.fetched() == {"config.json", "tokenizer.json", "tokenizer_config.json"}
    with pytest.raises(ModelLoadError, match="tokenizer directory"):
        fetch(tmp_path, str(bert_dir), tokenizer="./no-such-tokenizer")


async def test_the_engine_serves_an_id_like_its_directory(
    use_hub: FakeHub, tmp_path: Path, bert_dir: Path, texts: list[str],
    reference: list[list[float]],
) -> None:  # fmt: skip
    config = EngineConfig(
        model="org/tiny", download_dir=str(tmp_path), device="cpu", dtype="float32",
        num_threads=1, tokenizer="org/tokenizer",
    )  # fmt: skip
    engine = Engine(config)
    await asyncio.wait_for(engine.start(), 60)
    try:
        result = await engine.classify(texts[:12], ClassifyOptions())
    finally:
        await engine.stop()
    assert engine.config.model == "org/tiny" and engine.config.names == ("org/tiny",)
    assert engine.info.labels == ("neg", "neu", "pos")
    probs = [softmax(row) for row in result.logits]
    assert max_abs_diff(probs, reference[:12]) < TOL


async def test_a_repo_without_a_head_is_refused(use_hub: FakeHub, tmp_path: Path) -> None:
    engine = Engine(EngineConfig(model="org/headless", download_dir=str(tmp_path), num_threads=1))
    with pytest.raises(ModelLoadError, match="not a sequence classifier") as caught:
        await asyncio.wait_for(engine.start(), 60)
    await engine.stop()
    # The error names the id the user gave, not the cache directory it was fetched into.
    assert str(caught.value).startswith("'org/headless' holds a")
    assert str(tmp_path) not in str(caught.value)


def test_the_classifier_takes_an_id(
    use_hub: FakeHub, tmp_path: Path, texts: list[str], bert_dir: Path
) -> None:
    with Classifier("org/tiny", download_dir=str(tmp_path), num_threads=1) as clf:
        results = clf.classify(texts[:5])
        assert clf.name == "org/tiny"
    want = reference_probs(bert_dir, texts[:5])
    assert max_abs_diff([r.probs for r in results], want) < TOL
    with pytest.raises(ModelLoadError, match="no Hugging Face Hub model 'org/missing'"):
        Classifier("org/missing", download_dir=str(tmp_path))
