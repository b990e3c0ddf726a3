"""offline/classifier.py: the Classifier equals plain transformers and the server's rules, keeps
order, streams in bounded memory, reports bad texts in place; the async twin agrees."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine import InputTooLong, InvalidInput
from engine.activation import default_activation
from engine.errors import EmptyPrompt
from offline import AsyncClassifier, Classification, Classifier, Failed
from tests.support import max_abs_diff


def _tokens(model_dir: Path, texts: list[str]) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return [len(ids) for ids in tok(texts)["input_ids"]]


def _logits(model_dir: Path, texts: list[str], max_length: int | None = None) -> list[list[float]]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return [
            model(**tok(t, return_tensors="pt", truncation=max_length is not None,
                        max_length=max_length)).logits[0].tolist()
            for t in texts
        ]  # fmt: skip


def test_equals_transformers_in_order_past_the_window(
    bert_dir: Path, texts: list[str], reference: list[list[float]]
) -> None:
    # A window of 16 prompts and chunks of 5: 60 texts take many rounds through the engine.
    with Classifier(bert_dir, max_concurrent_requests=16, chunk_size=5, num_threads=1) as clf:
        assert clf.labels == ("neg", "neu", "pos")
        results = clf.classify(texts)
    assert [r.index for r in results] == list(range(len(texts)))
    assert max_abs_diff([r.probs for r in results], reference) <= 1e-5
    for r in results:
        assert r.num_classes == 3 and math.isclose(sum(r.probs), 1.0, abs_tol=1e-9)
        assert r.label == clf.labels[max(range(3), key=r.probs.__getitem__)]
    assert [r.prompt_tokens for r in results] == _tokens(bert_dir, texts)


def test_streams_lazily_and_reports_bad_texts_in_place(bert_dir: Path) -> None:
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield "" if i == 3 else ("great " * 300 if i == 5 else f"movie {i} was fine")

    with Classifier(bert_dir, max_concurrent_requests=8, chunk_size=4, num_threads=1) as clf:
        stream = clf.classify_iter(endless(), errors="return")
        first = [next(stream) for _ in range(10)]
        # Read so far, at most: the 10 taken and the rest of their chunk (3), a window (8)
        # in the engine, one taken for the next chunk, the read-ahead (a chunk, 4) and one
        # in the reader's hand. Not 10,000.
        assert pulled <= 10 + 3 + 8 + 1 + 4 + 1
        stream.close()
        assert [o.index for o in first] == list(range(10))
        assert isinstance(first[3], Failed) and isinstance(first[3].error, EmptyPrompt)
        assert first[3].error.index == 3 and first[3].message == "Input 3 is an empty string."
        assert isinstance(first[5], Failed) and isinstance(first[5].error, InputTooLong)
        assert first[5].error.index == 5 and first[5].error.limit == clf.max_model_len == 128
        assert all(isinstance(o, Classification) for i, o in enumerate(first) if i not in (3, 5))
        # The list form raises the first bad text's error, as the server answers 400.
        with pytest.raises(InputTooLong):
            clf.classify(["fine", "great " * 300])
        with pytest.raises(InvalidInput):
            clf.classify(["fine", ""])
        # The engine is still whole after all that.
        assert clf.classify("fine")[0].index == 0


def test_raw_logits_and_truncation_as_the_server_does(bert_dir: Path) -> None:
    texts = ["great " * 200, "the plot was dull"]
    with Classifier(
        bert_dir, use_activation=False, truncate_prompt_tokens=-1, num_threads=1
    ) as clf:
        results = clf.classify(texts)
    assert [r.prompt_tokens for r in results] == [128, 6]
    assert max_abs_diff([r.probs for r in results], _logits(bert_dir, texts, 128)) <= 1e-5


def test_activation_follows_problem_type(tmp_path: Path) -> None:
    from tests.builders import build_model

    model = build_model(tmp_path / "reg", "bert", num_labels=1, problem_type="regression")
    assert default_activation("regression", 1) == "none"
    with Classifier(model, num_threads=1) as clf:
        result = clf.classify(["a lovely film"])[0]
    assert result.num_classes == 1 and result.label == "LABEL_0"
    # Regression: the raw value, as the server answers.
    assert abs(result.probs[0] - _logits(model, ["a lovely film"])[0][0]) <= 1e-5


async def test_async_classifier_agrees(
    bert_dir: Path, texts: list[str], reference: list[list[float]]
) -> None:
    async def produce() -> AsyncIterator[str]:
        for text in texts:
            yield text

    async with AsyncClassifier(bert_dir, max_concurrent_requests=16, num_threads=1) as clf:
        results = await clf.classify(produce())
        items = [o async for o in clf.classify_iter(["fine", ""], errors="return")]
    assert [r.index for r in results] == list(range(len(texts)))
    assert max_abs_diff([r.probs for r in results], reference) <= 1e-5
    assert isinstance(items[0], Classification) and isinstance(items[1], Failed)


def test_default_means_the_built_in_model(monkeypatch: pytest.MonkeyPatch, bert_dir: Path) -> None:
    import default_model
    from offline.classifier import resolve_model

    monkeypatch.setattr(default_model, "ensure_default_model", lambda progress: bert_dir)
    assert resolve_model("default") == (str(bert_dir), default_model.DEFAULT_MODEL_NAME)
    assert resolve_model(None) == (str(bert_dir), default_model.DEFAULT_MODEL_NAME)
    assert resolve_model(bert_dir) == (str(bert_dir), str(bert_dir))
    with pytest.raises(TypeError, match="unexpected option"):
        Classifier(bert_dir, batch_size=3)  # type: ignore[call-arg]
