"""`classifyd serve --model org/name` and `classifyd classify --model org/name` in child
processes, downloading from the fake Hub (tests/fakehub.py) through HF_ENDPOINT: served like
the local directory under the id's name, a missing repo a one-line error and exit 1, and a
second run from the cache with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import live
from tests.fakehub import FakeHub, files_of
from tests.support import max_abs_diff, probs_of

QUIET = ["--num-threads", "1", "--log-level", "warning"]


@pytest.fixture(scope="module")
def hub(bert_dir: Path) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add("org/tiny", files_of(bert_dir, {"pytorch_model.bin": b"never fetched"}))
        yield fake


def _env(hub: FakeHub, home: Path, **extra: str) -> dict[str, str]:
    env = live.child_env(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_OFFLINE="0", **extra)
    env.pop("HF_TOKEN", None)
    return env


def test_serve_a_hub_id(
    hub: FakeHub, tmp_path: Path, texts: list[str], reference: list[list[float]]
) -> None:
    home = tmp_path / "hf"
    # Both children start before either is waited on: their torch imports overlap.
    server = live.serve(["--model", "org/tiny", *QUIET], tmp_path / "serve.log", _env(hub, home))
    missing = live.serve(["--model", "org/missing", *QUIET], tmp_path / "missing.log",
                         _env(hub, home))  # fmt: skip
    try:
        server.wait_ready()
        models = httpx.get(f"{server.url}/v1/models").json()
        assert [card["id"] for card in models["data"]] == ["org/tiny"]
        assert httpx.get(f"{server.url}/info").json()["model"] == "org/tiny"
        answer = httpx.post(
            f"{server.url}/classify", json={"model": "org/tiny", "input": texts[:20]}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        assert max_abs_diff(probs_of(answer), reference[:20]) <= 1e-5
        snapshots = list((home / "hub" / "models--org--tiny" / "snapshots").iterdir())
        assert len(snapshots) == 1
        assert not (snapshots[0] / "pytorch_model.bin").exists()

        assert missing.proc.wait(180) == 1
        lines = [ln for ln in missing.log_text().splitlines() if ln.startswith("classifyd")]
        assert lines == [
            "classifyd serve: No local directory and no Hugging Face Hub model 'org/missing'; "
            "check the name, or set HF_TOKEN if it is a private repo."
        ], missing.tail()
        assert "Traceback" not in missing.log_text()
    finally:
        live.stop(server, missing)


def test_classify_a_hub_id_then_offline_from_the_cache(
    hub: FakeHub, tmp_path: Path, texts: list[str], reference: list[list[float]]
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts[:10]) + "\n")
    downloads = tmp_path / "downloads"
    home = tmp_path / "hf"
    for offline in ("0", "1"):
        out = tmp_path / f"out-{offline}.jsonl"
        args = ["cli", "classify", "--model", "org/tiny", "--download-dir", str(downloads),
                str(source), "-o", str(out), "--num-threads", "1"]  # fmt: skip
        env = {**_env(hub, home), "HF_HUB_OFFLINE": offline}
        asked = len(hub.requests)
        child = live.spawn(args, tmp_path / f"classify-{offline}.log", env)
        assert child.proc.wait(180) == 0, child.tail()
        assert (len(hub.requests) == asked) == (offline == "1")
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert max_abs_diff([r["probs"] for r in rows], reference[:10]) <= 1e-5
        # --download-dir, not HF_HOME, holds the download.
        assert (downloads / "models--org--tiny").is_dir()
        assert not (home / "hub" / "models--org--tiny").exists()
    # Offline and not cached: one sentence, exit 1.
    out = tmp_path / "never.jsonl"
    args = ["cli", "classify", "--model", "org/tiny", str(source), "-o", str(out)]
    child = live.spawn(args, tmp_path / "uncached.log", {**_env(hub, home), "HF_HUB_OFFLINE": "1"})
    assert child.proc.wait(180) == 1, child.tail()
    assert "Cannot reach the Hugging Face Hub and 'org/tiny' is not" in child.log_text()
