"""Every architecture family classifyd claims, served for real and compared to transformers.

One tiny seeded sequence classifier per architecture (tests/builders.py), each behind its own
live server (all in one child process, fp32 on CPU, max_batch_tokens=512 so that batches split
and pad), against plain transformers one text at a time without padding. Texts run from 1 to
60 words, so every batch the server forms is heavily padded; the outputs must still match to
1e-5, whichever way the texts arrive: in one request, one request each, or in mixed-size
requests at once. Then the problem types, and the loading options (--hf-overrides,
--convert classify, and the start-up errors).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import Engine, EngineConfig, ModelLoadError
from tests.builders import ARCHS, DECODERS, build_causal_lm, build_model, missing_archs, sentences
from tests.live import Apps, AppSpecs
from tests.models.conftest import (
    assert_matches,
    converted,
    serve_fleet,
    spread,
    three_ways,
    torch_threads,
)
from tests.support import free_port, max_abs_diff, probs_of, softmax

TOL = 1e-5
MAX_BATCH_TOKENS = 512
TEXTS = sentences(24, seed=11)  # 1 to 60 words each
# Sizes of the concurrent requests in the mixed case: 1+5+2+7+3+6 = 24 texts.
CHUNKS = (1, 5, 2, 7, 3, 6)
LABELS = ["neg", "neu", "pos"]
MISSING = missing_archs()
AVAILABLE = [a for a in ARCHS if a not in MISSING]
# The class each architecture must be served as.
CLASSES = {
    "bert": "BertForSequenceClassification",
    "distilbert": "DistilBertForSequenceClassification",
    "roberta": "RobertaForSequenceClassification",
    "xlm-roberta": "XLMRobertaForSequenceClassification",
    "deberta-v2": "DebertaV2ForSequenceClassification",
    "electra": "ElectraForSequenceClassification",
    "modernbert": "ModernBertForSequenceClassification",
    "qwen2": "Qwen2ForSequenceClassification",
    "qwen3": "Qwen3ForSequenceClassification",
    "llama": "LlamaForSequenceClassification",
    "mistral": "MistralForSequenceClassification",
    "gemma2": "Gemma2ForSequenceClassification",
    "gpt2": "GPT2ForSequenceClassification",
    # Mamba and attention layers with a mixture of experts; on CPU its Mamba layers run
    # transformers' slow path (no CUDA kernels), and must still be exact.
    "jamba": "JambaForSequenceClassification",
}
# problem → (num_labels, problem_type, the activation the server must apply by default).
PROBLEMS = {
    "one-label": (1, None, "sigmoid"),
    "multi-label": (3, "multi_label_classification", "sigmoid"),
    "regression": (1, "regression", "none"),
}
PROBLEM_ARCHS = ("bert", "qwen2")
OVERRIDE_LABELS = {"0": "x", "1": "y", "2": "z"}
LABEL_TOKENS = ("no", "yes")


# -- models and servers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name → model directory: one classifier per architecture, the problem-type variants,
    and a causal LM."""
    out: dict[str, Path] = {}
    for seed, arch in enumerate(AVAILABLE):
        out[arch] = build_model(tmp_path_factory.mktemp(arch), arch, labels=LABELS, seed=seed)
    for arch in PROBLEM_ARCHS:
        for problem, (num_labels, problem_type, _) in PROBLEMS.items():
            name = f"{arch}-{problem}"
            out[name] = build_model(
                tmp_path_factory.mktemp(name), arch, num_labels=num_labels,
                problem_type=problem_type, seed=7,
            )  # fmt: skip
    out["causal-lm"] = build_causal_lm(tmp_path_factory.mktemp("causal-lm"), "llama", seed=5)
    return out


@pytest.fixture(scope="module")
def fleet(dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    base = {"max_batch_tokens": MAX_BATCH_TOKENS}
    servers: AppSpecs = {
        name: ({"model": str(path), **base}, {})
        for name, path in dirs.items()
        if name != "causal-lm"
    }
    servers["overrides"] = (
        {"model": str(dirs["bert"]), "hf_overrides": {"id2label": OVERRIDE_LABELS}, **base},
        {},
    )
    servers["convert"] = converted(dirs["causal-lm"], LABEL_TOKENS, **base)
    yield from serve_fleet(servers, tmp_path_factory.mktemp("logs") / "classifyd.log")


# -- references: plain transformers, one text at a time, no padding ---------------------


def _sigmoid(row: list[float]) -> list[float]:
    return [1 / (1 + math.exp(-x)) for x in row]


ACTIVATIONS: dict[str, Callable[[list[float]], list[float]]] = {
    "softmax": softmax,
    "sigmoid": _sigmoid,
    "none": list,
}


def reference_logits(model_dir: Path, texts: list[str]) -> list[list[float]]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode(), torch_threads(1):
        return [model(**tokenizer(text, return_tensors="pt")).logits[0].tolist() for text in texts]


def reference_from_tokens(model_dir: Path, texts: list[str], tokens: tuple[str, ...]) -> list:
    """vLLM's classifier_from_token: the causal LM's next-token logits of the label tokens at
    the last position, softmaxed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
    ids = [tokenizer.encode(t, add_special_tokens=False) for t in tokens]
    assert all(len(i) == 1 for i in ids), f"label tokens must be single tokens: {ids}"
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    rows = []
    with torch.inference_mode(), torch_threads(1):
        for text in texts:
            last = model(**tokenizer(text, return_tensors="pt")).logits[0, -1]
            rows.append(softmax(last[[i[0] for i in ids]].tolist()))
    return rows


# -- the three ways texts reach the server ----------------------------------------------


# -- every architecture -----------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
async def test_architecture_matches_transformers(
    arch: str, fleet: Apps, dirs: dict[str, Path]
) -> None:
    if arch in MISSING:
        pytest.skip(MISSING[arch])
    url = fleet.url(arch)
    async with httpx.AsyncClient(base_url=url) as client:
        info = (await client.get("/info")).json()
    assert info["architecture"] == CLASSES[arch]
    assert (info["dtype"], info["device"], info["activation"]) == ("float32", "cpu", "softmax")
    assert info["labels"] == LABELS

    want = [softmax(row) for row in reference_logits(dirs[arch], TEXTS)]
    # Not vacuous: the texts get clearly different answers.
    assert spread(want) > 0.05, f"{arch}: outputs hardly vary ({spread(want):.2e})"
    got = await three_ways(url, TEXTS, CHUNKS)
    assert_matches(got, want)


def test_batches_really_pad_and_split(dirs: dict[str, Path]) -> None:
    """The texts are long enough that a budget of MAX_BATCH_TOKENS splits them into several
    batches of very different lengths (so padding is exercised), yet fit every model."""
    from transformers import AutoTokenizer

    for arch in AVAILABLE:
        tokenizer: Any = AutoTokenizer.from_pretrained(dirs[arch])
        lengths = [len(tokenizer(t)["input_ids"]) for t in TEXTS]
        assert max(lengths) >= 4 * min(lengths), (arch, lengths)
        assert max(lengths) * len(TEXTS) > 2 * MAX_BATCH_TOKENS, (arch, lengths)
        assert max(lengths) <= min(tokenizer.model_max_length, MAX_BATCH_TOKENS), arch


def test_decoder_padding_variants(dirs: dict[str, Path]) -> None:
    """The decoders cover both ways of finding the last token: a pad token in the config, and
    none (the server pads with eos); and one tokenizer asks for left padding."""
    from transformers import AutoConfig, AutoTokenizer

    decoders = [a for a in DECODERS if a in dirs]
    pads = {a: AutoConfig.from_pretrained(dirs[a]).pad_token_id for a in decoders}
    assert any(p is None for p in pads.values()), pads
    assert any(p is not None for p in pads.values()), pads
    if "mistral" in dirs:
        tokenizer: Any = AutoTokenizer.from_pretrained(dirs["mistral"])
        assert tokenizer.padding_side == "left"


def test_jamba_runs_mamba_without_cuda_kernels(dirs: dict[str, Path]) -> None:
    """The Jamba above is exact with Mamba layers in it, asking for the CUDA kernels as real
    checkpoints do, on a machine without them: transformers' slow path serves it."""
    import importlib.util

    from transformers import AutoConfig

    if "jamba" in MISSING:
        pytest.skip(MISSING["jamba"])
    config: Any = AutoConfig.from_pretrained(dirs["jamba"])
    kinds = [config.layers_block_type[i] for i in range(config.num_hidden_layers)]
    assert "mamba" in kinds and "attention" in kinds, kinds
    assert config.use_mamba_kernels
    assert importlib.util.find_spec("mamba_ssm") is None


@pytest.mark.parametrize("arch", ["roberta", "xlm-roberta"])
async def test_position_offset_full_length(arch: str, fleet: Apps, dirs: dict[str, Path]) -> None:
    """RoBERTa's positions start after the padding index: 258 embeddings hold 256 tokens. A
    prompt of exactly 256 tokens is served (and exact); 257 is refused, not an index error."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(dirs[arch])
    model: Any = AutoModelForSequenceClassification.from_pretrained(dirs[arch]).eval()
    limit = model.config.max_position_embeddings - model.config.pad_token_id - 1
    assert limit == tokenizer.model_max_length == 256
    body = tokenizer(" ".join(TEXTS * 4), add_special_tokens=False)["input_ids"]
    full = [tokenizer.cls_token_id, *body[: limit - 2], tokenizer.sep_token_id]
    with torch.inference_mode(), torch_threads(1):
        want = softmax(model(input_ids=torch.tensor([full])).logits[0].tolist())
    url = fleet.url(arch)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        info = (await client.get("/info")).json()
        ok = await client.post("/classify", json={"input": [full, full[:9]]})
        too_long = await client.post("/classify", json={"input": [[*full, full[-1]]]})
    assert info["limits"]["max_model_len"] == limit
    assert max_abs_diff(probs_of(ok)[:1], [want]) <= TOL
    assert too_long.status_code == 400, too_long.text


@pytest.mark.parametrize("arch", DECODERS)
async def test_decoder_text_ending_with_end_token(
    arch: str, fleet: Apps, dirs: dict[str, Path]
) -> None:
    """A prompt whose last token is the end token (a chat turn closed with <|im_end|>, a
    tokenizer that appends eos): the answer is still the one transformers gives for that
    text alone, whether or not the server pads with that same token."""
    if arch in MISSING:
        pytest.skip(MISSING[arch])
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(dirs[arch])
    texts = [t + tokenizer.eos_token for t in TEXTS[:6]]
    assert all(tokenizer(t)["input_ids"][-1] == tokenizer.eos_token_id for t in texts)
    want = [softmax(row) for row in reference_logits(dirs[arch], texts)]
    url = fleet.url(arch)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        batched = probs_of(await client.post("/classify", json={"input": texts}))
        alone = probs_of(await client.post("/classify", json={"input": texts[:1]}))
    assert_matches({"one request": batched}, want)
    assert_matches({"alone": alone}, want[:1])


# -- problem types ----------------------------------------------------------------------


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("arch", PROBLEM_ARCHS)
async def test_problem_type_activation(
    arch: str, problem: str, fleet: Apps, dirs: dict[str, Path]
) -> None:
    name = f"{arch}-{problem}"
    num_labels, _, activation = PROBLEMS[problem]
    url = fleet.url(name)
    texts = TEXTS[:12]
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        info = (await client.get("/info")).json()
        response = await client.post("/classify", json={"input": texts})
    assert info["activation"] == activation
    got = probs_of(response)
    assert all(d["num_classes"] == num_labels for d in response.json()["data"])
    logits = reference_logits(dirs[name], texts)
    want = [ACTIVATIONS[activation](row) for row in logits]
    assert spread(want) > 0.05
    assert max_abs_diff(got, want) <= TOL
    if problem == "multi-label":
        # Independent per-label sigmoids: the rows do not sum to one.
        assert any(abs(sum(row) - 1) > 0.05 for row in got)
    if problem == "regression":
        # Raw values, not squashed into (0, 1).
        assert any(not 0 <= v <= 1 for row in got for v in row), got


# -- loading options --------------------------------------------------------------------


async def test_hf_overrides_rename_labels(fleet: Apps, dirs: dict[str, Path]) -> None:
    url = fleet.url("overrides")
    texts = TEXTS[:8]
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        info = (await client.get("/info")).json()
        response = await client.post("/classify", json={"input": texts})
    assert info["labels"] == ["x", "y", "z"]
    want = [softmax(row) for row in reference_logits(dirs["bert"], texts)]
    assert max_abs_diff(probs_of(response), want) <= TOL
    labels = [d["label"] for d in response.json()["data"]]
    assert labels == [["x", "y", "z"][max(range(3), key=row.__getitem__)] for row in want]
    assert len(set(labels)) > 1, labels


async def test_convert_classify_from_tokens(fleet: Apps, dirs: dict[str, Path]) -> None:
    url = fleet.url("convert")
    async with httpx.AsyncClient(base_url=url) as client:
        info = (await client.get("/info")).json()
    assert info["architecture"] == "LlamaForSequenceClassification"
    assert info["labels"] == list(LABEL_TOKENS)
    want = reference_from_tokens(dirs["causal-lm"], TEXTS, LABEL_TOKENS)
    assert spread(want) > 0.05
    got = await three_ways(url, TEXTS, CHUNKS)
    assert_matches(got, want)


def test_causal_lm_without_convert_fails_start(dirs: dict[str, Path]) -> None:
    """The CLI refuses a *ForCausalLM with one sentence that names --convert, no traceback."""
    out = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--model", str(dirs["causal-lm"]),
         "--port", str(free_port()), "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "--convert" in lines[0], lines[0]
    assert "LlamaForCausalLM" in lines[0], lines[0]


async def _start_error(model: Path) -> ModelLoadError:
    engine = Engine(EngineConfig(model=str(model), device="cpu", num_threads=1))
    # (The runner sets torch's thread count for the whole process; put it back after.)
    with torch_threads(1), pytest.raises(ModelLoadError) as raised:
        await engine.start()
    await engine.stop()
    return raised.value


async def test_causal_lm_without_convert_engine_error(dirs: dict[str, Path]) -> None:
    error = await _start_error(dirs["causal-lm"])
    assert "--convert classify" in error.message
    assert "\n" not in error.message


async def test_missing_head_is_refused(dirs: dict[str, Path], tmp_path: Path) -> None:
    """A bare BertModel checkpoint that claims to be a classifier: serving it would answer
    with a randomly initialised head, so the start fails and says so."""
    from transformers import AutoTokenizer, BertModel

    BertModel.from_pretrained(dirs["bert"]).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(dirs["bert"]).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["BertForSequenceClassification"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    error = await _start_error(tmp_path)
    assert "head" in error.message and "classifier" in error.message, error.message
    assert "\n" not in error.message


async def test_missing_model_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    error = await _start_error(missing)
    assert error.message == f"The model directory {str(missing)!r} does not exist."
