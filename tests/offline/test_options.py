"""The Classifier's keywords: the typed ClassifierOptions follows the dataclasses they are
declared on, so an option added there and forgotten here fails."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, get_type_hints

import pytest

from engine.config import EngineConfig
from offline.options import ENGINE_KEYS, ClassifierOptions, FeedOptions, TextOptions, split_options


def _declared() -> dict[str, Any]:
    engine = get_type_hints(EngineConfig)
    declared = {name: engine[name] for name in ENGINE_KEYS}
    for cls in (TextOptions, FeedOptions):
        hints = get_type_hints(cls)
        declared.update({f.name: hints[f.name] for f in fields(cls)})
    return declared


def test_classifier_options_are_the_declared_ones() -> None:
    assert get_type_hints(ClassifierOptions) == _declared()


def test_split_options() -> None:
    engine, text, feed = split_options(
        {"workers": 1, "truncate_prompt_tokens": -1, "use_activation": False, "chunk_size": 5}
    )
    assert engine == {"workers": 1}
    assert text == TextOptions(truncate_prompt_tokens=-1, use_activation=False)
    assert feed == FeedOptions(chunk_size=5)
    with pytest.raises(TypeError, match="unexpected option"):
        split_options({"request_timeout": 3.0})  # type: ignore[typeddict-unknown-key]
    with pytest.raises(ValueError, match="chunk_size"):
        split_options({"chunk_size": 0})
