"""bench/lora.py end to end on a tiny BERT: every point measured, memory per adapter given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.loadgen import run_load
from bench.rawhttp import RawClient
from tests.builders import build_model, sentences


async def test_the_load_asks_for_each_model_in_turn(live_url: str) -> None:
    asked: list[str] = []
    original = RawClient.send

    async def capture(self: RawClient, request: bytes) -> tuple[int, bytes]:
        asked.append(json.loads(request.split(b"\r\n\r\n", 1)[1])["model"])
        return await original(self, request)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RawClient, "send", capture)
        result = await run_load(
            live_url, sentences(8), clients=1, seconds=30, max_requests=6, models=["x", "y"]
        )
    assert asked == ["x", "y"] * 3
    # Names the server does not serve: each request a 404, none counted as answered.
    assert result.errors == {"404": 6} and result.texts == 0


def test_every_point_is_measured(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from bench import lora

    model = build_model(tmp_path / "tiny", "bert", num_labels=2, seed=1, max_positions=512)
    # The tiny tokenizer splits finer than WordPiece: the bench's texts need its 512 positions.
    config = model / "tokenizer_config.json"
    config.write_text(
        config.read_text().replace('"model_max_length": 128', '"model_max_length": 512')
    )
    report = lora.main(
        [
            "--model", str(model), "--counts", "1", "4", "--clients", "4", "--seconds", "0.6",
            "--rounds", "2", "--num-texts", "64", "--threads", "1", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    rows = {row["point"]: row for row in report["points"]}
    assert list(rows) == ["base", "base-unpacked", "lora-1", "lora-4"]
    for row in rows.values():
        assert len(row["slices"]) == 2
        assert row["texts_per_s"] > 0 and row["errors"] == 0, row
        assert row["p50_ms"] <= row["p99_ms"]
    assert rows["base"]["x_base"] == pytest.approx(1.0)
    assert rows["lora-4"]["adapters"] == 4 and "rss_per_adapter_mb" in rows["lora-4"]
    # rank 8 on query/value: A and B per layer, plus the adapter's own head.
    assert report["adapter_bytes"]["lora"] > 0 and report["adapter_bytes"]["head"] > 0
    saved = json.loads((tmp_path / "lora.json").read_text())
    assert [r["point"] for r in saved["points"]] == list(rows)
    assert "| lora-4 |" in (tmp_path / "lora.md").read_text()
