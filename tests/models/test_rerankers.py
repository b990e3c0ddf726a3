"""Rerankers and reward models served the ways vLLM serves them, against transformers.

- Causal LMs converted with vLLM's exact --hf-overrides (classifier_from_token, method,
  is_original_qwen3_reranker) and scored through --chat-template: Qwen3-Reranker (Qwen3,
  no/yes), mxbai-rerank-v2 (Qwen2, 0/1, from_2_way_softmax) and bge-reranker-v2-gemma (Gemma,
  Yes, no_post_processing). The reference is what each model card computes: the prompt built
  from the card's format strings, the LM's next-token logits at its last position, then the
  card's formula.
- Cross-encoders (BERT, XLM-RoBERTa, and remote code behind --trust-remote-code): the pair
  through transformers' pair encoding, sigmoid of the one logit.
- Reward models (one label on Llama, Qwen2, Gemma2): sigmoid of the logit.

Every comparison is fp32 and within 1e-5, for one request, concurrent singles and
concurrent mixed requests, with a batch budget small enough that batches split and pad.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import Engine, EngineConfig, ModelLoadError
from engine.model.convert import conversion_of
from engine.score_template import TEMPLATES
from tests.builders import (
    build_model,
    build_remote_code_model,
    build_reranker_lm,
    missing_archs,
    sentences,
)
from tests.live import Apps, AppSpecs, serve
from tests.models.conftest import assert_matches, serve_fleet, spread, three_ways, torch_threads
from tests.support import softmax

TOL = 1e-5
MAX_BATCH_TOKENS = 1024
QUERIES = sentences(3, seed=21, max_words=8)
DOCS = sentences(12, seed=22, max_words=40)
CHUNKS = (1, 4, 2, 5)  # concurrent /rerank requests over DOCS
TEXTS = sentences(16, seed=23)
TEXT_CHUNKS = (1, 5, 3, 7)

QWEN3_OVERRIDES = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}
MXBAI_OVERRIDES = {
    "architectures": ["Qwen2ForSequenceClassification"],
    "classifier_from_token": ["0", "1"],
    "method": "from_2_way_softmax",
}
GEMMA_OVERRIDES = {
    "architectures": ["GemmaForSequenceClassification"],
    "classifier_from_token": ["Yes"],
    "method": "no_post_processing",
}
REWARD_ARCHS = ("llama", "qwen2", "gemma2")
# Fails on a document that says "boom", as a template's own checks do.
BAD_TEMPLATE = (
    "{% if 'boom' in messages[1].content %}{{ raise_exception('no boom here') }}{% endif %}"
    "{{ messages[0].content }} | {{ messages[1].content }}"
)
CROSS_ENCODERS = ("bert", "xlm-roberta")

# The model cards' prompt formats, written out independently of the bundled templates.
QWEN3_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
MXBAI_TASK = (
    "You are a search relevance expert who evaluates how well documents match search queries. "
    "For each query-document pair, carefully analyze the semantic relationship between them, "
    "then provide your binary relevance judgment (0 for not relevant, 1 for relevant)."
)
GEMMA_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the "
    "query by providing a prediction of either 'Yes' or 'No'."
)


def qwen3_prompt(query: str, doc: str) -> str:
    return (
        f"{QWEN3_PREFIX}<Instruct>: {QWEN3_INSTRUCTION}\n<Query>: {query}\n<Document>: {doc}"
        f"{QWEN3_SUFFIX}"
    )


def mxbai_prompt(query: str, doc: str) -> str:
    return (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        f"assistant.<|im_end|>\n<|im_start|>user\nquery: {query}\ndocument: {doc}\n"
        f"{MXBAI_TASK}\nRelevance:<|im_end|>\n<|im_start|>assistant\n"
    )


def gemma_prompt(query: str, doc: str) -> str:
    return f"A: {query}\nB: {doc}\n{GEMMA_PROMPT}"


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def two_way(no: float, yes: float) -> float:
    """The cards' score: the softmax of the (false, true) logits, true's share."""
    return softmax([no, yes])[1]


# name → (arch, label tokens, overrides, template flag value, prompt, formula)
LLM_RERANKERS: dict[str, tuple[str, tuple[str, ...], dict[str, Any], str, Any, Any]] = {
    "qwen3-reranker": (
        "qwen3", ("no", "yes"), QWEN3_OVERRIDES, "qwen3_reranker", qwen3_prompt, two_way,
    ),
    "mxbai-rerank-v2": (
        "qwen2", ("0", "1"), MXBAI_OVERRIDES, "mxbai_rerank_v2", mxbai_prompt, two_way,
    ),
    # Given as a file path, as vLLM's examples do.
    "bge-reranker-v2-gemma": (
        "gemma", ("Yes",), GEMMA_OVERRIDES, str(TEMPLATES / "bge-reranker-v2-gemma.jinja"),
        gemma_prompt, _sigmoid,
    ),
}  # fmt: skip


# -- models and servers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for seed, (name, (arch, tokens, *_)) in enumerate(LLM_RERANKERS.items()):
        out[name] = build_reranker_lm(tmp_path_factory.mktemp(name), arch, tokens, seed=seed)
    for seed, arch in enumerate(CROSS_ENCODERS):
        out[f"{arch}-ce"] = build_model(
            tmp_path_factory.mktemp(arch), arch, num_labels=1, seed=10 + seed
        )
    out["remote"] = build_remote_code_model(tmp_path_factory.mktemp("remote"), seed=3)
    for seed, arch in enumerate(REWARD_ARCHS):
        if arch not in missing_archs():
            out[f"{arch}-reward"] = build_model(
                tmp_path_factory.mktemp(f"{arch}-reward"), arch, num_labels=1, seed=20 + seed
            )
    return out


@pytest.fixture(scope="module")
def fleet(dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    base = {"max_batch_tokens": MAX_BATCH_TOKENS}
    servers: AppSpecs = {}
    for name, (_, _, overrides, template, _, _) in LLM_RERANKERS.items():
        model = {"model": str(dirs[name]), "hf_overrides": overrides, **base}
        servers[name] = ({**model, "chat_template": template}, {})
    # Qwen3-Reranker as vLLM's offline example serves it: no template, the client formats
    # both sides and the converted model scores query + document as one text.
    servers["qwen3-untemplated"] = (
        {"model": str(dirs["qwen3-reranker"]), "hf_overrides": QWEN3_OVERRIDES, **base},
        {},
    )
    for name, path in dirs.items():
        if name.endswith(("-ce", "-reward")):
            servers[name] = ({"model": str(path), **base}, {})
    servers["remote"] = ({"model": str(dirs["remote"]), "trust_remote_code": True, **base}, {})
    servers["bad-template"] = (
        {"model": str(dirs["bert-ce"]), "chat_template": BAD_TEMPLATE, **base},
        {},
    )
    yield from serve_fleet(servers, tmp_path_factory.mktemp("logs") / "classifyd.log")


# -- references ---------------------------------------------------------------------------


def lm_reference(
    model_dir: Path,
    tokens: tuple[str, ...],
    prompts: list[str],
    formula: Callable[..., float],
) -> list[float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in tokens]
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode(), torch_threads(1):
        for prompt in prompts:
            last = model(**tokenizer(prompt, return_tensors="pt")).logits[0, -1]
            out.append(formula(*last[ids].tolist()))
    return out


def classifier_logits(
    model_dir: Path, inputs: list[Any], trust_remote_code: bool = False
) -> list[float]:
    """The one logit of a sequence classifier for each text or (query, document) pair."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForSequenceClassification.from_pretrained(
        model_dir, trust_remote_code=trust_remote_code
    ).eval()
    out = []
    with torch.inference_mode(), torch_threads(1):
        for item in inputs:
            args = item if isinstance(item, tuple) else (item,)
            out.append(model(**tokenizer(*args, return_tensors="pt")).logits[0, 0].item())
    return out


# -- /score and /rerank, three ways -------------------------------------------------------


async def score_ways(url: str, query: str, docs: list[str]) -> dict[str, list[float]]:
    """The documents' scores from one /score, one /rerank, concurrent /rerank requests of
    mixed sizes, concurrent single /score requests and one Cohere v2 /v2/rerank."""
    async with httpx.AsyncClient(base_url=url, timeout=180) as client:

        async def rerank(part: list[str], path: str = "/rerank") -> list[float]:
            r = await client.post(path, json={"query": query, "documents": part})
            assert r.status_code == 200, r.text
            results = r.json()["results"]
            scores = [0.0] * len(part)
            for item in results:
                scores[item["index"]] = item["relevance_score"]
            return scores

        async def score(part: list[str]) -> list[float]:
            r = await client.post("/score", json={"text_1": query, "text_2": part})
            assert r.status_code == 200, r.text
            return [d["score"] for d in r.json()["data"]]

        ways = {"score": await score(docs), "rerank": await rerank(docs)}
        parts, start = [], 0
        for size in CHUNKS:
            parts.append(docs[start : start + size])
            start += size
        assert start == len(docs)
        mixed = await asyncio.gather(*(rerank(p) for p in parts))
        singles = await asyncio.gather(*(score([d]) for d in docs))
        ways["concurrent reranks"] = [s for part in mixed for s in part]
        ways["concurrent singles"] = [s[0] for s in singles]
        ways["v2/rerank"] = await rerank(docs, "/v2/rerank")
    return ways


def assert_close(ways: dict[str, list[float]], want: list[float]) -> None:
    for way, got in ways.items():
        diff = max(abs(a - b) for a, b in zip(got, want, strict=True))
        assert diff <= TOL, f"{way}: max |Δscore| = {diff:.2e} > {TOL}"


@pytest.mark.parametrize("name", LLM_RERANKERS)
async def test_llm_reranker_matches_model_card(
    name: str, fleet: Apps, dirs: dict[str, Path]
) -> None:
    _, tokens, _, _, prompt, formula = LLM_RERANKERS[name]
    url = fleet.url(name)
    async with httpx.AsyncClient(base_url=url) as client:
        info = (await client.get("/info")).json()
    assert info["architecture"] == LLM_RERANKERS[name][2]["architectures"][0]
    assert len(info["labels"]) == 1 and info["activation"] == "sigmoid"
    for query in QUERIES[:2]:
        want = lm_reference(dirs[name], tokens, [prompt(query, d) for d in DOCS], formula)
        assert spread([[w] for w in want]) > 0.05, want
        assert_close(await score_ways(url, query, DOCS), want)


async def test_vllm_command_line(dirs: dict[str, Path], tmp_path: Path) -> None:
    """The real CLI with vLLM's serve flags as its docs write them (underscore spelling
    included) serves Qwen3-Reranker exactly."""
    server = serve(
        ["--model", str(dirs["qwen3-reranker"]), "--device", "cpu", "--dtype", "float32",
         "--hf_overrides", json.dumps(QWEN3_OVERRIDES), "--chat-template", "qwen3_reranker"],
        tmp_path / "serve.log",
    )  # fmt: skip
    try:
        server.wait_ready()
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            r = await client.post("/rerank", json={"query": QUERIES[0], "documents": DOCS[:4]})
    finally:
        server.stop()
    assert r.status_code == 200, r.text
    got = {item["index"]: item["relevance_score"] for item in r.json()["results"]}
    want = lm_reference(
        dirs["qwen3-reranker"], ("no", "yes"), [qwen3_prompt(QUERIES[0], d) for d in DOCS[:4]],
        two_way,
    )  # fmt: skip
    assert max(abs(got[i] - w) for i, w in enumerate(want)) <= TOL


async def test_qwen3_reranker_untemplated_scores_concatenation(
    fleet: Apps, dirs: dict[str, Path]
) -> None:
    """No template: vLLM's offline example formats each side itself; the converted model
    scores query + document as one text (no pair encoding)."""
    query = f"{QWEN3_PREFIX}<Instruct>: {QWEN3_INSTRUCTION}\n<Query>: {QUERIES[0]}\n"
    docs = [f"<Document>: {d}{QWEN3_SUFFIX}" for d in DOCS]
    want = lm_reference(dirs["qwen3-reranker"], ("no", "yes"), [query + d for d in docs], two_way)
    # The same prompts as the template renders, so the same scores.
    assert [query + d for d in docs] == [qwen3_prompt(QUERIES[0], d) for d in DOCS]
    assert_close(await score_ways(fleet.url("qwen3-untemplated"), query, docs), want)


async def test_llm_reranker_classify_is_the_score(fleet: Apps, dirs: dict[str, Path]) -> None:
    """/classify on a templated prompt gives the same probability as /score on the pair."""
    prompts = [qwen3_prompt(QUERIES[1], d) for d in DOCS[:4]]
    want = lm_reference(dirs["qwen3-reranker"], ("no", "yes"), prompts, two_way)
    got = await three_ways(fleet.url("qwen3-reranker"), prompts, (1, 3))
    assert_matches(got, [[w] for w in want])


@pytest.mark.parametrize("name", [*(f"{a}-ce" for a in CROSS_ENCODERS), "remote"])
async def test_cross_encoder_pairs_match_transformers(
    name: str, fleet: Apps, dirs: dict[str, Path]
) -> None:
    url = fleet.url(name)
    query = QUERIES[2]
    logits = classifier_logits(
        dirs[name], [(query, d) for d in DOCS], trust_remote_code=name == "remote"
    )
    want = [_sigmoid(x) for x in logits]
    assert spread([[w] for w in want]) > 0.05, want
    assert_close(await score_ways(url, query, DOCS), want)


@pytest.mark.parametrize("arch", REWARD_ARCHS)
async def test_reward_model_matches_transformers(
    arch: str, fleet: Apps, dirs: dict[str, Path]
) -> None:
    name = f"{arch}-reward"
    if name not in dirs:
        pytest.skip(missing_archs()[arch])
    url = fleet.url(name)
    async with httpx.AsyncClient(base_url=url) as client:
        info = (await client.get("/info")).json()
    assert info["activation"] == "sigmoid" and len(info["labels"]) == 1
    want = [[_sigmoid(x)] for x in classifier_logits(dirs[name], TEXTS)]
    assert spread(want) > 0.05
    assert_matches(await three_ways(url, TEXTS, TEXT_CHUNKS), want)


async def test_template_failure_is_a_400_naming_the_document(fleet: Apps) -> None:
    async with httpx.AsyncClient(base_url=fleet.url("bad-template"), timeout=60) as client:
        ok = await client.post("/rerank", json={"query": "q", "documents": ["fine", "good"]})
        bad = await client.post("/rerank", json={"query": "q", "documents": ["fine", "boom"]})
    assert ok.status_code == 200, ok.text
    assert bad.status_code == 400, bad.text
    error = bad.json()["error"]
    assert "no boom here" in error["message"], error
    assert error["param"] == "documents[1]", error


# -- start-up errors ------------------------------------------------------------------------


async def _start_error(**fields: Any) -> ModelLoadError:
    engine = Engine(EngineConfig(device="cpu", num_threads=1, **fields))
    with torch_threads(1), pytest.raises(ModelLoadError) as raised:
        await engine.start()
    await engine.stop()
    return raised.value


async def test_remote_code_refused_without_flag(dirs: dict[str, Path]) -> None:
    error = await _start_error(model=str(dirs["remote"]))
    assert "--trust-remote-code" in error.message, error.message
    assert "modeling_new.NewForSequenceClassification" in error.message
    assert "\n" not in error.message


async def test_unknown_template_name_refused(dirs: dict[str, Path]) -> None:
    error = await _start_error(model=str(dirs["bert-ce"]), chat_template="no_such_template")
    assert "qwen3_reranker" in error.message, error.message


async def test_checkpoint_without_lm_head_refused(dirs: dict[str, Path]) -> None:
    """A classifier checkpoint given classifier_from_token would take random LM-head rows."""
    error = await _start_error(model=str(dirs["qwen2-reward"]), hf_overrides={**MXBAI_OVERRIDES})
    assert "LM head" in error.message, error.message


class _Config:
    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


@pytest.mark.parametrize(
    ("attrs", "options", "want"),
    [
        ({}, {}, None),
        ({"classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": True}, {},
         (("no", "yes"), "from_2_way_softmax", 1)),
        ({"classifier_from_token": ["0", "1"], "method": "from_2_way_softmax"}, {},
         (("0", "1"), "from_2_way_softmax", 1)),
        ({"classifier_from_token": ["Yes"], "method": "no_post_processing"}, {},
         (("Yes",), "no_post_processing", 1)),
        ({}, {"convert": "classify", "classifier_from_tokens": ("no", "yes")},
         (("no", "yes"), "no_post_processing", 2)),
        ({"classifier_from_token": ["a", "b", "c"]}, {},
         (("a", "b", "c"), "no_post_processing", 3)),
    ],
)  # fmt: skip
def test_conversion_of(attrs: dict[str, Any], options: dict[str, Any], want: Any) -> None:
    got = conversion_of(EngineConfig(model="m", **options), _Config(**attrs))
    if want is None:
        assert got is None
    else:
        assert got is not None
        assert (got.tokens, got.method, got.num_labels) == want


@pytest.mark.parametrize(
    ("attrs", "needle"),
    [
        ({"classifier_from_token": ["a", "b", "c"], "method": "from_2_way_softmax"}, "two"),
        ({"classifier_from_token": ["a"], "method": "mean"}, "Unknown conversion method"),
        ({"method": "no_post_processing"}, "label tokens"),
        ({"classifier_from_token": ["a"], "is_original_qwen3_reranker": True}, "two"),
    ],
)
def test_conversion_errors(attrs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ModelLoadError) as raised:
        conversion_of(EngineConfig(model="m"), _Config(**attrs))
    assert needle in raised.value.message, raised.value.message
