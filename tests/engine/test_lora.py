"""LoRA adapters on a shared base: each alone and in mixed batches equals PEFT run one text
at a time in transformers (fp32), for an encoder and a decoder base; bad adapters refused."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine import ClassifyOptions, Engine, EngineConfig
from engine.adapters import parse_lora_module
from engine.errors import InvalidInput, ModelLoadError
from engine.model.lora import LoraLinear
from engine.model.runner import TransformersRunner
from tests.builders import build_model, sentences
from tests.lora_builders import base_logits, build_adapter, peft_logits
from tests.support import max_abs_diff, softmax

TOL = 1e-5
# An encoder; a decoder with a pad token; one without (its head applied by position).
ARCHS = ["bert", "qwen2", "llama"]


def dp(got: list[list[float]], want: list[list[float]]) -> float:
    """Largest probability difference (softmax, the default activation of these heads)."""
    assert [len(r) for r in got] == [len(r) for r in want]
    return max_abs_diff([softmax(r) for r in got], [softmax(r) for r in want])


class Served:
    """A base, three adapters (5, 2 and 3 labels) and PEFT's answers for each."""

    def __init__(self, root: Path, arch: str) -> None:
        from transformers import AutoTokenizer

        self.arch = arch
        self.base = build_model(root / "base", arch, num_labels=3, seed=1)
        self.adapters = {
            "five": build_adapter(self.base, root / "five", arch, num_labels=5, seed=2,
                                  labels=["v", "w", "x", "y", "z"]),
            "two": build_adapter(self.base, root / "two", arch, num_labels=2, seed=3),
            "same": build_adapter(self.base, root / "same", arch, num_labels=3, seed=4,
                                  rank=8, use_rslora=True),
        }  # fmt: skip
        tokenizer: Any = AutoTokenizer.from_pretrained(self.base)
        self.texts = sentences(10, seed=5, max_words=25)
        self.prompts = [tokenizer(t)["input_ids"] for t in self.texts]
        self.expected: dict[str | None, list[list[float]]] = {
            None: base_logits(self.base, self.prompts)
        }
        for name, path in self.adapters.items():
            self.expected[name] = peft_logits(self.base, path, self.prompts)

    def config(self, **kwargs: Any) -> EngineConfig:
        modules = tuple(f"{name}={path}" for name, path in self.adapters.items())
        options: dict[str, Any] = {
            "model": str(self.base), "device": "cpu", "num_threads": 1, "enable_lora": True,
            "lora_modules": modules,
        }  # fmt: skip
        options.update(kwargs)
        return EngineConfig(**options)


@pytest.fixture(scope="module", params=ARCHS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Served:
    return Served(tmp_path_factory.mktemp(f"lora-{request.param}"), request.param)


@pytest.fixture(scope="module")
def runner(served: Served) -> TransformersRunner:
    runner = TransformersRunner(served.config())
    runner.load()
    return runner


ORDER = [None, "five", "two", "same"]


def test_adapters_are_described(runner: TransformersRunner, served: Served) -> None:
    info = runner.load()
    assert not info.packed  # adapters run the padded forward
    by_name = {a.name: a for a in info.adapters}
    assert list(by_name) == ["five", "two", "same"]
    assert by_name["five"].labels == ("v", "w", "x", "y", "z")
    assert by_name["two"].labels == ("LABEL_0", "LABEL_1")
    assert by_name["same"].num_labels == 3 and by_name["same"].rank == 8


@pytest.mark.parametrize("index", [1, 2, 3])
def test_each_adapter_alone_equals_peft(
    runner: TransformersRunner, served: Served, index: int
) -> None:
    rows = runner.finish(runner.launch(served.prompts, None, [index] * len(served.prompts)))
    expected = served.expected[ORDER[index]]
    assert dp(rows, expected) <= TOL
    # The adapter really changes the answers (else the test proves nothing).
    if len(expected[0]) == 3:
        assert dp(expected, served.expected[None]) > 1e-2


def test_mixed_batch_equals_peft_row_by_row(runner: TransformersRunner, served: Served) -> None:
    adapters = [i % 4 for i in range(len(served.prompts))]
    rows = runner.finish(runner.launch(served.prompts, None, adapters))
    for i, (row, index) in enumerate(zip(rows, adapters, strict=True)):
        expected = served.expected[ORDER[index]][i]
        assert len(row) == len(expected)
        assert dp([row], [expected]) <= TOL, (i, index)
    # The base alone in the same runner is untouched by the adapters.
    plain = runner.finish(runner.launch(served.prompts, None))
    assert dp(plain, served.expected[None]) <= TOL


def test_engine_serves_adapters_side_by_side(served: Served) -> None:
    async def main() -> dict[str | None, list[list[float]]]:
        async with Engine(served.config(workers=2, num_threads=2)) as engine:
            calls = [
                engine.classify(served.texts, ClassifyOptions(adapter=name)) for name in ORDER * 2
            ]
            results = await asyncio.gather(*calls)
            with pytest.raises(InvalidInput, match="no LoRA adapter named 'nope'"):
                await engine.classify(["x"], ClassifyOptions(adapter="nope"))
            sample = engine.metrics.lora_requests.labels("five")._value.get()
            assert sample == 2
        return {name: r.logits for name, r in zip(ORDER * 2, results, strict=True)}

    answers = asyncio.run(main())
    for name in ORDER:
        assert dp(answers[name], served.expected[name]) <= TOL, name


def test_bfloat16_applies_to_the_adapters_too(served: Served) -> None:
    """--dtype bfloat16 with adapters: not exact (opt-in), but each adapter's own answers,
    close to PEFT's fp32 ones, in a mixed batch."""
    import torch

    runner = TransformersRunner(served.config(dtype="bfloat16"))
    runner.load()
    model = runner._model  # type: ignore[attr-defined]
    deltas = [d for m in model.modules() if isinstance(m, LoraLinear) for d in m.deltas.values()]
    assert deltas and all(a.dtype == b.dtype == torch.bfloat16 for a, b, _ in deltas)
    adapters = [i % 4 for i in range(len(served.prompts))]
    rows = runner.finish(runner.launch(served.prompts, None, adapters))
    own, base = [], []
    for i, (row, index) in enumerate(zip(rows, adapters, strict=True)):
        expected = served.expected[ORDER[index]][i]
        assert len(row) == len(expected)
        # Tiny random models magnify bf16 rounding; the bound only says "the same answer".
        assert dp([row], [expected]) <= 0.1, (i, index)
        if ORDER[index] == "same":  # as many labels as the base: which one does it answer?
            own.append(dp([row], [expected]))
            base.append(dp([row], [served.expected[None][i]]))
    assert max(own) < max(base)


# -- refusals ---------------------------------------------------------------------------


def _load(config: EngineConfig) -> None:
    TransformersRunner(config).load()


def test_rank_over_the_limit_is_refused(served: Served) -> None:
    with pytest.raises(ModelLoadError, match="rank 8, more than --max-lora-rank 4"):
        _load(served.config(max_lora_rank=4))


def test_missing_and_broken_dirs_are_refused(served: Served, tmp_path: Path) -> None:
    base = str(served.base)
    with pytest.raises(ModelLoadError, match="is not a directory"):
        _load(served.config(lora_modules=(f"x={tmp_path / 'none'}",)))
    broken = tmp_path / "broken"
    shutil.copytree(served.adapters["two"], broken)
    (broken / "adapter_model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelLoadError, match="weights cannot be read"):
        _load(EngineConfig(model=base, device="cpu", enable_lora=True,
                           lora_modules=(f"x={broken}",)))  # fmt: skip
    config = json.loads((broken / "adapter_config.json").read_text())
    (broken / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ModelLoadError, match="uses DoRA"):
        _load(EngineConfig(model=base, device="cpu", enable_lora=True,
                           lora_modules=(f"x={broken}",)))  # fmt: skip


def test_adapter_of_another_base_is_refused(served: Served, tmp_path: Path) -> None:
    other = "qwen2" if served.arch == "bert" else "bert"
    base = build_model(tmp_path / "other", other, num_labels=3, seed=1)
    with pytest.raises(ModelLoadError, match="does not fit the base model"):
        _load(EngineConfig(model=str(base), device="cpu", enable_lora=True,
                           lora_modules=(f"x={served.adapters['two']}",)))  # fmt: skip


def test_flags_are_checked_when_the_config_is_made(served: Served) -> None:
    with pytest.raises(ValueError, match="needs --enable-lora"):
        served.config(enable_lora=False)
    with pytest.raises(ValueError, match="int8 does not apply to LoRA"):
        served.config(quantization="int8")
    with pytest.raises(ValueError, match="3 LoRA adapters are given but --max-loras is 2"):
        served.config(max_loras=2)
    with pytest.raises(ValueError, match="given twice"):
        served.config(lora_modules=("a=x", "a=y"))
    with pytest.raises(ValueError, match="not a model this server serves"):
        served.config(lora_modules=('{"name": "a", "path": "x", "base_model_name": "b"}',))


def test_lora_modules_spellings() -> None:
    assert parse_lora_module("a=/p").path == "/p"
    spec = parse_lora_module('{"name": "a", "path": "/p", "base_model_name": "m"}')
    assert (spec.name, spec.path, spec.base_model_name) == ("a", "/p", "m")
    for bad in ("a", "=p", "{nope", '{"name": "a"}', '{"name": "a", "path": "p", "x": 1}'):
        with pytest.raises(ValueError, match="--lora-modules"):
            parse_lora_module(bad)


def test_row_at_a_time_forward_routes_each_row(served: Served) -> None:
    """A decoder whose head cannot be applied by position runs each row alone
    (engine/model/last_token.py OneRowAtATime): each row then runs with its own adapter, on
    any base."""
    from engine.model.last_token import OneRowAtATime

    runner = TransformersRunner(served.config())
    runner.load()
    runner._forward = OneRowAtATime(runner._model)
    adapters = [(i + 1) % 4 for i in range(len(served.prompts))]
    rows = runner.finish(runner.launch(served.prompts, None, adapters))
    for i, (row, index) in enumerate(zip(rows, adapters, strict=True)):
        assert dp([row], [served.expected[ORDER[index]][i]]) <= TOL, (i, index)


def test_offline_classifier_with_an_adapter(served: Served) -> None:
    """The offline Classifier takes the same flags, and `adapter` picks the adapter that
    classifies every text, with its own labels."""
    from offline import Classifier

    modules = tuple(f"{name}={path}" for name, path in served.adapters.items())
    common: dict[str, Any] = {"device": "cpu", "num_threads": 1, "enable_lora": True,
                              "lora_modules": modules, "progress": False}  # fmt: skip
    with Classifier(str(served.base), adapter="five", **common) as classifier:
        assert classifier.labels == ("v", "w", "x", "y", "z")
        results = classifier.classify(served.texts)
    want = [softmax(r) for r in served.expected["five"]]
    assert max_abs_diff([r.probs for r in results], want) <= TOL
    assert {r.label for r in results} <= set("vwxyz")
    with pytest.raises(InvalidInput, match="no LoRA adapter named 'nope'"):
        Classifier(str(served.base), adapter="nope", **common).__enter__()
