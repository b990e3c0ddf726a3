"""vLLM's run-time LoRA routes on a live server (`classifyd serve --enable-lora
--allow-runtime-lora-updating --api-key`): load → classify (equal to PEFT one text at a time,
fp32) → unload → 404; vLLM's answers for a duplicate, an unknown name, missing fields; the
API key; loads and unloads while other requests run and while requests for the adapter wait,
each answered, none hanging; without the flag the routes are 404 as in vLLM."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import build_model, sentences
from tests.live import serve, stop
from tests.lora_builders import base_logits, build_adapter, peft_logits
from tests.support import max_abs_diff, softmax

TOL = 1e-5
BASE = "base"
KEY = "sekrit"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Live:
    def __init__(self, root: Path) -> None:
        from transformers import AutoTokenizer

        base = build_model(root / "base", "bert", num_labels=3, seed=11)
        self.paths = {
            "five": build_adapter(base, root / "five", "bert", num_labels=5, seed=12,
                                  labels=["v", "w", "x", "y", "z"]),
            "two": build_adapter(base, root / "two", "bert", num_labels=2, seed=13),
        }  # fmt: skip
        tokenizer: Any = AutoTokenizer.from_pretrained(base)
        prompts = [tokenizer(t)["input_ids"] for t in TEXTS]
        self.expected = {BASE: [softmax(r) for r in base_logits(base, prompts)]}
        for name, path in self.paths.items():
            self.expected[name] = [softmax(r) for r in peft_logits(base, path, prompts)]
        common = ["--model", str(base), "--served-model-name", BASE, "--device", "cpu",
                  "--dtype", "float32", "--max-batch-tokens", "512"]  # fmt: skip
        self.server = serve(
            [*common, "--enable-lora", "--allow-runtime-lora-updating", "--max-loras", "2",
             "--api-key", KEY],
            root / "runtime.log",
        )  # fmt: skip
        self.plain = serve(common, root / "plain.log")

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.url, headers=AUTH, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    fixture = Live(tmp_path_factory.mktemp("lora-runtime-live"))
    try:
        fixture.server.wait_ready()
        fixture.plain.wait_ready()
        yield fixture
    finally:
        stop(fixture.server, fixture.plain)


async def _load(client: httpx.AsyncClient, name: str, path: Path, **extra: Any) -> httpx.Response:
    return await client.post(
        "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path), **extra}
    )


async def _unload(client: httpx.AsyncClient, name: str) -> httpx.Response:
    return await client.post("/v1/unload_lora_adapter", json={"lora_name": name})


async def _classify(client: httpx.AsyncClient, model: str) -> httpx.Response:
    return await client.post("/classify", json={"model": model, "input": TEXTS})


TEXTS = sentences(6, seed=7, max_words=20)


def _probs(response: httpx.Response) -> list[list[float]]:
    assert response.status_code == 200, response.text
    return [row["probs"] for row in response.json()["data"]]


async def test_load_classify_unload(live: Live) -> None:
    async with live.client() as client:
        loaded = await _load(client, "five", live.paths["five"])
        assert loaded.status_code == 200, loaded.text
        assert loaded.text == "Success: LoRA adapter 'five' added successfully."
        cards = {c["id"]: c for c in (await client.get("/v1/models")).json()["data"]}
        assert cards["five"]["parent"] == BASE
        assert cards["five"]["root"] == str(live.paths["five"])
        answer = await _classify(client, "five")
        assert max_abs_diff(_probs(answer), live.expected["five"]) <= TOL
        assert {row["label"] for row in answer.json()["data"]} <= set("vwxyz")
        again = await _load(client, "five", live.paths["two"])
        assert again.status_code == 400
        assert (
            again.json()["error"]["message"] == "The lora adapter 'five' has already been loaded."
        )
        assert again.json()["error"]["type"] == "InvalidUserInput"
        # load_inplace: the name moves to freshly loaded weights with the same labels; one
        # with other labels is refused (requests routed before the swap read the old labels).
        swapped = await _load(client, "five", live.paths["five"], load_inplace=True)
        assert swapped.status_code == 200, swapped.text
        assert max_abs_diff(_probs(await _classify(client, "five")), live.expected["five"]) <= TOL
        other = await _load(client, "five", live.paths["two"], load_inplace=True)
        assert other.status_code == 400
        assert "other labels or activation" in other.json()["error"]["message"]
        unloaded = await _unload(client, "five")
        assert unloaded.status_code == 200, unloaded.text
        assert unloaded.text == "Success: LoRA adapter 'five' removed successfully."
        gone = await _classify(client, "five")
        assert gone.status_code == 404
        assert gone.json()["error"]["message"] == "The model `five` does not exist."
        missing = await _unload(client, "five")
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "The lora adapter 'five' cannot be found."
        assert [c["id"] for c in (await client.get("/v1/models")).json()["data"]] == [BASE]
        metrics = (await client.get("/metrics")).text
    assert 'classifyd_lora_updates_total{action="load",result="ok"} 2.0' in metrics
    assert "classifyd_lora_adapters 0.0" in metrics


async def test_bad_loads_are_4xx(live: Live, tmp_path: Path) -> None:
    async with live.client() as client:
        empty = await client.post("/v1/load_lora_adapter", json={"lora_name": "x"})
        nowhere = await _load(client, "x", tmp_path / "none")
        (tmp_path / "junk").mkdir()
        junk = await _load(client, "x", tmp_path / "junk")
        base = await _load(client, BASE, live.paths["two"])
        no_name = await client.post("/v1/unload_lora_adapter", json={})
        not_json = await client.post("/v1/load_lora_adapter", content=b"{")
        wrong_type = await client.post("/v1/load_lora_adapter", json={"lora_name": 1})
        get = await client.get("/v1/load_lora_adapter")
    assert empty.status_code == 400
    assert empty.json()["error"]["message"] == "Both 'lora_name' and 'lora_path' must be provided."
    assert nowhere.status_code == 404, nowhere.text
    assert "is not a directory" in nowhere.json()["error"]["message"]
    assert junk.status_code == 400
    assert "has no adapter_config.json" in junk.json()["error"]["message"]
    assert base.status_code == 400
    assert no_name.status_code == 400
    assert not_json.status_code == 400 and wrong_type.status_code == 400
    assert get.status_code == 405


async def test_the_routes_need_the_key(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.server.url) as client:
        load = await _load(client, "two", live.paths["two"])
        unload = await client.post(
            "/v1/unload_lora_adapter", json={"lora_name": "two"},
            headers={"Authorization": "Bearer wrong"},
        )  # fmt: skip
    assert load.status_code == 401 and unload.status_code == 401
    assert load.json() == {"error": "Unauthorized"}


async def test_without_the_flag_the_routes_are_404(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.plain.url) as client:
        load = await _load(client, "two", live.paths["two"])
        unload = await _unload(client, "two")
    assert load.status_code == 404 and unload.status_code == 404
    assert load.json()["error"]["message"] == "Not Found"


async def test_loads_while_requests_run(live: Live) -> None:
    """Base requests in a bounded loop while an adapter is loaded, used and unloaded twice:
    every request is answered 200, exactly."""
    async with live.client() as client:
        done = asyncio.Event()

        async def loop() -> list[httpx.Response]:
            answers = []
            while not done.is_set() and len(answers) < 200:
                answers.append(await _classify(client, BASE))
            return answers

        loops = [asyncio.create_task(loop()) for _ in range(4)]
        for _ in range(2):
            assert (await _load(client, "two", live.paths["two"])).status_code == 200
            adapter = await _classify(client, "two")
            assert max_abs_diff(_probs(adapter), live.expected["two"]) <= TOL
            assert (await _unload(client, "two")).status_code == 200
        done.set()
        answers = [a for task in loops for a in await task]
    assert answers
    for answer in answers:
        assert max_abs_diff(_probs(answer), live.expected[BASE]) <= TOL


async def test_unload_while_requests_wait(live: Live) -> None:
    """Requests for an adapter queued when it is unloaded: each is answered, 200 with the
    adapter's exact answer or 404 once it is gone; none hangs (the client's timeout)."""
    async with live.client() as client:
        assert (await _load(client, "two", live.paths["two"])).status_code == 200
        calls = [asyncio.create_task(_classify(client, "two")) for _ in range(24)]
        await asyncio.sleep(0.05)
        unload = asyncio.create_task(_unload(client, "two"))
        answers = await asyncio.wait_for(asyncio.gather(*calls), 90)
        assert (await asyncio.wait_for(unload, 30)).status_code == 200
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 400, 404}, statuses
    assert 200 in statuses
    for answer in answers:
        if answer.status_code == 200:
            assert max_abs_diff(_probs(answer), live.expected["two"]) <= TOL
