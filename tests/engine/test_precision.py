"""Beyond fp32 on CPU: `dtype="bfloat16"` and `quantization="int8"` through the real runner.

Neither is exact (that is why both are opt-in), so these check that each really takes
effect (results move off fp32), stays close to fp32, and that impossible combinations are
refused at load with one sentence.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine import ClassifyOptions, Engine, EngineConfig
from engine.errors import ModelLoadError
from tests.builders import sentences
from tests.support import softmax

T = 60.0
TEXTS = sentences(24, seed=11)


def _abs_diffs(got: list[list[float]], want: list[list[float]]) -> list[float]:
    return [
        abs(a - b)
        for g, w in zip(got, want, strict=True)
        for a, b in zip(softmax(g), softmax(w), strict=True)
    ]


async def _logits(model: Path, **config: Any) -> tuple[list[list[float]], Engine]:
    engine = Engine(EngineConfig(model=str(model), device="cpu", max_batch_tokens=256, **config))
    await asyncio.wait_for(engine.start(), T)
    try:
        result = await engine.classify(TEXTS, ClassifyOptions())
    finally:
        await asyncio.wait_for(engine.stop(), T)
    return [list(r) for r in result.logits], engine


@pytest.mark.parametrize("arch", ["bert", "llama"])
@pytest.mark.parametrize(
    ("config", "dtype", "quantization"),
    [({"dtype": "bfloat16"}, "bfloat16", "none"), ({"quantization": "int8"}, "float32", "int8")],
    ids=["bf16", "int8"],
)
async def test_lower_precision_takes_effect_and_stays_close(
    request: pytest.FixtureRequest,
    arch: str,
    config: dict[str, Any],
    dtype: str,
    quantization: str,
) -> None:
    model: Path = request.getfixturevalue(f"{arch}_dir")
    exact, _ = await _logits(model, dtype="float32")
    got, engine = await _logits(model, **config)
    assert engine.info.dtype == dtype
    assert engine.info.quantization == quantization
    diffs = _abs_diffs(got, exact)
    # It ran in lower precision (fp32 would match to 1e-6) ...
    assert max(diffs) > 1e-6
    # ... and stays close. These tiny random models have large, spiky activations (int8's
    # worst case), so the bound is loose next to the ~1e-3 bench/precision.py measures on
    # the real default model, but well under what a wrong row would give: each text against
    # its neighbour's fp32 result.
    mean = sum(diffs) / len(diffs)
    shifted = _abs_diffs(exact[1:], exact[:-1])
    assert mean < 0.06
    assert mean < sum(shifted) / len(shifted) / 3
    assert max(diffs) < 0.35


async def test_int8_needs_float32_weights(bert_dir: Path) -> None:
    engine = Engine(
        EngineConfig(model=str(bert_dir), device="cpu", dtype="bfloat16", quantization="int8")
    )
    try:
        with pytest.raises(ModelLoadError, match="needs float32"):
            await asyncio.wait_for(engine.start(), T)
    finally:
        await engine.stop()


def test_unknown_quantization_is_refused() -> None:
    with pytest.raises(ValueError, match="quantization must be none or int8"):
        EngineConfig(model="m", quantization="int4")  # type: ignore[arg-type]
