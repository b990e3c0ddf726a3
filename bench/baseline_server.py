"""The naive baseline: a transformers pipeline behind a Starlette route, one request at a time.

    python -m bench.baseline_server --model DIR --port 8100

What people write first: `pipeline("text-classification")` called per request, serialised by
a lock (the pipeline is not safe to call concurrently), in a worker thread so the event loop
stays responsive. It answers the same `/classify` body as classifyd.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def build_app(model_dir: str, threads: int | None) -> Starlette:
    import torch
    from transformers import pipeline

    if threads:
        torch.set_num_threads(threads)
    classifier = pipeline("text-classification", model=model_dir, device="cpu", top_k=None)
    lock = threading.Lock()

    def run(texts: list[str]) -> Any:
        with lock:
            return classifier(texts)

    async def classify(request: Request) -> JSONResponse:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        results = await asyncio.to_thread(run, texts)
        data = []
        for index, scores in enumerate(results):
            best = max(scores, key=lambda s: s["score"])
            data.append(
                {"index": index, "label": best["label"], "probs": [s["score"] for s in scores]}
            )
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({})

    return Starlette(
        routes=[Route("/classify", classify, methods=["POST"]), Route("/health", health)]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    uvicorn.run(
        build_app(args.model, args.threads), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
