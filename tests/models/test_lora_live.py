"""LoRA adapters through the real CLI (`--enable-lora --lora-modules`): concurrent requests
for the base and adapters of different label counts share the server's batches, and each
answer equals PEFT run one text at a time in transformers (fp32); /v1/models lists the
adapters under their base; an unknown adapter is a 404 in the route's envelope."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import build_model, sentences
from tests.live import Server, serve, stop
from tests.lora_builders import base_logits, build_adapter, peft_logits
from tests.support import max_abs_diff, softmax

TOL = 1e-5
ARCHS = ("bert", "qwen2")
BASE = "base"


class Fleet:
    def __init__(self, root: Path) -> None:
        from transformers import AutoTokenizer

        self.texts = sentences(12, seed=7, max_words=30)
        self.expected: dict[str, dict[str, list[list[float]]]] = {}
        self.paths: dict[str, dict[str, Path]] = {}
        self.servers: dict[str, Server] = {}
        for arch in ARCHS:
            base = build_model(root / arch / "base", arch, num_labels=3, seed=11)
            adapters = {
                "five": build_adapter(base, root / arch / "five", arch, num_labels=5, seed=12,
                                      labels=["v", "w", "x", "y", "z"]),
                "two": build_adapter(base, root / arch / "two", arch, num_labels=2, seed=13),
            }  # fmt: skip
            tokenizer: Any = AutoTokenizer.from_pretrained(base)
            prompts = [tokenizer(t)["input_ids"] for t in self.texts]
            self.expected[arch] = {BASE: base_logits(base, prompts)}
            for name, path in adapters.items():
                self.expected[arch][name] = peft_logits(base, path, prompts)
            self.paths[arch] = {BASE: base, **adapters}
            self.servers[arch] = serve(
                ["--model", str(base), "--served-model-name", BASE, "--device", "cpu",
                 "--dtype", "float32", "--enable-lora", "--max-lora-rank", "8",
                 "--max-batch-tokens", "512",
                 "--lora-modules", f"five={adapters['five']}",
                 json.dumps({"name": "two", "path": str(adapters["two"]),
                             "base_model_name": BASE})],
                root / f"{arch}.log",
            )  # fmt: skip


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("lora-live"))
    try:
        for server in fleet.servers.values():
            server.wait_ready()
        yield fleet
    finally:
        stop(*fleet.servers.values())


def _probs(response: httpx.Response) -> list[list[float]]:
    assert response.status_code == 200, response.text
    return [row["probs"] for row in response.json()["data"]]


@pytest.mark.parametrize("arch", ARCHS)
async def test_mixed_concurrent_requests_equal_peft(fleet: Fleet, arch: str) -> None:
    names = [BASE, "five", "two"]
    calls: list[tuple[str, int, str]] = []  # (model, first text, route)
    for i in range(0, len(fleet.texts), 3):
        for name in names:
            calls.append((name, i, "/classify"))
    calls.append((f"{BASE}:five", 0, "/v1/classify"))  # SGLang's base:adapter spelling
    async with httpx.AsyncClient(base_url=fleet.servers[arch].url, timeout=120) as client:
        responses = await asyncio.gather(*(
            client.post(route, json={"model": model, "input": fleet.texts[i : i + 3]})
            for model, i, route in calls
        ))  # fmt: skip
        metrics = (await client.get("/metrics")).text
    for (model, i, _), response in zip(calls, responses, strict=True):
        name = model.rpartition(":")[2]
        want = [softmax(r) for r in fleet.expected[arch][name][i : i + 3]]
        got = _probs(response)
        assert max_abs_diff(got, want) <= TOL, (model, i)
        body = response.json()
        assert body["model"] == model
        assert {row["num_classes"] for row in body["data"]} == {len(want[0])}
        if name == "five":
            assert {row["label"] for row in body["data"]} <= set("vwxyz")
        if name == "two":
            assert {row["label"] for row in body["data"]} <= {"LABEL_0", "LABEL_1"}
    assert 'classifyd_lora_requests_total{lora_name="five"} 5.0' in metrics
    # Request logs name the adapter as vLLM's metrics do.
    assert "lora_name=two" in fleet.servers[arch].log_text()
    # Requests shared forwards (requests alternate models, so shared forwards mix them).
    assert _sample(metrics, "classifyd_batch_size_count") < len(calls)


async def test_models_lists_adapters_under_their_base(fleet: Fleet) -> None:
    async with httpx.AsyncClient(base_url=fleet.servers["bert"].url) as client:
        cards = {c["id"]: c for c in (await client.get("/v1/models")).json()["data"]}
    assert list(cards) == [BASE, "five", "two"]
    assert cards[BASE]["parent"] is None
    for name in ("five", "two"):
        assert cards[name]["parent"] == BASE
        assert cards[name]["root"] == str(fleet.paths["bert"][name])


async def test_unknown_adapter_is_404_and_other_routes_refuse_adapters(fleet: Fleet) -> None:
    async with httpx.AsyncClient(base_url=fleet.servers["bert"].url) as client:
        missing = await client.post("/classify", json={"model": "nope", "input": ["a"]})
        sglang = await client.post("/v1/classify", json={"model": "base:nope", "input": "a"})
        score = await client.post("/score", json={"model": "five", "text_1": "a", "text_2": "b"})
        tokens = await client.post("/tokenize", json={"model": "five", "prompt": "a b"})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "The model `nope` does not exist."
    assert sglang.status_code == 404, sglang.text
    assert score.status_code == 400
    assert "LoRA adapter" in score.json()["error"]["message"]
    assert tokens.status_code == 200  # adapters share the base's tokenizer


def _sample(metrics: str, name: str) -> float:
    return float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith(name)))
