"""The Engine with the real TransformersRunner on tiny bert and llama models (CPU, fp32).

Exactness: every logits row must match plain transformers run on that one text alone,
without padding, however the engine batched and padded it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from engine import ClassifyOptions, Engine, EngineConfig, InputTooLong, InvalidInput
from engine.errors import EmptyPrompt, InvalidPrompt
from tests.builders import WORDS, sentences

OPTS = ClassifyOptions()
TOL = 1e-5
T = 30.0


@pytest.fixture(params=["bert", "llama"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    path: Path = request.getfixturevalue(f"{request.param}_dir")
    return path


@asynccontextmanager
async def serving(model: Path, **config: Any) -> AsyncIterator[Engine]:
    config.setdefault("max_batch_tokens", 256)
    engine = Engine(EngineConfig(model=str(model), device="cpu", dtype="float32", **config))
    await asyncio.wait_for(engine.start(), T)
    try:
        yield engine
    finally:
        await asyncio.wait_for(engine.stop(), T)


@functools.cache
def reference(model: Path, side: str = "right") -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model, truncation_side=side)
    net = AutoModelForSequenceClassification.from_pretrained(model, dtype="float32").eval()
    return tokenizer, net


def reference_logits(model: Path, text: str, side: str = "right", **kwargs: Any) -> list[float]:
    """Plain transformers, one text, no padding."""
    import torch

    tokenizer, net = reference(model, side)
    inputs = tokenizer(text, return_tensors="pt", return_token_type_ids=False, **kwargs)
    with torch.inference_mode():
        row: list[float] = net(**inputs).logits[0].float().tolist()
    return row


def max_diff(got: Sequence[Sequence[float]], want: Sequence[Sequence[float]]) -> float:
    pairs = list(zip(got, want, strict=True))
    return max(abs(a - b) for g, w in pairs for a, b in zip(g, w, strict=True))


def batch_sizes(engine: Engine) -> tuple[float, float]:
    """(forwards, prompts) seen by the batch-size histogram."""
    registry = engine.metrics.registry
    count = registry.get_sample_value("classifyd_batch_size_count")
    total = registry.get_sample_value("classifyd_batch_size_sum")
    assert count is not None and total is not None
    return count, total


def keep(tokens: int, side: Any) -> ClassifyOptions:
    return ClassifyOptions(truncate_prompt_tokens=tokens, truncation_side=side)


def long_text(words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(words))


TEXTS = sentences(40)


@functools.cache
def reference_rows(model: Path) -> list[list[float]]:
    return [reference_logits(model, t) for t in TEXTS]


async def test_texts_have_very_different_lengths(bert_dir: Path, llama_dir: Path) -> None:
    for model in (bert_dir, llama_dir):
        tokenizer, _ = reference(model)
        lengths = [len(tokenizer(t).input_ids) for t in TEXTS]
        assert min(lengths) < 10
        assert max(lengths) > 50
        assert max(lengths) <= 256  # under max_model_len, so nothing is truncated


async def test_one_call_matches_transformers(model_dir: Path) -> None:
    want = reference_rows(model_dir)
    async with serving(model_dir) as engine:
        result = await asyncio.wait_for(engine.classify(TEXTS, OPTS), T)
        forwards, prompts = batch_sizes(engine)
    assert max_diff(result.logits, want) <= TOL
    # The budget split the request, and at least one forward padded several prompts.
    assert prompts == len(TEXTS)
    assert 1 < forwards < prompts


async def test_concurrent_single_calls_match_transformers(model_dir: Path) -> None:
    want = reference_rows(model_dir)
    async with serving(model_dir) as engine:
        results = await asyncio.wait_for(
            asyncio.gather(*(engine.classify([t], OPTS) for t in TEXTS)), T
        )
        forwards, prompts = batch_sizes(engine)
    assert max_diff([r.logits[0] for r in results], want) <= TOL
    assert prompts == len(TEXTS)
    assert forwards < prompts  # requests that queued together shared a forward


async def test_mixed_batch_sizes_concurrently_match_transformers(model_dir: Path) -> None:
    sizes = [1, 5, 2, 10, 3, 7, 1, 11]
    assert sum(sizes) == len(TEXTS)
    chunks, start = [], 0
    for size in sizes:
        chunks.append(TEXTS[start : start + size])
        start += size
    want = reference_rows(model_dir)
    async with serving(model_dir) as engine:
        results = await asyncio.wait_for(
            asyncio.gather(*(engine.classify(chunk, OPTS) for chunk in chunks)), T
        )
    got = [row for r in results for row in r.logits]
    assert [len(r.logits) for r in results] == sizes
    assert max_diff(got, want) <= TOL


async def test_token_id_prompts_match_text(model_dir: Path) -> None:
    tokenizer, _ = reference(model_dir)
    texts = TEXTS[:6]
    async with serving(model_dir) as engine:
        by_text = await asyncio.wait_for(engine.classify(texts, OPTS), T)
        ids = [tokenizer(t).input_ids for t in texts]
        by_ids = await asyncio.wait_for(engine.classify(ids, OPTS), T)
    assert by_ids.prompt_tokens == by_text.prompt_tokens == [len(row) for row in ids]
    assert max_diff(by_ids.logits, by_text.logits) <= TOL
    assert max_diff(by_ids.logits, [reference_logits(model_dir, t) for t in texts]) <= TOL


async def test_input_too_long(bert_dir: Path) -> None:
    text = long_text(200)
    tokens = len(reference(bert_dir)[0](text).input_ids)
    async with serving(bert_dir) as engine:
        limit = engine.max_model_len
        assert limit == 128
        assert tokens > limit
        with pytest.raises(InputTooLong) as raised:
            await asyncio.wait_for(engine.classify(["short one", text], OPTS), T)
        assert engine.metrics.registry.get_sample_value("classifyd_admitted_sequences") == 0
    error = raised.value
    assert error.message.startswith("Input 1 has ")
    assert str(tokens) in error.message
    assert str(limit) in error.message
    assert (error.index, error.length, error.limit) == (1, tokens, limit)


async def test_token_ids_too_long(bert_dir: Path) -> None:
    async with serving(bert_dir) as engine:
        with pytest.raises(InputTooLong) as raised:
            await asyncio.wait_for(engine.classify([[5] * 129], OPTS), T)
    assert raised.value.index == 0
    assert "129" in raised.value.message and "128" in raised.value.message


@pytest.mark.parametrize("side", ["right", "left"])
async def test_truncate_prompt_tokens_matches_transformers(model_dir: Path, side: str) -> None:
    text = long_text(300)
    tokens = 10
    want = reference_logits(model_dir, text, side, truncation=True, max_length=tokens)
    async with serving(model_dir) as engine:
        result = await asyncio.wait_for(engine.classify([text], keep(tokens, side)), T)
    assert result.prompt_tokens == [tokens]
    assert max_diff(result.logits, [want]) <= TOL


async def test_truncation_sides_differ(bert_dir: Path) -> None:
    text = long_text(300)
    async with serving(bert_dir) as engine:
        right = await engine.classify([text], keep(10, "right"))
        left = await engine.classify([text], keep(10, "left"))
    assert max_diff(right.logits, left.logits) > TOL


async def test_truncate_token_id_prompts(bert_dir: Path) -> None:
    ids = list(range(5, 25))
    async with serving(bert_dir) as engine:
        right = await engine.classify([ids], keep(8, "right"))
        left = await engine.classify([ids], keep(8, "left"))
        want_right = await engine.classify([ids[:8]], OPTS)
        want_left = await engine.classify([ids[-8:]], OPTS)
    assert right.prompt_tokens == left.prompt_tokens == [8]
    assert right.logits == want_right.logits
    assert left.logits == want_left.logits


async def test_truncate_minus_one_means_max_length(bert_dir: Path) -> None:
    text = long_text(300)
    async with serving(bert_dir) as engine:
        limit = engine.max_model_len
        result = await asyncio.wait_for(
            engine.classify([text, "great movie"], ClassifyOptions(truncate_prompt_tokens=-1)), T
        )
    want = reference_logits(bert_dir, text, truncation=True, max_length=limit)
    assert result.prompt_tokens[0] == limit == 128
    assert result.prompt_tokens[1] == 4  # [CLS] great movie [SEP]: untouched
    assert max_diff(result.logits[:1], [want]) <= TOL


@pytest.mark.parametrize("tokens", [129, 0, -2])
async def test_bad_truncate_prompt_tokens(bert_dir: Path, tokens: int) -> None:
    async with serving(bert_dir) as engine:
        with pytest.raises(InvalidInput) as raised:
            await asyncio.wait_for(
                engine.classify(["a movie"], ClassifyOptions(truncate_prompt_tokens=tokens)), T
            )
    assert raised.value.param == "truncate_prompt_tokens"
    assert not isinstance(raised.value, InputTooLong)


async def test_token_ids_outside_the_vocabulary(bert_dir: Path) -> None:
    async with serving(bert_dir) as engine:
        vocab = engine.info.vocab_size
        with pytest.raises(InvalidPrompt) as too_big:
            await asyncio.wait_for(engine.classify([[2, 3], [2, vocab, 3]], OPTS), T)
        with pytest.raises(InvalidPrompt) as negative:
            await asyncio.wait_for(engine.classify([[2, -1, 3]], OPTS), T)
        # The largest valid id is fine.
        ok = await asyncio.wait_for(engine.classify([[2, vocab - 1, 3]], OPTS), T)
        assert engine.metrics.registry.get_sample_value("classifyd_admitted_sequences") == 0
    assert too_big.value.index == 1
    assert str(vocab) in too_big.value.message
    assert negative.value.index == 0
    assert len(ok.logits) == 1


@pytest.mark.parametrize(
    ("prompts", "index", "part", "token_ids"),
    [
        (["a film", ""], 1, None, False),
        ([[2, 3], []], 1, None, True),
        ([("a", "b"), ("c", "")], 1, 1, False),
        ([("", "b")], 0, 0, False),
    ],
)
async def test_an_empty_prompt_is_refused_by_index_before_admission(
    bert_dir: Path, prompts: list[object], index: int, part: int | None, token_ids: bool
) -> None:
    async with serving(bert_dir) as engine:
        with pytest.raises(EmptyPrompt) as raised:
            await asyncio.wait_for(engine.classify(prompts, OPTS), T)  # type: ignore[arg-type]
        assert engine.metrics.registry.get_sample_value("classifyd_admitted_sequences") == 0
    error = raised.value
    assert (error.index, error.part, error.token_ids) == (index, part, token_ids)
    assert error.message.startswith(f"Input {index} ")


def test_an_invalid_prompt_renumbered_keeps_its_kind_and_figures() -> None:
    error = InputTooLong(2, 300, 128)
    moved = error.at(40)
    assert isinstance(moved, InputTooLong)
    assert (moved.index, moved.length, moved.limit) == (40, 300, 128)
    assert moved.message == error.message.replace("Input 2 ", "Input 40 ")
    assert str(moved) == moved.message and error.index == 2


async def test_metrics_text(bert_dir: Path) -> None:
    async with serving(bert_dir) as engine:
        await asyncio.wait_for(engine.classify(TEXTS[:4], OPTS), T)
        text = generate_latest(engine.metrics.registry).decode()
    assert "classifyd_batch_size" in text
    assert "vllm:num_requests_waiting" in text
    assert "classifyd_admitted_sequences 0.0" in text
