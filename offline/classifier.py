"""Offline classification: the engine without HTTP, for texts already in hand.

    with Classifier("path/to/model") as clf:      # or a Hub id; Classifier(): the built-in model
        for r in clf.classify(["great movie", "dull"]):
            print(r.index, r.label, r.probs)

    async with AsyncClassifier("path/to/model") as clf:   # inside a running event loop
        results = await clf.classify(texts)

The same Engine as the server, so the same batching and the same numbers: texts go to
`Engine.classify` in chunks, with at most `max_concurrent_requests` prompts unanswered at once
(the engine's admission limit, so nothing is ever refused), while its scheduler packs batches
from everything waiting. Results come back in input order; `classify_iter` streams them and
holds at most one window of texts, whatever the input's length. Probabilities follow the
server's rules (engine/activation.py): softmax, sigmoid or identity by `problem_type`, raw
logits with `use_activation=False`; what makes a text unusable (empty, over-long) is the
engine's rule, the server's too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, replace
from os import PathLike
from types import TracebackType
from typing import Any, Literal, Unpack, overload

from engine.activation import Activation, activate, argmax, default_activation
from engine.config import EngineConfig
from engine.engine import ClassifyOptions, Engine
from engine.errors import EngineUnavailable, InvalidPrompt
from engine.model.runner import ModelInfo
from offline.options import ClassifierOptions, split_options
from pipeline import Blame, ItemFailed, LoopThread, isolate, ordered_chunks

Errors = Literal["raise", "return"]


@dataclass(frozen=True, slots=True)
class Classification:
    """One text's result: the server's `data[i]` plus the tokens it ran."""

    # Position in the input (0-based), whatever chunk it travelled in.
    index: int
    label: str
    # Activated as the server does (by problem_type); raw logits with use_activation=False.
    probs: list[float]
    num_classes: int
    # Tokens the model ran, after truncation.
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class Failed:
    """A text the model cannot take as given (empty, or over-long without truncation)."""

    index: int
    # Its index is `index` too, the text's place in the whole input.
    error: InvalidPrompt

    @property
    def message(self) -> str:
        return self.error.message


Outcome = Classification | Failed


@dataclass(frozen=True, slots=True)
class _Target:
    """What one call classifies with: the base or an adapter, its labels and activation."""

    options: ClassifyOptions
    labels: tuple[str, ...]
    kind: Activation


def resolve_model(model: str | PathLike[str] | None, *, progress: bool = True) -> tuple[str, str]:
    """(directory or Hub id, name). None, "default" or the built-in model's name mean the
    built-in model, built into the cache on first use (minutes; `classifyd build-default`); a
    Hub id is downloaded when the engine starts (engine/hub.py)."""
    from default_model import DEFAULT_MODEL_NAME, ensure_default_model

    if model is None or str(model) in ("default", DEFAULT_MODEL_NAME):
        return str(ensure_default_model(progress=progress)), DEFAULT_MODEL_NAME
    return str(model), str(model)


def _blame(exc: Exception) -> Blame:
    # A prompt's own error names it; any other error is the whole call's.
    return exc.index if isinstance(exc, InvalidPrompt) else None


class AsyncClassifier:
    """The offline API for code already inside an event loop; `Classifier` is the blocking
    one. An async context manager: the engine (model, worker thread) lives inside it."""

    def __init__(
        self, model: str | PathLike[str] | None = None, **options: Unpack[ClassifierOptions]
    ) -> None:
        self._model = model
        self._engine_options, text, self._feed = split_options(options)
        self._text_options = text.for_engine()
        self._use_activation = text.use_activation
        self._engine: Engine | None = None
        self._kind: Activation = "none"
        # What was loaded, kept after close() (labels to read results by).
        self._info: ModelInfo | None = None
        self._name = ""
        self._max_model_len = 0

    async def __aenter__(self) -> AsyncClassifier:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Load the model (building the built-in one first if needed) and start the engine."""
        path, name = await asyncio.to_thread(
            resolve_model, self._model, progress=self._feed.progress
        )
        config = EngineConfig(model=path, served_model_names=(name,), **self._engine_options)
        engine = Engine(config)
        try:
            await engine.start()
        except BaseException:
            await engine.stop()
            raise
        self._engine = engine
        info = self._info = engine.info
        self._name = config.names[0]
        self._max_model_len = engine.max_model_len
        if self._text_options.adapter is not None:
            info = self._info = await self._adapter_info(engine, self._text_options.adapter)
        self._kind = (
            default_activation(info.problem_type, info.num_labels)
            if self._use_activation
            else "none"
        )

    async def _adapter_info(self, engine: Engine, name: str) -> ModelInfo:
        """The model as the adapter `name` answers: its own head's labels and problem type."""
        try:
            adapter = engine.adapters.get(name)
        except BaseException:
            await self.close()
            raise
        return replace(engine.info, labels=adapter.labels, problem_type=adapter.problem_type)

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.stop()

    # -- what was loaded ---------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The running Engine, for what this class does not wrap (token ids, pairs, chat)."""
        if self._engine is None:
            raise EngineUnavailable("The classifier is not started (use it as a context manager).")
        return self._engine

    @property
    def info(self) -> ModelInfo:
        """The loaded model's labels, problem type, dtype, device (also after close())."""
        if self._info is None:
            raise EngineUnavailable("The classifier has not started.")
        return self._info

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    @property
    def name(self) -> str:
        """The built-in model's name, or the model as given (a directory or a Hub id)."""
        return self._name

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def window(self) -> int:
        """Prompts handed to the engine at once: its admission limit."""
        return self.engine.config.max_concurrent_requests

    @property
    def chunk_size(self) -> int:
        # A chunk larger than the window could never be admitted.
        return min(self._feed.chunk_size, self.window)

    # -- classifying -------------------------------------------------------------------

    async def classify(
        self, texts: str | Iterable[str] | AsyncIterable[str], *, adapter: str | None = None
    ) -> list[Classification]:
        """Every text's result, in input order; raises the first text's error (InvalidInput,
        InputTooLong), as the server answers 400 for a request with one bad text.
        `adapter`: a LoRA adapter for this call (the base model's name: the base); None: the
        classifier's own `adapter` option."""
        return [r async for r in self.classify_iter(texts, adapter=adapter)]

    @overload
    def classify_iter(
        self,
        texts: str | Iterable[str] | AsyncIterable[str],
        *,
        errors: Literal["raise"] = ...,
        adapter: str | None = None,
    ) -> AsyncIterator[Classification]: ...

    @overload
    def classify_iter(
        self,
        texts: str | Iterable[str] | AsyncIterable[str],
        *,
        errors: Literal["return"],
        adapter: str | None = None,
    ) -> AsyncIterator[Outcome]: ...

    async def classify_iter(
        self,
        texts: str | Iterable[str] | AsyncIterable[str],
        *,
        errors: Errors = "raise",
        adapter: str | None = None,
    ) -> AsyncIterator[Any]:
        """Results in input order as they finish, reading `texts` only as fast as the window
        frees. errors="return": a text the model cannot take yields a `Failed` in its place."""
        async for outcomes in self.outcome_chunks(texts, adapter=adapter):
            for outcome in _checked(outcomes, errors):
                yield outcome

    def outcome_chunks(
        self, texts: str | Iterable[str] | AsyncIterable[str], *, adapter: str | None = None
    ) -> AsyncIterator[list[Outcome]]:
        """The outcomes chunk by chunk, in input order: at most `window` texts are between
        being read and being handed back, and the engine's batches draw on all of them.
        A plain iterable is read on a helper thread, so a slow file or a pipe never stalls
        the engine's event loop, and a pipe that pauses never holds back finished results."""
        # Resolved now: an unknown adapter fails the call before any text is read.
        target = self._target(adapter)

        async def run(chunk: list[str], start: int) -> list[Outcome]:
            return await self.run_chunk(chunk, start, target)

        return ordered_chunks(
            [texts] if isinstance(texts, str) else texts,
            run,
            chunk_size=self.chunk_size,
            window=self.window,
        )

    def _target(self, adapter: str | None) -> _Target:
        """The classifier's own target (None), the base (its name) or a loaded adapter."""
        if adapter is None:
            return _Target(self._text_options, self.info.labels, self._kind)
        engine = self.engine
        if adapter in engine.config.names:
            name, labels, problem = None, engine.info.labels, engine.info.problem_type
        else:
            info = engine.adapters.get(adapter)  # InvalidInput when it is not loaded
            name, labels, problem = adapter, info.labels, info.problem_type
        use = self._use_activation
        kind: Activation = default_activation(problem, len(labels)) if use else "none"
        return _Target(replace(self._text_options, adapter=name), labels, kind)

    async def run_chunk(
        self, texts: list[str], start: int, target: _Target | None = None
    ) -> list[Outcome]:
        """One chunk through the engine (≤ window texts); `start` is its first text's index.
        A text the engine refuses fails alone (pipeline.isolate finds which)."""
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {start + i} is {type(text).__name__}, not str")
        target = target or self._target(None)

        async def classify(chunk: list[str]) -> list[tuple[list[float], int]]:
            result = await self.engine.classify(chunk, target.options)
            return list(zip(result.logits, result.prompt_tokens, strict=True))

        outcomes = await isolate(texts, classify, _blame)
        labels = target.labels
        out: list[Outcome] = []
        for index, outcome in enumerate(outcomes, start):
            if isinstance(outcome, ItemFailed):
                assert isinstance(outcome.error, InvalidPrompt)  # the only kind _blame lays
                out.append(Failed(index, outcome.error.at(index)))
            else:
                row, tokens = outcome
                probs = activate(row, target.kind)
                out.append(Classification(index, labels[argmax(probs)], probs, len(probs), tokens))
        return out


class Classifier:
    """The blocking offline API: `LLM(model).classify(prompts)` for classifiers.

    Owns an event loop on a background thread, where an AsyncClassifier (and its Engine)
    runs; results come back to the caller's thread a chunk at a time. A context manager;
    close() stops the engine and the thread.
    """

    def __init__(
        self, model: str | PathLike[str] | None = None, **options: Unpack[ClassifierOptions]
    ) -> None:
        self._inner = AsyncClassifier(model, **options)
        self._loop = LoopThread("classifyd-offline")
        self._closed = False
        try:
            self._loop.run(self._inner.start())
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Classifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._inner.close())
        finally:
            self._loop.close()

    @property
    def engine(self) -> Engine:
        """The Engine; it runs on this classifier's loop thread (use its loop to call it)."""
        return self._inner.engine

    @property
    def info(self) -> ModelInfo:
        return self._inner.info

    @property
    def labels(self) -> tuple[str, ...]:
        return self._inner.labels

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def max_model_len(self) -> int:
        return self._inner.max_model_len

    def classify(
        self, texts: str | Iterable[str], *, adapter: str | None = None
    ) -> list[Classification]:
        """Every text's result, in input order; raises the first text's error. `adapter`: a
        LoRA adapter for this call (the base model's name: the base); None: the
        classifier's own `adapter` option."""
        return list(self.classify_iter(texts, adapter=adapter))

    @overload
    def classify_iter(
        self,
        texts: str | Iterable[str],
        *,
        errors: Literal["raise"] = ...,
        adapter: str | None = None,
    ) -> Iterator[Classification]: ...

    @overload
    def classify_iter(
        self, texts: str | Iterable[str], *, errors: Literal["return"], adapter: str | None = None
    ) -> Iterator[Outcome]: ...

    def classify_iter(
        self, texts: str | Iterable[str], *, errors: Errors = "raise", adapter: str | None = None
    ) -> Iterator[Any]:
        """Results in input order as they finish. `texts` is read on a helper thread, only as
        fast as the window frees, so a file of any size streams in bounded memory.
        errors="return": a text the model cannot take yields a `Failed` in its place."""
        if self._closed:
            raise EngineUnavailable("The classifier is closed.")
        chunks = self._inner.outcome_chunks(texts, adapter=adapter)
        for outcomes in self._loop.iterate(chunks):
            yield from _checked(outcomes, errors)


def _checked(outcomes: list[Outcome], errors: Errors) -> Iterator[Outcome]:
    for outcome in outcomes:
        if isinstance(outcome, Failed) and errors == "raise":
            raise outcome.error
        yield outcome
