"""The Classifier's keyword options: the engine's (EngineConfig, by the server's flag names),
how each text is classified (TextOptions) and how texts are fed to the engine (FeedOptions).
Each is declared once, on its dataclass; `classifyd classify` offers the same ones as flags."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypedDict

from engine.config import Dtype, EngineConfig, Quantization
from engine.engine import ClassifyOptions
from engine.options import option, options

_PER_TEXT = ClassifyOptions()


@dataclass(frozen=True)
class TextOptions:
    """How every text is classified: the request fields of the API, set once for a run.
    Unset, the engine's defaults (ClassifyOptions)."""

    # -1: the model's maximum length, which is what --auto-truncate means.
    truncate_prompt_tokens: int | None = field(
        default=_PER_TEXT.truncate_prompt_tokens,
        metadata=option("keep at most this many tokens of each text"),
    )
    truncation_side: Literal["left", "right"] | None = field(
        default=_PER_TEXT.truncation_side,
        metadata=option("left or right", shown="the tokenizer's"),
    )
    # For Python callers only; `classify` keeps the tokenizer's special tokens.
    add_special_tokens: bool = field(default=_PER_TEXT.add_special_tokens)
    # False: raw logits, as the wire's `use_activation: false`.
    use_activation: bool = field(
        default=True, metadata=option("false: raw logits instead of probabilities")
    )
    # A LoRA adapter's name, as a request's `model` names one on the server.
    adapter: str | None = field(
        default=_PER_TEXT.adapter,
        metadata=option(
            "the LoRA adapter (a --lora-modules name) that classifies every text; with --url, "
            "the `model` asked for",
            shown="the base model",
        ),
    )

    def for_engine(self) -> ClassifyOptions:
        return ClassifyOptions(
            truncate_prompt_tokens=self.truncate_prompt_tokens,
            truncation_side=self.truncation_side,
            add_special_tokens=self.add_special_tokens,
            adapter=self.adapter,
        )


@dataclass(frozen=True)
class FeedOptions:
    """How the Classifier feeds the engine; its own, with no server counterpart."""

    # Texts per Engine.classify call: one tokenizer call each, and the unit results stream in.
    chunk_size: int = 64
    # Print progress while the built-in model is built (first use only).
    progress: bool = True

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {self.chunk_size}")


class ClassifierOptions(TypedDict, total=False):
    """The keywords of Classifier / AsyncClassifier, typed for callers; unset ones take the
    dataclasses' defaults. tests/offline checks that the keys are exactly ENGINE_KEYS,
    TextOptions' and FeedOptions' fields, so an option added there must be added here."""

    revision: str | None
    tokenizer: str | None
    tokenizer_revision: str | None
    download_dir: str | None
    device: str
    dtype: Dtype
    quantization: Quantization
    max_batch_tokens: int
    max_num_seqs: int
    max_model_len: int | None
    # Prompts handed to the engine and not yet answered: the streaming window.
    max_concurrent_requests: int
    max_inflight_batches: int | None
    workers: int | None
    parallel_from: int
    batch_scan: int
    padding_slack: float
    packed: bool
    tokenizer_workers: int
    num_threads: int
    trust_remote_code: bool
    hf_overrides: dict[str, Any] | None
    convert: Literal["none", "classify"]
    classifier_from_tokens: tuple[str, ...]
    chat_template: str | None
    enable_lora: bool
    lora_modules: tuple[str, ...]
    max_loras: int | None
    max_lora_rank: int
    truncate_prompt_tokens: int | None
    truncation_side: Literal["left", "right"] | None
    add_special_tokens: bool
    use_activation: bool
    adapter: str | None
    chunk_size: int
    progress: bool


# The engine's options an offline run takes; the rest concern a server (engine/options.py).
ENGINE_KEYS = frozenset(o.name for o in options(EngineConfig, offline=True))
_TEXT_KEYS = frozenset(f.name for f in fields(TextOptions))
_FEED_KEYS = frozenset(f.name for f in fields(FeedOptions))


def split_options(
    keywords: ClassifierOptions,
) -> tuple[dict[str, Any], TextOptions, FeedOptions]:
    """(EngineConfig keywords, TextOptions, FeedOptions) from the Classifier's keywords;
    TypeError for one that is none of them, ValueError for a value out of range."""
    given: dict[str, Any] = dict(keywords)
    unknown = set(given) - ENGINE_KEYS - _TEXT_KEYS - _FEED_KEYS
    if unknown:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
    engine = {k: v for k, v in given.items() if k in ENGINE_KEYS}
    text = TextOptions(**{k: v for k, v in given.items() if k in _TEXT_KEYS})
    feed = FeedOptions(**{k: v for k, v in given.items() if k in _FEED_KEYS})
    return engine, text, feed
