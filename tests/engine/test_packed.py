"""The packed forward (engine/model/packed.py) against the model's own padded forward.

Each supported family, built tiny and loaded from disk, runs the same rows both ways: rows
of very different lengths (so attention splits into several groups and pads inside them),
equal lengths (no padding at all), one row, token type ids (sentence pairs), and for RoBERTa
a pad id inside a prompt (its position count must skip it); TorchScript-compiled and eager
alike. fp32 probabilities must agree to 1e-5, the project's standard (logits of ~10 differ by
float rounding, ~1e-6 relative).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.model.packed import PackedEncoder, attention_groups
from tests.builders import build_model, missing_archs

PACKED = ("bert", "distilbert", "roberta", "xlm-roberta", "electra")
NOT_PACKED = ("deberta-v2", "modernbert", "qwen2", "gpt2")
TOL = 1e-5


def _diff(got: torch.Tensor, want: torch.Tensor) -> float:
    """Max abs difference of the softmax probabilities."""
    return float((got.softmax(-1) - want.softmax(-1)).abs().max())


def _load(tmp_path: Path, arch: str) -> Any:
    from transformers import AutoModelForSequenceClassification

    if arch in missing_archs():
        pytest.fail(missing_archs()[arch])
    path = build_model(tmp_path / arch, arch, seed=3)
    return AutoModelForSequenceClassification.from_pretrained(path).eval()


def _padded(model: Any, rows: list[list[int]], types: list[list[int]] | None) -> torch.Tensor:
    width = max(len(r) for r in rows)
    pad = model.config.pad_token_id or 0
    inputs: dict[str, Any] = {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
    }
    if types is not None:
        inputs["token_type_ids"] = torch.tensor([t + [0] * (width - len(t)) for t in types])
    with torch.inference_mode():
        logits: torch.Tensor = model(**inputs).logits
    return logits


def _random_rows(model: Any, lengths: list[int], seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    vocab = model.config.vocab_size
    # Ids from 3 up, so no row holds the pad id unless a test puts it there.
    return [[rng.randrange(3, vocab) for _ in range(n)] for n in lengths]


@pytest.mark.parametrize("script", [True, False], ids=["scripted", "eager"])
@pytest.mark.parametrize("arch", PACKED)
def test_matches_the_padded_forward(tmp_path: Path, arch: str, script: bool) -> None:
    model = _load(tmp_path, arch)
    packed = PackedEncoder.of(model, script=script)
    assert packed is not None
    # Every supported family compiles: the eager fallback is for variants, not these.
    assert packed.scripted == script
    cases = {
        "mixed lengths": [5, 60, 7, 33, 33, 1, 90, 12, 59, 2],
        "equal lengths": [17, 17, 17],
        "one row": [40],
    }
    for seed, (name, lengths) in enumerate(cases.items()):
        rows = _random_rows(model, lengths, seed)
        with torch.inference_mode():
            got = packed(rows, None)
        want = _padded(model, rows, None)
        assert got.shape == want.shape, name
        assert _diff(got, want) <= TOL, name
        # And each row alone, unpadded, as a client sending one text would get it.
        for i, row in enumerate(rows):
            assert _diff(got[i], _padded(model, [row], None)[0]) <= TOL, name


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_the_last_layer_runs_on_first_tokens_only(tmp_path: Path, arch: str) -> None:
    model = _load(tmp_path, arch)
    packed = PackedEncoder.of(model, script=False)  # eager: forward hooks see its calls
    assert packed is not None
    seen: list[tuple[str, int]] = []
    ffn_ins = [
        m for name, m in model.named_modules() if name.endswith(("intermediate.dense", "ffn.lin1"))
    ]
    for i, module in enumerate(ffn_ins):
        module.register_forward_hook(
            lambda _m, args, _out, i=i: seen.append((str(i), args[0].shape[0]))
        )
    lengths = [14, 3, 27, 9]
    rows = _random_rows(model, lengths, seed=2)
    with torch.inference_mode():
        got = packed(rows, None)
    calls = list(seen)  # before the padded reference adds its own
    assert _diff(got, _padded(model, rows, None)) <= TOL
    # Every layer but the last runs its feed-forward on every token; the last on one per row.
    assert calls == [(str(i), sum(lengths)) for i in range(len(ffn_ins) - 1)] + [
        (str(len(ffn_ins) - 1), len(rows))
    ]


def test_a_one_layer_encoder(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    path = build_model(tmp_path / "bert", "bert", seed=4)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_hidden_layers=1).eval()
    packed = PackedEncoder.of(model)
    assert packed is not None and packed.scripted
    rows = _random_rows(model, [5, 31, 31, 2], seed=6)
    with torch.inference_mode():
        got = packed(rows, None)
    assert _diff(got, _padded(model, rows, None)) <= TOL


@pytest.mark.parametrize("arch", ["bert", "electra"])
def test_token_type_ids(tmp_path: Path, arch: str) -> None:
    model = _load(tmp_path, arch)
    packed = PackedEncoder.of(model)
    assert packed is not None
    rows = _random_rows(model, [9, 30, 4, 22], seed=5)
    types = [[0] * (len(r) // 2) + [1] * (len(r) - len(r) // 2) for r in rows]
    with torch.inference_mode():
        got = packed(rows, types)
        untyped = packed(rows, None)
    want = _padded(model, rows, types)
    assert _diff(got, want) <= TOL
    # The types reach the model: the same ids without them give other logits.
    assert _diff(got, untyped) > 1e-3


@pytest.mark.parametrize("arch", ["roberta", "xlm-roberta"])
def test_pad_id_inside_a_prompt_keeps_roberta_positions(tmp_path: Path, arch: str) -> None:
    model = _load(tmp_path, arch)
    packed = PackedEncoder.of(model)
    assert packed is not None
    pad = model.config.pad_token_id
    rows = _random_rows(model, [12, 25, 6], seed=8)
    rows[1][4] = pad
    rows[1][9] = pad
    with torch.inference_mode():
        got = packed(rows, None)
    # transformers derives the positions from the ids themselves, pads included.
    want = torch.cat([_padded(model, [row], None) for row in rows])
    assert _diff(got, want) <= TOL


@pytest.mark.parametrize("arch", NOT_PACKED)
def test_other_architectures_keep_their_own_forward(tmp_path: Path, arch: str) -> None:
    assert PackedEncoder.of(_load(tmp_path, arch)) is None


def test_a_model_in_training_mode_is_not_packed(tmp_path: Path) -> None:
    model = _load(tmp_path, "bert").train()
    assert PackedEncoder.of(model) is None


def test_attention_groups() -> None:
    assert attention_groups([]) == []
    assert attention_groups([7]) == [1]
    # Equal lengths: one group, however many rows.
    assert attention_groups([10] * 50) == [50]
    # 10 and 9: 2 × 100 = 200 ≤ 1.3 × 181; 5 joins neither (3 × 100 > 1.3 × 206).
    assert attention_groups([10, 9, 5]) == [2, 3]
    # A long row stays apart from the short ones it would make pad.
    assert attention_groups([400, 30, 29, 28]) == [1, 4]
    # With no slack only equal lengths share a group.
    assert attention_groups([8, 8, 7, 7, 7], slack=0.0) == [2, 5]
    # Every row is in exactly one group, groups in order.
    lengths = sorted((random.Random(1).randrange(1, 200) for _ in range(300)), reverse=True)
    ends = attention_groups(lengths)
    assert ends == sorted(set(ends)) and ends[-1] == len(lengths)
    start = 0
    for end in ends:
        group = lengths[start:end]
        own = sum(n * n for n in group)
        assert len(group) == 1 or len(group) * group[0] ** 2 <= 1.3 * own
        start = end


@pytest.mark.parametrize(
    ("options", "packed"),
    [({}, True), ({"dtype": "bfloat16"}, True), ({"packed": False}, False),
     ({"quantization": "int8"}, True), ({"quantization": "int8", "packed": False}, False)],
)  # fmt: skip
async def test_the_runner_packs_where_it_should(
    tmp_path: Path, options: dict[str, Any], packed: bool
) -> None:
    from engine import Engine, EngineConfig

    path = build_model(tmp_path / "bert", "bert", seed=3)
    async with Engine(EngineConfig(model=str(path), device="cpu", **options)) as engine:
        assert engine.info.packed is packed
