"""Decoders shipped without a pad token, through the runner itself: exact in padded batches,
whatever the prompts end with, and two workers sharing the model run their forwards at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import EngineConfig
from engine.model.runner import TransformersRunner
from tests.builders import build_model, missing_archs, sentences
from tests.models.conftest import spread, torch_threads
from tests.support import max_abs_diff

TOL = 1e-5
# Decoders whose configs have no pad token (tests/builders.py): Llama's family and GPT-2's.
ARCHS = [a for a in ("llama", "gpt2") if a not in missing_archs()]
# How long a forward waits for the other worker's to begin: far more than starting one takes.
OVERLAP_S = 20.0


@pytest.fixture(scope="module", params=ARCHS)
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch: str = request.param
    return build_model(tmp_path_factory.mktemp(arch), arch, labels=["a", "b", "c"], seed=3)


@pytest.fixture(scope="module")
def prompts(model_dir: Path) -> list[list[int]]:
    """Token ids of very different lengths, some ending in the end token, some holding it
    inside, so that no pad id could be told from a prompt's own last token."""
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
    eos = tokenizer.eos_token_id
    rows = [tokenizer(t)["input_ids"] for t in sentences(12, seed=4, max_words=30)]
    rows[1] = [*rows[1], eos]
    rows[4] = [*rows[4], eos]
    rows[6] = [*rows[6][:2], eos, *rows[6][2:]]
    rows[9] = [eos]
    return rows


@pytest.fixture(scope="module")
def reference(model_dir: Path, prompts: list[list[int]]) -> list[list[float]]:
    """Plain transformers, one prompt at a time, no padding."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model: Any = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    assert model.config.pad_token_id is None
    with torch.inference_mode(), torch_threads(1):
        return [model(input_ids=torch.tensor([row])).logits[0].tolist() for row in prompts]


@pytest.fixture(scope="module")
def runner(model_dir: Path) -> Iterator[TransformersRunner]:
    config = EngineConfig(model=str(model_dir), device="cpu", dtype="float32", num_threads=1)
    runner = TransformersRunner(config)
    # (load() sets torch's thread count for the whole process; put it back after.)
    with torch_threads(1):
        runner.load()
        yield runner
    runner.close()


def test_padded_batches_match_each_prompt_alone(
    runner: TransformersRunner, prompts: list[list[int]], reference: list[list[float]]
) -> None:
    assert spread(reference) > 0.05, "outputs hardly vary: the comparison would prove nothing"
    whole = runner.finish(runner.launch(prompts, None))
    assert max_abs_diff(whole, reference) <= TOL
    for size in (1, 2, 5):
        parts = [prompts[i : i + size] for i in range(0, len(prompts), size)]
        rows = [row for part in parts for row in runner.finish(runner.launch(part, None))]
        assert max_abs_diff(rows, reference) <= TOL, size


def test_two_workers_run_their_forwards_at_once(
    model_dir: Path,
    runner: TransformersRunner,
    prompts: list[list[int]],
    reference: list[list[float]],
) -> None:
    """Each worker's forward waits, inside the model, until the other's has begun too: if
    one worker's batch held the other's back, the barrier would break and both fail."""
    import torch
    from transformers import AutoConfig, AutoModel

    base_class = type(AutoModel.from_config(AutoConfig.from_pretrained(model_dir)))
    names = ("worker-a", "worker-b")
    both_inside = threading.Barrier(len(names), timeout=OVERLAP_S)

    def meet(module: torch.nn.Module, args: Any) -> None:
        if isinstance(module, base_class) and threading.current_thread().name in names:
            both_inside.wait()

    halves = {names[0]: prompts[0::2], names[1]: prompts[1::2]}
    results: dict[str, list[list[float]] | BaseException] = {}

    def work() -> None:
        name = threading.current_thread().name
        try:
            runner.set_threads(1)
            results[name] = runner.finish(runner.launch(halves[name], None))
        except BaseException as exc:
            results[name] = exc

    hook = torch.nn.modules.module.register_module_forward_pre_hook(meet)
    try:
        threads = [threading.Thread(target=work, name=name) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(2 * OVERLAP_S + 30)
    finally:
        hook.remove()
    for name in names:
        result = results[name]
        assert not isinstance(result, BaseException), f"{name}: {result!r}"
    assert not both_inside.broken
    assert max_abs_diff(results[names[0]], reference[0::2]) <= TOL
    assert max_abs_diff(results[names[1]], reference[1::2]) <= TOL


def test_a_head_not_read_by_position_runs_one_prompt_at_a_time(
    model_dir: Path, prompts: list[list[int]], reference: list[list[float]]
) -> None:
    """A decoder whose head is not a plain Linear named `score` gets the exact fallback:
    the model's own forward, each prompt alone."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from engine.model.last_token import (
        LastTokenForward,
        OneRowAtATime,
        batches_without_pad_token,
        last_token_forward,
    )

    model: Any = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    assert not batches_without_pad_token(model)
    with torch_threads(1):
        assert isinstance(last_token_forward(model), LastTokenForward)
        model.score = torch.nn.Sequential(model.score)
        forward = last_token_forward(model)
        assert isinstance(forward, OneRowAtATime)
        width = max(map(len, prompts))
        ids = torch.tensor([[*row, *[0] * (width - len(row))] for row in prompts])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in prompts])
        with torch.inference_mode():
            rows = forward({"input_ids": ids, "attention_mask": mask}).tolist()
    assert max_abs_diff(rows, reference) <= TOL
