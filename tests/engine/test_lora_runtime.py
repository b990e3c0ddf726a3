"""LoRA adapters loaded and unloaded while the engine serves (engine/adapter_registry.py):
a loaded adapter equals PEFT one text at a time (fp32); loads while other requests run fail
none of them; an unload waits for the requests admitted for it and refuses new ones; the
refusals (taken name, --max-loras, rank, broken dir); the offline Classifier's per-call
adapter. One encoder base: the forwards are the ones tests/engine/test_lora.py proves."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine import ClassifyOptions, Engine, EngineConfig
from engine.adapters import AdapterSpec
from engine.errors import AdapterConflict, AdapterNotFound, InvalidInput, ModelLoadError
from engine.model.lora import HeadSwitch, LoraLinear
from tests.builders import build_model, sentences
from tests.lora_builders import base_logits, build_adapter, peft_logits
from tests.support import max_abs_diff, softmax

TOL = 1e-5


def dp(got: list[list[float]], want: list[list[float]]) -> float:
    assert [len(r) for r in got] == [len(r) for r in want]
    return max_abs_diff([softmax(r) for r in got], [softmax(r) for r in want])


class Fixture:
    def __init__(self, root: Path) -> None:
        from transformers import AutoTokenizer

        self.base = build_model(root / "base", "bert", num_labels=3, seed=1)
        self.adapters = {
            "five": build_adapter(self.base, root / "five", "bert", num_labels=5, seed=2,
                                  labels=["v", "w", "x", "y", "z"]),
            "two": build_adapter(self.base, root / "two", "bert", num_labels=2, seed=3),
            "wide": build_adapter(self.base, root / "wide", "bert", num_labels=3, seed=4,
                                  rank=8),
        }  # fmt: skip
        tokenizer: Any = AutoTokenizer.from_pretrained(self.base)
        self.texts = sentences(8, seed=5, max_words=25)
        prompts = [tokenizer(t)["input_ids"] for t in self.texts]
        self.expected: dict[str | None, list[list[float]]] = {None: base_logits(self.base, prompts)}
        for name, path in self.adapters.items():
            self.expected[name] = peft_logits(self.base, path, prompts)

    def config(self, **kwargs: Any) -> EngineConfig:
        options: dict[str, Any] = {
            "model": str(self.base), "device": "cpu", "num_threads": 2, "workers": 2,
            "enable_lora": True, "max_lora_rank": 4,
        }  # fmt: skip
        options.update(kwargs)
        return EngineConfig(**options)

    def spec(self, name: str, adapter: str | None = None) -> AdapterSpec:
        return AdapterSpec(name, str(self.adapters[adapter or name]))


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    return Fixture(tmp_path_factory.mktemp("lora-runtime"))


async def _classify(engine: Engine, fx: Fixture, name: str | None) -> list[list[float]]:
    return (await engine.classify(fx.texts, ClassifyOptions(adapter=name))).logits


def _holds(engine: Engine, index: int) -> bool:
    """Whether the model still holds weights of adapter `index`."""
    model = engine._workers[0].runner._model  # type: ignore[union-attr]
    return any(
        (isinstance(m, LoraLinear) and index in m.deltas)
        or (isinstance(m, HeadSwitch) and str(index) in m.heads)
        for m in model.modules()
    )


def test_load_classify_reload_unload(fx: Fixture) -> None:
    async def main() -> None:
        async with Engine(fx.config(max_loras=2)) as engine:
            assert engine.info.adapters == ()
            await engine.load_adapter(fx.spec("five"))
            assert [a.name for a in engine.info.adapters] == ["five"]
            assert engine.info.adapters[0].labels == ("v", "w", "x", "y", "z")
            assert dp(await _classify(engine, fx, "five"), fx.expected["five"]) <= TOL
            assert dp(await _classify(engine, fx, None), fx.expected[None]) <= TOL
            with pytest.raises(AdapterConflict, match="'five' has already been loaded"):
                await engine.load_adapter(fx.spec("five", "two"))
            # In place: the name moves to freshly loaded weights; the old ones go.
            first = engine.adapter_index("five")
            await engine.load_adapter(fx.spec("five"), inplace=True)
            assert engine.adapter_index("five") > first
            assert dp(await _classify(engine, fx, "five"), fx.expected["five"]) <= TOL
            assert not _holds(engine, first)
            # Not by one with other labels: a request routed before the swap reads the old
            # labels, and the logits it gets must fit them.
            kept = engine.adapter_index("five")
            with pytest.raises(AdapterConflict, match="other labels or activation"):
                await engine.load_adapter(fx.spec("five", "two"), inplace=True)
            assert engine.adapter_index("five") == kept
            assert not _holds(engine, kept + 1)
            assert dp(await _classify(engine, fx, "five"), fx.expected["five"]) <= TOL
            await engine.load_adapter(fx.spec("two"))
            with pytest.raises(AdapterConflict, match="as many as --max-loras allows"):
                await engine.load_adapter(fx.spec("other", "five"))
            index = engine.adapter_index("two")
            await engine.unload_adapter("two")
            assert not _holds(engine, index)
            assert [a.name for a in engine.info.adapters] == ["five"]
            with pytest.raises(InvalidInput, match="no LoRA adapter named 'two'"):
                await _classify(engine, fx, "two")
            with pytest.raises(AdapterNotFound, match="'two' cannot be found"):
                await engine.unload_adapter("two")
            # Loaded again: a fresh index, the same answers.
            await engine.load_adapter(fx.spec("two"))
            assert engine.adapter_index("two") > index
            assert dp(await _classify(engine, fx, "two"), fx.expected["two"]) <= TOL
            updates = engine.metrics.lora_updates
            assert updates.labels("load", "ok")._value.get() == 4
            assert updates.labels("load", "refused")._value.get() == 3
            assert updates.labels("unload", "refused")._value.get() == 1
            assert engine.metrics.lora_loaded._value.get() == 2

    asyncio.run(main())


def test_bad_adapters_are_refused_and_the_rest_serves(fx: Fixture, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fx.adapters["two"], broken)
    (broken / "adapter_model.safetensors").write_bytes(b"not weights")

    async def main() -> None:
        config = fx.config(lora_modules=(f"five={fx.adapters['five']}",))
        async with Engine(config) as engine:
            with pytest.raises(ModelLoadError, match="more than --max-lora-rank 4"):
                await engine.load_adapter(fx.spec("wide"))
            with pytest.raises(ModelLoadError, match="is not a directory"):
                await engine.load_adapter(AdapterSpec("x", str(tmp_path / "none")))
            with pytest.raises(ModelLoadError, match="weights cannot be read"):
                await engine.load_adapter(AdapterSpec("x", str(broken)))
            with pytest.raises(AdapterConflict, match="base model's"):
                await engine.load_adapter(AdapterSpec(config.names[0], str(broken)))
            assert [a.name for a in engine.info.adapters] == ["five"]
            # Nothing of the failed loads is left on the model (indices 2, 3, 4 were tried).
            assert not any(_holds(engine, i) for i in range(2, 6))
            assert dp(await _classify(engine, fx, "five"), fx.expected["five"]) <= TOL
        async with Engine(fx.config(enable_lora=False)) as plain:
            with pytest.raises(InvalidInput, match="start with --enable-lora"):
                await plain.load_adapter(fx.spec("two"))

    asyncio.run(main())


def test_load_while_requests_run(fx: Fixture) -> None:
    """Loads (and an unload) of other adapters while a loop of base and adapter requests
    runs: every request answers, exactly."""

    async def main() -> None:
        config = fx.config(lora_modules=(f"five={fx.adapters['five']}",))
        async with Engine(config) as engine:
            done = asyncio.Event()
            failures: list[BaseException] = []
            answered = 0

            async def loop(name: str | None) -> None:
                nonlocal answered
                while not done.is_set():
                    try:
                        got = await _classify(engine, fx, name)
                        assert dp(got, fx.expected[name]) <= TOL, name
                        answered += 1
                    except BaseException as exc:  # collected, asserted below
                        failures.append(exc)
                        return

            loops = [asyncio.create_task(loop(n)) for n in (None, "five", None, "five")]
            for _ in range(2):
                await engine.load_adapter(fx.spec("two"))
                assert dp(await _classify(engine, fx, "two"), fx.expected["two"]) <= TOL
                await engine.unload_adapter("two")
            done.set()
            await asyncio.wait_for(asyncio.gather(*loops), 120)
            assert not failures, failures
            assert answered >= 4

    asyncio.run(main())


def test_unload_waits_for_admitted_requests(fx: Fixture) -> None:
    """Requests queued for an adapter when it is unloaded are each answered (exactly, or
    refused as unknown when not yet admitted); none hangs; the weights go only after."""

    async def main() -> None:
        config = fx.config(lora_modules=(f"two={fx.adapters['two']}",), max_batch_tokens=256)
        async with Engine(config) as engine:
            index = engine.adapter_index("two")
            calls = [asyncio.create_task(_classify(engine, fx, "two")) for _ in range(12)]
            await asyncio.sleep(0)  # admitted: each classify() has pinned the adapter
            unload = asyncio.create_task(engine.unload_adapter("two"))
            late = asyncio.create_task(_classify(engine, fx, "two"))
            results = await asyncio.wait_for(
                asyncio.gather(*calls, late, return_exceptions=True), 120
            )
            await asyncio.wait_for(unload, 60)
            answered = [r for r in results if not isinstance(r, BaseException)]
            refused = [r for r in results if isinstance(r, BaseException)]
            assert len(answered) == 12
            for logits in answered:
                assert dp(logits, fx.expected["two"]) <= TOL
            assert len(refused) == 1 and isinstance(refused[0], InvalidInput), refused
            assert not _holds(engine, index)

    asyncio.run(main())


def test_offline_per_call_adapter(fx: Fixture) -> None:
    from offline import Classifier

    modules = tuple(f"{n}={p}" for n, p in fx.adapters.items() if n != "wide")
    with Classifier(str(fx.base), device="cpu", num_threads=1, enable_lora=True,
                    lora_modules=modules, adapter="five", progress=False) as clf:  # fmt: skip
        own = clf.classify(fx.texts)
        two = clf.classify(fx.texts, adapter="two")
        base = clf.classify(fx.texts, adapter=clf.name)
        with pytest.raises(InvalidInput, match="no LoRA adapter named 'nope'"):
            clf.classify(fx.texts, adapter="nope")
        after = list(clf.classify_iter(fx.texts, errors="return", adapter="two"))
    for results, name in ((own, "five"), (two, "two"), (base, None), (after, "two")):
        want = [softmax(r) for r in fx.expected[name]]
        assert max_abs_diff([r.probs for r in results], want) <= TOL, name  # type: ignore[union-attr]
    assert {r.label for r in own} <= set("vwxyz")
    assert {r.label for r in two} <= {"LABEL_0", "LABEL_1"}
    assert {r.num_classes for r in base} == {3}
