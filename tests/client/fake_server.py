"""A scripted stand-in for classifyd's POST /classify, run by the client tests in a child
process (`python -m tests.client.fake_server PORT`).

POST /_control {"script": [...], "delay": s} sets what the next requests get, in order, and
clears the figures; then each request takes the next action ("ok" once the script is used up):
  "ok"            200; each result's label is its text, so order is checkable
  "429"           429 envelope, no Retry-After;  "429:S" the same with Retry-After: S
  "503"           503 envelope with Retry-After: 0
  "drop"          the connection is closed in the middle of a 200 response
Any text "BAD" in a request makes it a 400 naming `input[i]`, as classifyd does for an
empty string; a text of more than 4 words, a 400 naming `input_tokens` (over-long), which
POST /tokenize counts in words. GET /_stats: requests, the most seen at once, batch sizes,
connections used, Authorization headers.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

STATE: dict[str, Any] = {}
MAX_WORDS = 4


def reset(script: list[str], delay: float) -> None:
    STATE.update(
        script=list(script), delay=delay, requests=0, active=0, max_active=0, sizes=[],
        connections=set(), auth=[],
    )  # fmt: skip


reset([], 0.0)


def _error(status: int, type_: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": status}}


class Classify:
    """A raw ASGI endpoint: "drop" needs to leave a response unfinished."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        STATE["requests"] += 1
        STATE["sizes"].append(len(texts))
        STATE["connections"].add(tuple(scope["client"] or ()))
        STATE["auth"].append(request.headers.get("authorization"))
        STATE["active"] += 1
        STATE["max_active"] = max(STATE["max_active"], STATE["active"])
        try:
            await asyncio.sleep(STATE["delay"])
            action = STATE["script"].pop(0) if STATE["script"] else "ok"
            response = self._answer(action, texts, body)
            if response is None:  # "drop": half a response, then the connection closes
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", b"1000")]})  # fmt: skip
                await send({"type": "http.response.body", "body": b'{"id": "', "more_body": True})
                return
        finally:
            STATE["active"] -= 1
        await response(scope, receive, send)

    def _answer(self, action: str, texts: list[str], body: dict[str, Any]) -> Response | None:
        if action == "drop":
            return None
        if action.startswith("429"):
            _, _, after = action.partition(":")
            headers = {"retry-after": after} if after else {}
            return JSONResponse(
                _error(429, "OverloadedError", "The server is at capacity."), 429, headers
            )
        if action == "503":
            return JSONResponse(
                _error(503, "ServiceUnavailableError", "The engine is not ready."),
                503,
                {"retry-after": "0"},
            )
        if "BAD" in texts:
            i = texts.index("BAD")
            return JSONResponse(
                _error(400, "BadRequestError", f"`input[{i}]` is bad.", f"input[{i}]"), 400
            )
        for i, text in enumerate(texts):
            if len(text.split()) > MAX_WORDS:
                message = f"Input {i} has {len(text.split())} tokens, more than {MAX_WORDS}."
                return JSONResponse(_error(400, "BadRequestError", message, "input_tokens"), 400)
        if body.get("truncate_prompt_tokens") == 10**6:
            return JSONResponse(
                _error(400, "BadRequestError", "too many", "truncate_prompt_tokens"), 400
            )
        data = [
            {"index": i, "label": t, "probs": [len(t) / 100], "num_classes": 1}
            for i, t in enumerate(texts)
        ]
        tokens = sum(len(t.split()) for t in texts)
        answer = {
            "id": "classify-fake",
            "object": "list",
            "created": 0,
            "model": body.get("model") or "fake",
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return JSONResponse(answer)


async def tokenize(request: Request) -> Response:
    words = (await request.json())["prompt"].split()
    return JSONResponse(
        {"tokens": list(range(len(words))), "count": len(words), "max_model_len": MAX_WORDS}
    )


async def control(request: Request) -> Response:
    body = await request.json()
    reset(body.get("script", []), float(body.get("delay", 0.0)))
    return Response(status_code=204)


async def stats(request: Request) -> Response:
    out = {k: v for k, v in STATE.items() if k != "connections"}
    out["connections"] = len(STATE["connections"])
    return Response(json.dumps(out), media_type="application/json")


app = Starlette(
    routes=[
        Route("/classify", Classify(), methods=["POST"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/_control", control, methods=["POST"]),
        Route("/_stats", stats, methods=["GET"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="critical")
