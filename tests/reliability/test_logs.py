"""--log-format json: one JSON line per model request, with the id the client saw."""

from __future__ import annotations

import json

from tests.reliability.conftest import LiveServer
from tests.support import wait_until

PHASES = ("tokenize_ms", "queue_ms", "inference_ms", "total_ms")


def test_one_json_line_per_request_with_its_id(chaos_server: LiveServer) -> None:
    s = chaos_server
    c = s.client
    calls = [
        c.post(
            "/classify", json={"input": "the movie was great"}, headers={"x-request-id": "log-1"}
        ),
        c.post("/classify", json={"input": ["dull plot", "lovely music and story"]}),
        c.post("/classify", json={"input": "fine", "request_id": "log-body-id"}),
        c.post("/v1/classify", json={"input": [[2, 10, 3]]}, headers={"x-request-id": "log-ids"}),
        c.post("/predict", json={"inputs": "the film was bad"}),
        c.post("/score", json={"text_1": "great film", "text_2": ["loved it", "hated it"]}),
        c.post("/rerank", json={"query": "movie", "documents": ["great", "awful ending"]}),
        c.post("/tokenize", json={"prompt": "the movie"}, headers={"x-request-id": "log-tok"}),
        c.post("/classify", json={"input": ""}, headers={"x-request-id": "log-bad"}),
        c.post("/classify", content=b"{not json", headers={"x-request-id": "log-not-json"}),
        c.post("/classify", json={"input": "x", "model": "nope"}),
    ]
    # Every model route echoes the request id, so a client can find its log line.
    missing = [r.request.url.path for r in calls if "x-request-id" not in r.headers]
    assert missing == [], f"responses without x-request-id: {missing}"
    ids = [r.headers["x-request-id"] for r in calls]
    assert len(set(ids)) == len(ids), ids
    assert ids[0] == "log-1" and ids[2] == "log-body-id" and ids[3] == "log-ids"

    def lines() -> dict[str, list[dict]] | None:
        by_id: dict[str, list[dict]] = {}
        for line in s.access_logs():
            by_id.setdefault(line["request_id"], []).append(line)
        return by_id if all(i in by_id for i in ids) else None

    by_id = wait_until(lines, 10, "an access line for every request")
    for response, request_id in zip(calls, ids, strict=True):
        (line,) = by_id[request_id]  # exactly one
        assert line["status"] == response.status_code, (line, response.text)
        assert line["level"] == "info" and isinstance(line["ts"], str)
        assert line["path"] == response.request.url.path
        assert isinstance(line["ms"], float | int) and line["ms"] >= 0
        body = response.json()
        if response.status_code >= 400 or response.request.url.path == "/tokenize":
            continue
        for phase in PHASES:
            assert isinstance(line[phase], float | int) and line[phase] >= 0, (phase, line)
        assert line["total_ms"] <= line["ms"] + 1
        usage = body["usage"] if isinstance(body, dict) else None
        if usage is not None:
            assert line["tokens"] == usage.get("prompt_tokens", usage["total_tokens"]), line
        assert line["tokens"] > 0 and line["prompts"] >= 1
    # Errors carry their id too, and their status.
    assert [by_id[i][0]["status"] for i in ids[-3:]] == [400, 400, 404]

    # After start-up every line the server writes is JSON.
    text = s.log_text()
    started = text.index('{"ts"')
    for raw in text[started:].splitlines():
        json.loads(raw)
