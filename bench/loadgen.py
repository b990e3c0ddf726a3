"""Load generator: closed loop (N clients) or open loop (a fixed rate), bounded in time.

    python -m bench.loadgen --url http://127.0.0.1:8000 --clients 64 --seconds 20
    python -m bench.loadgen --url http://127.0.0.1:8000 --rate 50 --texts-per-request 4

Reports texts/s, requests/s, latency percentiles, errors by status, and, given the server's
pid, the CPU it used (cores busy on average over the run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from bench.rawhttp import RawClient, RawHttpError
from bench.texts import MIXES
from server.runtime import run_on_uvloop

CLIENTS = ("raw", "httpx")
# One connection's send: request bytes in (a whole request for raw, a body for httpx),
# (status, body) out.
Sender = Callable[[bytes], Awaitable[tuple[int, bytes]]]


@dataclass
class LoadResult:
    mode: str
    clients: int
    rate: float | None
    texts_per_request: int
    seconds: float
    requests: int
    texts: int
    texts_per_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu_cores: float | None = None
    # The load generator's own CPU use: it shares the machine with the server.
    client_cpu_cores: float | None = None
    # texts/s of each slice of a closed loop run in slices (run_load's `slices`).
    slice_texts_per_s: list[float] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime + stime of the process and its waited-for children.
    return sum(int(x) for x in fields[11:15]) / ticks


def _take(idle: list[Sender], new: Callable[[], Sender]) -> Sender:
    return idle.pop() if idle else new()


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run_load(
    url: str,
    texts: list[str],
    *,
    clients: int = 1,
    rate: float | None = None,
    texts_per_request: int = 1,
    seconds: float = 10.0,
    max_requests: int | None = None,
    server_pid: int | None = None,
    path: str = "/classify",
    warmup_requests: int = 0,
    client: str = "raw",
    slices: int = 1,
    between: Callable[[], Awaitable[None]] | None = None,
    models: Sequence[str] = (),
) -> LoadResult:
    """Closed loop with `clients` workers, or open loop at `rate` requests/s when given.

    Request bodies are encoded once, up front, and each closed-loop client has a connection
    of its own. `client="raw"` (bench/rawhttp.py) costs a fraction of httpx's CPU per request,
    which matters because the generator shares the machine with the server it measures;
    `client="httpx"` measures through httpx, one pool per client (a shared pool's CPU cost
    per request grows with contention).

    slices > 1 (closed loop only) splits `seconds` into that many runs of the same clients and
    connections; between two, once every client has its answer, it awaits `between` (which
    bench/compare uses to read the ceiling while the server idles). Only the slices' own time
    counts: in texts/s, CPU use, and the slices' own rates. A closed loop's rates count the
    answers that came before its deadline, over the time to it (see close_window).
    """
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {CLIENTS}, not {client!r}")
    if slices < 1 or (slices > 1 and rate is not None):
        raise ValueError("slices: a positive count, and more than one only for a closed loop")
    chunks = [texts[i : i + texts_per_request] for i in range(0, len(texts), texts_per_request)]
    # `models`: request i asks for models[i % len(models)] (a uniform mix; bench/lora.py).
    encoded = [
        (json.dumps({"input": c, **({"model": models[i % len(models)]} if models else {})})
         .encode(), len(c))
        for i, c in enumerate(chunks)
    ]  # fmt: skip
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    sent_texts = 0

    async with contextlib.AsyncExitStack() as stack:
        if client == "raw":
            request = RawClient(url, path).encode
            bodies = itertools.cycle([(request(body), count) for body, count in encoded])

            def new_sender() -> Sender:
                raw = RawClient(url, path)
                stack.push_async_callback(raw.aclose)
                return raw.send

        else:
            bodies = itertools.cycle(encoded)
            headers = {"content-type": "application/json"}

            def new_sender() -> Sender:
                limits = httpx.Limits(max_connections=1, max_keepalive_connections=None)
                http = httpx.AsyncClient(base_url=url, timeout=120, limits=limits, headers=headers)
                stack.push_async_callback(http.aclose)

                async def send(body: bytes) -> tuple[int, bytes]:
                    resp = await http.post(path, content=body)
                    return resp.status_code, resp.content

                return send

        own = [new_sender() for _ in range(clients if rate is None else 0)]
        # Open loop: connections free for the next request (the warm-up's is the first).
        idle: list[Sender] = []
        if warmup_requests:
            warm = own[0] if own else new_sender()
            for _ in range(warmup_requests):
                await warm(next(bodies)[0])
            if not own:
                idle.append(warm)

        async def one(send: Sender, body: bytes, count: int) -> None:
            nonlocal sent_texts
            start = time.perf_counter()
            try:
                code, _ = await send(body)
                status = str(code)
            except (httpx.HTTPError, RawHttpError, OSError) as exc:
                status = type(exc).__name__
            if status == "200":
                now = time.perf_counter()
                latencies.append(now - start)
                answered.append((now, count))
                sent_texts += count
            else:
                statuses[status] += 1
            statuses["total"] += 1

        budget = itertools.count() if max_requests is None else iter(range(max_requests))
        # (when, texts) of each answer: the rates count those inside the load's window.
        answered: list[tuple[float, int]] = []
        # Summed over the slices: the time (all of it, and the windows), the server's and
        # our own CPU seconds.
        elapsed = window = cpu = own_cpu = 0.0
        counted_texts = counted_requests = 0
        slice_rates: list[float] = []

        def close_window(began: float, deadline: float) -> float:
            """Count the answers from `began` to the deadline, or to the last answer when the
            request budget ran out first. The answers still in flight at the deadline are
            left out, with the time they took: a closed loop's drain, where fewer and fewer
            clients wait, is not the load it measures. Returns the texts/s of the window."""
            nonlocal window, counted_texts, counted_requests
            end = min(deadline, time.perf_counter())
            inside = [count for when, count in answered if began <= when <= end]
            window += end - began
            counted_texts += sum(inside)
            counted_requests += len(inside)
            return sum(inside) / (end - began)

        if rate is None:
            deadline = 0.0

            async def worker(send: Sender) -> None:
                while time.perf_counter() < deadline and next(budget, None) is not None:
                    await one(send, *next(bodies))

            for index in range(slices):
                if index and between is not None:
                    await between()
                cpu_before = _cpu_seconds(server_pid) if server_pid else 0.0
                own_cpu_before = time.process_time()
                began = time.perf_counter()
                deadline = began + seconds / slices
                await asyncio.gather(*(worker(send) for send in own))
                took = time.perf_counter() - began
                elapsed += took
                cpu += _cpu_seconds(server_pid) - cpu_before if server_pid else 0.0
                own_cpu += time.process_time() - own_cpu_before
                slice_rates.append(close_window(began, deadline))
        else:
            cpu_before = _cpu_seconds(server_pid) if server_pid else 0.0
            own_cpu_before = time.process_time()
            began = time.perf_counter()
            deadline = began + seconds
            pending: set[asyncio.Task[None]] = set()
            interval = 1.0 / rate
            tick = began

            async def opened(body: bytes, count: int) -> None:
                # A free connection, or a new one: an open loop never waits for an answer.
                send = _take(idle, new_sender)
                try:
                    await one(send, body, count)
                finally:
                    idle.append(send)

            while tick < deadline and next(budget, None) is not None:
                delay = tick - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(opened(*next(bodies)))
                pending.add(task)
                task.add_done_callback(pending.discard)
                tick += interval
            await asyncio.gather(*pending)
            elapsed = time.perf_counter() - began
            cpu = _cpu_seconds(server_pid) - cpu_before if server_pid else 0.0
            own_cpu = time.process_time() - own_cpu_before
            # An open loop's answers count to the last: its senders never wait on them.
            close_window(began, float("inf"))

    ok = sorted(latencies)
    total = statuses.pop("total", 0)
    return LoadResult(
        mode="open" if rate else "closed",
        clients=clients,
        rate=rate,
        texts_per_request=texts_per_request,
        seconds=round(elapsed, 3),
        requests=total,
        texts=sent_texts,
        texts_per_s=counted_texts / window,
        requests_per_s=counted_requests / window,
        p50_ms=_percentile(ok, 0.50) * 1000,
        p90_ms=_percentile(ok, 0.90) * 1000,
        p99_ms=_percentile(ok, 0.99) * 1000,
        errors=dict(statuses),
        server_cpu_cores=round(cpu / elapsed, 3) if server_pid else None,
        client_cpu_cores=round(own_cpu / elapsed, 3),
        slice_texts_per_s=slice_rates,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--path", default="/classify")
    p.add_argument("--mix", choices=sorted(MIXES), default="short")
    p.add_argument("--num-texts", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--rate", type=float, default=None, help="open loop: requests per second")
    p.add_argument("--texts-per-request", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--max-requests", type=int, default=None)
    p.add_argument("--server-pid", type=int, default=None)
    p.add_argument("--client", choices=CLIENTS, default="raw",
                   help="raw: bench/rawhttp.py (least CPU); httpx: through httpx")  # fmt: skip
    args = p.parse_args()
    texts = MIXES[args.mix](args.num_texts, args.seed)
    # On uvloop, as the server runs: less CPU per request on the cores it shares.
    result = run_on_uvloop(
        run_load(
            args.url, texts, clients=args.clients, rate=args.rate,
            texts_per_request=args.texts_per_request, seconds=args.seconds,
            max_requests=args.max_requests, server_pid=args.server_pid, path=args.path,
            client=args.client,
        )
    )  # fmt: skip
    print(json.dumps(result.row(), indent=2))


if __name__ == "__main__":
    main()
