"""A bounded soak: valid, invalid, failing and abandoned requests against one server.

$RELIABILITY_SOAK_S seconds (default 60) of 8 concurrent clients. The fault hook fails every
batch holding a marker token, so valid prompts that share such a batch fail too; the hook's
record says which did, so every answer is checked exactly: each valid prompt carries a unique
three-word tag right after [CLS], which names its row in the record. Abandoning clients use
their own sockets and close them (FIN or RST) after a random moment, some before their body
was all sent.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.builders import WORDS
from tests.reliability.conftest import LiveServer
from tests.support import assert_error, assert_tei_error

SOAK_S = float(os.environ.get("RELIABILITY_SOAK_S", "60"))
CLIENTS = 8
MAX_PER_CLIENT = 20_000  # bounds the loop in count as well as in time
RSS_GROWTH_KIB = 16 * 1024

WORD_LIST = sorted(set(WORDS))

# path, body, expected status, error type and param
BAD: list[tuple[str, Any, int, str, str | None]] = [
    ("/classify", b"{not json", 400, "BadRequestError", None),
    ("/classify", {"input": ""}, 400, "BadRequestError", "input"),
    ("/classify", {"input": ["fine", ""]}, 400, "BadRequestError", "input[1]"),
    ("/classify", {"input": [[2, 10**6, 3]]}, 400, "BadRequestError", "input[0]"),
    ("/classify", {"input": [[2, -1, 3]]}, 400, "BadRequestError", "input[0]"),
    ("/classify", {"input": 5}, 400, "BadRequestError", "input"),
    ("/classify", {"input": " ".join(["movie"] * 200)}, 400, "BadRequestError", "input_tokens"),
    ("/classify", {"input": "fine", "model": "nope"}, 404, "NotFoundError", None),
    ("/classify", {"input": "fine", "normalize": True}, 400, "BadRequestError", "normalize"),
    # TEI's route, TEI's envelope: the kind stands where the type does, and no param.
    ("/predict", {"inputs": []}, 422, "Validation", None),
]


@dataclass
class Shot:
    request_id: str
    kind: str  # "valid" | "fail" | "bad"
    prompts: int = 0
    keys: list[tuple[int, ...]] = field(default_factory=list)
    expect: tuple[int, str, str | None] | None = None
    # A TEI route: its errors come in TEI's envelope.
    tei: bool = False
    aborted: bool = False
    response: httpx.Response | None = None
    error: str | None = None


async def test_soak(soak_server: LiveServer) -> None:
    s = soak_server
    v = s.vocab
    fail = v.marker("x")
    words = [v.word(w) for w in WORD_LIST]
    s.set_faults(fail_marker=fail)
    failed_before = s.metric("classifyd_failed_batches_total")
    counter = iter(range(10**9))

    def tag() -> tuple[int, int, int]:
        """A new three-word tag (indexes into WORD_LIST): no two prompts share one."""
        n = next(counter)
        size = len(WORD_LIST)
        return (n // size**2 % size, n // size % size, n % size)

    def valid(rng: random.Random, shot: Shot) -> tuple[str, Any]:
        count = rng.choice((1, 1, 1, 2, 3))
        shot.prompts = count
        tags = [tag() for _ in range(count)]
        shot.keys = [tuple(words[i] for i in t) for t in tags]
        tails = [[rng.randrange(len(words)) for _ in range(rng.randrange(0, 40))] for _ in tags]
        if rng.random() < 0.7:
            texts = [
                " ".join(WORD_LIST[i] for i in (*t, *tail))
                for t, tail in zip(tags, tails, strict=True)
            ]
            return "/classify", {"input": texts if count > 1 or rng.random() < 0.5 else texts[0]}
        rows = [
            v.row(*(words[i] for i in (*t, *tail))) for t, tail in zip(tags, tails, strict=True)
        ]
        return "/classify", {"input": rows}

    def failing(rng: random.Random, shot: Shot) -> tuple[str, Any]:
        rows = [v.row(fail, *rng.sample(words, rng.randrange(0, 20)))]
        if rng.random() < 0.5:  # a healthy sibling prompt beside the failing one
            rows.append(v.row(*(words[i] for i in tag()), *rng.sample(words, 5)))
        shot.expect = (500, "InternalServerError")
        return "/classify", {"input": rows}

    shots: list[Shot] = []
    end = time.monotonic() + SOAK_S
    limits = httpx.Limits(max_connections=CLIENTS * 2)
    async with httpx.AsyncClient(base_url=s.url, timeout=30, limits=limits) as client:

        async def send(shot: Shot, path: str, body: Any) -> None:
            headers = {"x-request-id": shot.request_id, "content-type": "application/json"}
            content = (
                body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
            )
            try:
                shot.response = await client.post(path, content=content, headers=headers)
            except httpx.TransportError as exc:
                shot.error = repr(exc)

        async def abandon(
            shot: Shot, path: str, body: Any, after: float, reset: bool, partial: bool
        ) -> None:
            """Send the request on a fresh socket (with `partial`, only half its body) and
            close it after `after` seconds, unless the answer came first (then it is checked
            like any other)."""
            content = httpx.Request("POST", "/", json=body).content
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{s.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(content)}\r\n"
                f"X-Request-Id: {shot.request_id}\r\n\r\n"
            ).encode()
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            try:
                writer.write(head + (content[: len(content) // 2] if partial else content))
                await writer.drain()
                try:
                    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), after)
                except TimeoutError:
                    shot.aborted = True
                    return
                lines = raw.decode("latin-1").split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines[1:] if line)
                length = int(headers.get("content-length", "0"))
                payload = await asyncio.wait_for(reader.readexactly(length), 30)
                shot.response = httpx.Response(
                    int(lines[0].split()[1]), headers=headers, content=payload
                )
            finally:
                if reset:
                    writer.transport.abort()  # RST, as a crashed client
                else:
                    writer.close()

        async def run(k: int) -> None:
            rng = random.Random(1000 + k)
            for n in range(MAX_PER_CLIENT):
                if time.monotonic() > end:
                    return
                roll = rng.random()
                shot = Shot(f"soak-{k}-{n}", "valid")
                if roll < 0.55:
                    path, body = valid(rng, shot)
                elif roll < 0.65:
                    shot.kind = "fail"
                    path, body = failing(rng, shot)
                elif roll < 0.82:
                    shot.kind = "bad"
                    path, body, status, type_, param = rng.choice(BAD)
                    shot.expect = (status, type_, param)
                    shot.tei = path == "/predict"
                else:
                    # A client that gives up after a random moment (its own socket: httpcore
                    # 1.0.9 leaks pool slots when a request is cancelled while connecting).
                    path, body = valid(rng, shot)
                    await abandon(
                        shot,
                        path,
                        body,
                        rng.uniform(0, 0.03),
                        reset=rng.random() < 0.5,
                        partial=rng.random() < 0.2,
                    )
                    shots.append(shot)
                    continue
                await send(shot, path, body)
                shots.append(shot)

        rss: list[tuple[float, int]] = []

        async def sample() -> None:
            began = time.monotonic()
            while time.monotonic() < end:
                rss.append((time.monotonic() - began, s.rss_kib()))
                await asyncio.sleep(1)

        sampler = asyncio.create_task(sample())
        await asyncio.wait_for(asyncio.gather(*(run(k) for k in range(CLIENTS))), SOAK_S + 60)
        await sampler

    await asyncio.to_thread(s.wait_gauges_zero)
    assert s.client.get("/health").status_code == 200
    batches = s.batches()
    failed_rows = {tuple(row[1:4]) for b in batches if b["outcome"] == "fail" for row in b["rows"]}

    # Every request that was not abandoned got the answer it should have.
    answered = [shot for shot in shots if not shot.aborted]
    assert len(answered) > 200, f"only {len(answered)} requests in {SOAK_S:g} s"
    for shot in answered:
        assert shot.error is None, (shot.request_id, shot.error)
        response = shot.response
        assert response is not None
        assert response.headers.get("x-request-id") == shot.request_id
        if shot.kind == "valid":
            if any(key in failed_rows for key in shot.keys):
                assert_error(response, 500, "InternalServerError")
            else:
                assert response.status_code == 200, (shot.request_id, response.text[:300])
                assert len(response.json()["data"]) == shot.prompts
        else:
            assert shot.expect is not None
            if shot.tei:
                assert_tei_error(response, shot.expect[0], shot.expect[1])
            else:
                assert_error(response, *shot.expect)
    kinds = {shot.kind for shot in answered}
    assert kinds == {"valid", "fail", "bad"}, kinds
    assert any(shot.aborted for shot in shots), "no request was abandoned mid-flight"

    # ...exactly once: one access line per request, with the status the client saw.
    lines: dict[str, list[int]] = {}
    for line in s.access_logs():
        lines.setdefault(str(line["request_id"]), []).append(line["status"])
    for shot in shots:
        got = lines.get(shot.request_id, [])
        if shot.aborted:
            assert len(got) <= 1, (shot.request_id, got)
        else:
            assert shot.response is not None
            assert got == [shot.response.status_code], (shot.request_id, got)

    # Memory stays flat: the second half's peak is within a small bound of the first's.
    half = SOAK_S / 2
    first = [kib for t, kib in rss if t < half]
    second = [kib for t, kib in rss if t >= half]
    assert first and second, rss
    growth = max(second) - max(first)
    assert growth <= RSS_GROWTH_KIB, f"RSS grew {growth} KiB in the second half: {rss}"

    # The only errors logged are the injected failures, one per failed batch.
    fails = [b for b in batches if b["outcome"] == "fail"]
    assert fails, "the fault hook never fired"
    assert s.metric("classifyd_failed_batches_total") - failed_before == len(fails)
    errors = [r for r in s.json_logs() if r.get("level") in ("error", "critical")]
    unexplained = [
        r
        for r in errors
        if not (
            r.get("logger") == "classifyd.worker"
            and r["message"].startswith("forward failed on a batch of")
            and "injected failure" in r["message"]
        )
    ]
    assert unexplained == [], (
        f"{len(unexplained)} unexplained ERROR lines, e.g.",
        [
            (r["logger"], r["message"], r.get("exc_info", "").splitlines()[-1:])
            for r in unexplained[:3]
        ],
    )
    assert len(errors) == len(fails)
    print(
        f"soak: {len(shots)} requests ({sum(s.aborted for s in shots)} abandoned), "
        f"{len(batches)} batches ({len(fails)} failed), RSS {rss[0][1]} -> {rss[-1][1]} KiB, "
        f"growth {growth} KiB"
    )
