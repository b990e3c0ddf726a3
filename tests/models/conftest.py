"""Live classifyd servers, one per model, all in one child process (tests.live.Apps), and
what their answers are checked against."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.live import Apps, AppSpec, AppSpecs
from tests.support import max_abs_diff, probs_of


def serve_fleet(apps: AppSpecs, log: Path) -> Iterator[Apps]:
    """The apps in one child, fp32 on CPU as the references run, stopped afterwards; for a
    fixture to `yield from`."""
    fleet = Apps(
        {
            name: ({"dtype": "float32", "device": "cpu", **engine}, server)
            for name, (engine, server) in apps.items()
        },
        log,
    )
    try:
        yield fleet
    finally:
        fleet.stop()


def converted(lm_dir: Path, label_tokens: Sequence[str], **engine: Any) -> AppSpec:
    """An app serving a causal LM as a classifier over the logits of `label_tokens`."""
    spec = {"convert": "classify", "classifier_from_tokens": list(label_tokens), **engine}
    return {"model": str(lm_dir), **spec}, {}


@contextlib.contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """Run torch on `count` threads, then restore the setting. One thread for the references:
    on a 2-core machine shared with other work, two threads spin against each other and a
    135M-parameter forward gets ten times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def spread(rows: Sequence[Sequence[float]]) -> float:
    """The largest difference of one output between two texts: 0 when every text gets the
    same answer, which would make an exactness check vacuous."""
    return max(max(col) - min(col) for col in zip(*rows, strict=True))


async def three_ways(
    url: str, texts: list[str], chunks: tuple[int, ...], timeout: float = 120
) -> dict[str, list[list[float]]]:
    """The texts as one request, as concurrent singles, and in concurrent mixed sizes."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:

        async def classify(chunk: list[str]) -> list[list[float]]:
            return probs_of(await client.post("/classify", json={"input": chunk}))

        whole = await classify(texts)
        singles = await asyncio.gather(*(classify([t]) for t in texts))
        parts, start = [], 0
        for size in chunks:
            parts.append(texts[start : start + size])
            start += size
        assert start == len(texts)
        mixed = await asyncio.gather(*(classify(c) for c in parts))
    return {
        "one request": whole,
        "concurrent singles": [row for rows in singles for row in rows],
        "concurrent mixed sizes": [row for rows in mixed for row in rows],
    }


def assert_matches(
    got: dict[str, list[list[float]]], want: list[list[float]], tol: float = 1e-5
) -> None:
    for way, rows in got.items():
        diff = max_abs_diff(rows, want)
        assert diff <= tol, f"{way}: max |Δprob| = {diff:.2e} > {tol}"
