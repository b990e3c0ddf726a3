"""`classifyd serve` on 127.0.0.1 (a child process), driven the way users drive vLLM and SGLang."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from pathlib import Path

import httpx
import requests

from tests.builders import sentences
from tests.reference import reference_probs
from tests.server.conftest import SERVED
from tests.support import max_abs_diff


def test_vllm_example_client(live_url: str) -> None:
    # vLLM's examples/online_serving classification client, unchanged but for the URL.
    prompts = [
        "Hello, my name is",
        "The president of the United States is",
        "The capital of France is",
        "The future of AI is",
    ]
    payload = {"model": SERVED, "input": prompts}
    response = requests.post(
        f"{live_url}/classify", headers={"User-Agent": "Test Client"}, json=payload, timeout=30
    )
    assert response.status_code == 200
    body = response.json()
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    assert all(d["label"] in {"neg", "neu", "pos"} for d in body["data"])


def test_sglang_curl_example(live_url: str) -> None:
    out = subprocess.run(
        [
            "curl", "-sS", "-X", "POST", f"{live_url}/v1/classify",
            "-H", "Content-Type: application/json",
            "-d", json.dumps({"model": SERVED, "input": "Loved the new café—coffee was great."}),
        ],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    body = json.loads(out.stdout)
    assert body["object"] == "list"
    assert len(body["data"]) == 1
    assert body["data"][0]["num_classes"] == 3


async def test_concurrent_clients_get_exact_results(live_url: str, bert_dir: Path) -> None:
    texts = sentences(48, seed=11, max_words=60)
    expected = reference_probs(bert_dir, texts)
    rng = random.Random(5)
    # Mixed request sizes, all in flight at once, so prompts share batches with strangers.
    groups: list[list[int]] = []
    order = list(range(len(texts)))
    rng.shuffle(order)
    while order:
        k = rng.choice((1, 1, 2, 3, 5))
        groups.append(order[:k])
        order = order[k:]

    async with httpx.AsyncClient(base_url=live_url, timeout=60) as client:

        async def send(group: list[int]) -> list[list[float]]:
            body = {"input": [texts[i] for i in group]}
            resp = await client.post("/classify", json=body)
            assert resp.status_code == 200, resp.text
            return [d["probs"] for d in resp.json()["data"]]

        results = await asyncio.gather(*(send(g) for g in groups))
        got: list[list[float]] = [[] for _ in texts]
        for group, probs in zip(groups, results, strict=True):
            for i, p in zip(group, probs, strict=True):
                got[i] = p
        assert max_abs_diff(got, expected) <= 1e-5

        metrics = (await client.get("/metrics")).text
    # Batching really happened: some forward held more than one prompt.
    sizes = [
        line for line in metrics.splitlines() if line.startswith("classifyd_batch_size_bucket")
    ]
    one = next(line for line in sizes if 'le="1.0"' in line)
    total = next(line for line in sizes if 'le="+Inf"' in line)
    assert float(one.split()[-1]) < float(total.split()[-1])


async def test_gauges_return_to_zero(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url, timeout=60) as client:
        await asyncio.gather(*(client.post("/classify", json={"input": "ok"}) for _ in range(20)))
        text = (await client.get("/metrics")).text
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["classifyd_queue_waiting_sequences"] == 0
    assert values["classifyd_running_sequences"] == 0
    assert values["classifyd_admitted_sequences"] == 0
