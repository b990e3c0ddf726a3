"""The build's training pieces on a tiny local BERT: the split forward, cached-feature training,
determinism. No network, a few seconds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, BertConfig

import default_model as dm
from default_model import layers, training
from default_model.data import Example
from tests.builders import build_model, sentences

DEPTH = 3


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3-layer BERT classifier with its tokenizer, saved like the real encoder."""
    out = tmp_path_factory.mktemp("encoder")
    build_model(out, "bert", num_labels=2, labels=["negative", "positive"], seed=3)
    config = BertConfig.from_pretrained(out)
    config.num_hidden_layers = DEPTH
    torch.manual_seed(3)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    return out


def _model(path: Path) -> Any:
    model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch.float32)
    model.eval()
    return model


def _batch(path: Path, count: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    ids = tokenizer(sentences(count, seed=5, max_words=20))["input_ids"]
    return training.pad(ids, tokenizer.pad_token_id)


@pytest.mark.parametrize("frozen", range(DEPTH + 1))
def test_split_forward_matches_the_model(encoder: Path, frozen: int) -> None:
    model = _model(encoder)
    ids, mask = _batch(encoder)
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).logits
        hidden = layers.frozen_forward(model, ids, mask, frozen)
        logits = layers.top_forward(model, hidden, mask, frozen)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_first_position_only_matches_the_whole_layer(encoder: Path) -> None:
    model = _model(encoder)
    ids, mask = _batch(encoder)
    layer = model.bert.encoder.layer[1]
    with torch.inference_mode():
        hidden = layers.frozen_forward(model, ids, mask, 1)
        whole = layers.layer_forward(layer, hidden, mask)
        first = layers.layer_forward(layer, hidden, mask, first_only=True)
    assert first.shape == (ids.shape[0], 1, hidden.shape[-1])
    torch.testing.assert_close(first, whole[:, :1], rtol=0, atol=1e-5)


def test_cached_features_are_per_sentence(encoder: Path) -> None:
    """A sentence's cached states do not depend on the batch it ran in (padding is masked)."""
    from transformers import AutoTokenizer

    model = _model(encoder)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    ids = tokenizer(sentences(20, seed=8, max_words=30))["input_ids"]
    recipe = dm.Recipe(frozen_layers=2)
    cached = training.cache_features(model, ids, tokenizer.pad_token_id, recipe, "fp32")
    for i in (0, 7, 19):
        alone = layers.frozen_forward(model, *training.pad([ids[i]], tokenizer.pad_token_id), 2)
        torch.testing.assert_close(cached[i], alone[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("frozen", [1, 2])
def test_training_from_the_cache_equals_running_the_frozen_layers_live(
    encoder: Path, frozen: int
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    pad_id = tokenizer.pad_token_id
    ids = tokenizer(sentences(48, seed=9, max_words=25))["input_ids"]
    labels = [i % 2 for i in range(len(ids))]
    recipe = dm.Recipe(frozen_layers=frozen, batch_size=8, epochs=2, learning_rate=1e-3)

    torch.manual_seed(0)
    cached_model = _model(encoder)
    features = training.cache_features(cached_model, ids, pad_id, recipe, "fp32")
    training.fit_top(cached_model, lambda b: training.pad_features([features[i] for i in b]),
                     [len(s) for s in ids], labels, recipe, "fp32", progress=False)  # fmt: skip

    torch.manual_seed(0)
    live_model = _model(encoder)

    def live(batch: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        batch_ids, mask = training.pad([ids[i] for i in batch], pad_id)
        was_training = live_model.training
        live_model.eval()
        with torch.no_grad():
            hidden = layers.frozen_forward(live_model, batch_ids, mask, frozen)
        live_model.train(was_training)
        return hidden, mask

    training.fit_top(live_model, live, [len(s) for s in ids], labels, recipe, "fp32",
                     progress=False)  # fmt: skip

    start = _model(encoder).state_dict()
    moved = 0
    for name, value in cached_model.state_dict().items():
        # A key bias shifts every score of a query equally, so softmax makes its gradient zero
        # in exact arithmetic; Adam scales the float noise left there up to full-size steps.
        if not name.endswith("attention.self.key.bias"):
            torch.testing.assert_close(value, live_model.state_dict()[name], rtol=0, atol=1e-5)
        trained = name.startswith(("classifier", "bert.pooler")) or any(
            name.startswith(f"bert.encoder.layer.{k}.") for k in range(frozen, DEPTH)
        )
        if trained:
            moved += not torch.equal(value, start[name])
        else:
            assert torch.equal(value, start[name]), f"{name} is frozen but changed"
    assert moved > 0


def _examples(count: int) -> list[Example]:
    return [
        Example("movie", str(i), 1.0 if i % 3 else -1.0, text)
        for i, text in enumerate(sentences(count, seed=11, max_words=30))
    ]


def test_train_is_deterministic_and_keeps_the_frozen_weights(encoder: Path, tmp_path: Path) -> None:
    recipe = dm.Recipe(frozen_layers=2, batch_size=8, max_length=16, epochs=1)
    outputs = []
    for run in ("a", "b"):
        staging = tmp_path / run
        staging.mkdir()
        with training.torch_settings(recipe.num_threads):
            seconds = training.train(encoder, staging, _examples(40), recipe, "fp32", False)
        assert seconds >= 0
        outputs.append(staging / "model.safetensors")
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    saved, original = load_file(outputs[0]), load_file(encoder / "model.safetensors")
    for name in (
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.1.output.dense.weight",
    ):
        assert torch.equal(saved[name], original[name])
    assert not torch.equal(
        saved["bert.encoder.layer.2.attention.self.key.weight"],
        original["bert.encoder.layer.2.attention.self.key.weight"],
    )
    # The saved directory is an ordinary classifier that transformers loads as it is.
    model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "a"))
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_more_frozen_layers_than_the_encoder_has(encoder: Path, tmp_path: Path) -> None:
    recipe = dm.Recipe(frozen_layers=DEPTH + 1)
    with pytest.raises(dm.DefaultModelError, match="frozen_layers"):
        training.train(encoder, tmp_path, _examples(4), recipe, "fp32", False)


def test_recipe_rejects_negative_frozen_layers() -> None:
    with pytest.raises(ValueError, match="frozen_layers"):
        dataclasses.replace(dm.Recipe(), frozen_layers=-1)
