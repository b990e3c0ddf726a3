"""Live scale-out test: two replicas behind nginx, scraped by Prometheus, one killed and one
drained under load, with no client errors; then the dashboard's queries must return data.

    python deploy/tests/live_scaleout.py [--state DIR] [--clients 8]

It runs deploy/single-host/run.sh (the recipe the README gives operators) on 127.0.0.1 ports
it picks, with a tiny BERT built on the spot (tests/builders.py), and:

1. drives a closed loop of classify requests through nginx for the whole test;
2. kills one replica with SIGKILL (in-flight requests lose their connection: nginx retries
   them on the other replica), waits for run.sh to restart it and for it to be ready;
3. sends the other replica a request that stalls 3 s in its forward (live_hooks.py), then
   SIGTERMs it: /ready must turn 503 while /health stays 200, the stalled request must still
   get its 200, new requests reaching it get 503 and are retried, and it must exit 0;
4. asserts every client request got 200, then queries Prometheus for every target of every
   panel of deploy/grafana/classifyd.json (variables substituted) over the test's window.

Everything listens on 127.0.0.1, every wait has a deadline, and the processes are stopped on
exit. Prints a JSON summary; exits 1 on any failed check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

DEPLOY = Path(__file__).resolve().parent.parent
ROOT = DEPLOY.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DEPLOY / "tests"))

import live_hooks  # noqa: E402

SCRAPE = "1s"
# $__rate_interval for the dashboard's queries: several scrapes at 1 s.
RATE_INTERVAL = "10s"


class CheckFailed(Exception):
    pass


def free_ports(count: int) -> list[int]:
    """`count` ports free right now on 127.0.0.1 (bound, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (run.sh numbers replicas from one port)."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(20000, 60000)
        try:
            sockets = []
            for port in range(first, first + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise CheckFailed("no consecutive free ports found")


async def wait_for(what: str, probe: Any, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await probe()
            if last:
                return last
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        await asyncio.sleep(interval)
    raise CheckFailed(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


class Cluster:
    """run.sh and what it started: replicas, nginx, Prometheus."""

    def __init__(self, state: Path, model: Path, clients: int) -> None:
        self.state = state
        self.model = model
        self.first_port = consecutive_free_ports(2)
        self.ports = [self.first_port, self.first_port + 1]
        self.nginx_port, self.prom_port = free_ports(2)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        # The replicas import the stall hook from deploy/tests, and run this checkout's code
        # (an editable install maps only the packages pyproject.toml lists).
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(DEPLOY / "tests"), str(ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("CLASSIFYD_BIN", str(Path(sys.executable).parent / "classifyd"))
        cmd = [
            "bash", str(DEPLOY / "single-host" / "run.sh"),
            "--model", str(self.model), "--replicas", "2",
            "--first-port", str(self.first_port),
            "--listen", f"127.0.0.1:{self.nginx_port}",
            "--prometheus", f"127.0.0.1:{self.prom_port}",
            "--scrape-interval", SCRAPE, "--state", str(self.state),
            "--",
            # Two replicas share this machine's cores: one torch thread each.
            "--num-threads", "1", "--log-level", "warning",
            "--shutdown-timeout", "20",
            "--fault-hook", "live_hooks:stall_on_marker",
        ]  # fmt: skip
        log = open(self.state / "run.log", "ab")  # noqa: SIM115 (kept open for the child)
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def stop(self) -> None:
        """SIGTERM run.sh (it drains the replicas), then make sure its group is gone."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=45)
        # Whatever is left of its process group (the replicas are in it too).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def pid(self, port: int) -> int:
        # run.sh renames the file into place, so it is whole whenever it exists.
        return int((self.state / f"replica-{port}.pid").read_text())

    def events(self) -> str:
        path = self.state / "events.log"
        return path.read_text() if path.exists() else ""

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    @property
    def nginx(self) -> str:
        return self.url(self.nginx_port)

    @property
    def prometheus(self) -> str:
        return self.url(self.prom_port)


async def ready(client: httpx.AsyncClient, url: str) -> bool:
    return (await client.get(f"{url}/ready", timeout=2)).status_code == 200


class Load:
    """A closed loop of `clients` workers sending 1-4 texts per request through nginx."""

    def __init__(self, url: str, clients: int) -> None:
        from tests.builders import sentences

        self.url = url
        self.clients = clients
        self.texts = sentences(512, seed=3, max_words=40)
        self.statuses: Counter[str] = Counter()
        self.failures: list[dict[str, Any]] = []
        self.timeline: list[tuple[float, str]] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(base_url=self.url, timeout=30, limits=limits) as client:
            await asyncio.gather(*(self._worker(client, i) for i in range(self.clients)))

    async def _worker(self, client: httpx.AsyncClient, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop.is_set():
            batch = rng.sample(self.texts, rng.randint(1, 4))
            try:
                resp = await client.post("/classify", json={"input": batch})
                status = str(resp.status_code)
                if resp.status_code == 200 and len(resp.json()["data"]) != len(batch):
                    status = "wrong-answer"
                detail = resp.text[:300]
            except httpx.HTTPError as exc:
                status, detail = type(exc).__name__, str(exc)
            self.statuses[status] += 1
            self.timeline.append((time.time(), status))
            if status != "200":
                self.failures.append({"t": time.time(), "status": status, "detail": detail})

    def stop(self) -> None:
        self._stop.set()

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


async def chaos(cluster: Cluster, load: Load, report: dict[str, Any]) -> None:
    victim, drained = cluster.ports
    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.sleep(5)
        before = load.total

        # -- 1. SIGKILL one replica under load ------------------------------------------------
        pid = cluster.pid(victim)
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)

        async def restarted() -> bool:
            return cluster.pid(victim) != pid and await ready(client, cluster.url(victim))

        await wait_for(f"replica {victim} to be restarted and ready", restarted, 120)
        report["kill"] = {
            "replica": victim,
            "pid": pid,
            "requests_before": before,
            "back_ready_after_s": round(time.time() - killed_at, 1),
            "requests_while_down": load.total - before,
        }
        await asyncio.sleep(3)

        # -- 2. Drain the other one, with a slow request admitted ----------------------------
        marker = [live_hooks.MARKER_ID] * live_hooks.MARKER_COUNT
        slow = asyncio.create_task(
            client.post(f"{cluster.url(drained)}/classify", json={"input": [marker]}, timeout=30)
        )
        # Until the slow request is admitted and its batch is in the hook.
        await asyncio.sleep(1.0)
        pid = cluster.pid(drained)
        before = load.total
        drained_at = time.time()
        os.kill(pid, signal.SIGTERM)
        await asyncio.sleep(0.3)
        ready_status = (await client.get(f"{cluster.url(drained)}/ready")).status_code
        health_status = (await client.get(f"{cluster.url(drained)}/health")).status_code
        direct = await client.post(f"{cluster.url(drained)}/classify", json={"input": ["hello"]})
        slow_resp = await slow
        exit_line = re.compile(rf"replica {drained} pid={pid} exited rc=(\d+)")

        async def exited() -> re.Match[str] | None:
            return exit_line.search(cluster.events())

        match = await wait_for(f"replica {drained} to exit", exited, 30)
        exited_after = time.time() - drained_at

        async def back() -> bool:
            return cluster.pid(drained) != pid and await ready(client, cluster.url(drained))

        await wait_for(f"replica {drained} to be restarted and ready", back, 120)
        report["drain"] = {
            "replica": drained,
            "pid": pid,
            "ready_while_draining": ready_status,
            "health_while_draining": health_status,
            "new_request_while_draining": direct.status_code,
            "admitted_slow_request": slow_resp.status_code,
            "exit_code": int(match.group(1)),
            "exited_after_s": round(exited_after, 1),
            "requests_during_drain_and_restart": load.total - before,
        }
        await asyncio.sleep(3)
    load.stop()


def expect(report: dict[str, Any], name: str, ok: bool, detail: Any) -> None:
    report.setdefault("checks", {})[name] = "ok" if ok else f"FAILED: {detail}"


def nginx_retries(state: Path) -> dict[str, Any]:
    """What nginx did: requests per upstream, and requests that tried more than one."""
    log = state / "nginx" / "access.log"
    served: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        if '"POST /classify' not in line:
            continue
        m = re.search(r'upstream="([^"]*)" upstream_status="([^"]*)"', line)
        if not m:
            continue
        addrs = [a.strip() for a in m.group(1).split(",")]
        codes = [c.strip() for c in m.group(2).split(",")]
        served[addrs[-1]] += 1
        if len(addrs) > 1:
            retried[" then ".join(codes)] += 1
    return {"served_by": dict(served), "retried_by_first_answers": dict(retried)}


def dashboard_queries(path: Path) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) for every target, with the dashboard's variables filled as
    Grafana would for this setup: every namespace and instance, job "classifyd"."""
    values = {
        "namespace": ".*",
        "job": "classifyd",
        "instance": ".*",
        "__rate_interval": RATE_INTERVAL,
        "__interval": SCRAPE,
        "datasource": "prometheus",
    }
    dash = json.loads(path.read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = re.sub(
                r"\$\{(\w+)\}|\$(\w+)",
                lambda m: values[m.group(1) or m.group(2)],
                target["expr"],
            )
            out.append((panel["title"], target["refId"], expr))
    return out


async def check_prometheus(
    cluster: Cluster, start: float, end: float, report: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=cluster.prometheus, timeout=10) as client:
        targets = (await client.get("/api/v1/targets")).json()["data"]["activeTargets"]
        report["prometheus_targets"] = {t["scrapeUrl"]: t["health"] for t in targets}
        results: dict[str, str] = {}
        for title, ref, expr in dashboard_queries(DEPLOY / "grafana" / "classifyd.json"):
            body = (
                await client.get(
                    "/api/v1/query_range",
                    params={"query": expr, "start": start, "end": end, "step": "1s"},
                )
            ).json()
            series = body.get("data", {}).get("result", []) if body["status"] == "success" else []
            finite = [
                float(v)
                for s in series
                for _, v in s["values"]
                if not math.isnan(float(v)) and not math.isinf(float(v))
            ]
            key = f"{title} [{ref}]"
            if body["status"] != "success":
                results[key] = f"error: {body.get('error')}"
            elif not finite:
                results[key] = f"no data: {expr}"
            else:
                results[key] = f"{len(series)} series, max {max(finite):g}"
        report["dashboard"] = results
        missing = {k: v for k, v in results.items() if not re.match(r"\d+ series", v)}
        expect(report, "every dashboard query returns data", not missing, missing)


async def main_async(args: argparse.Namespace, state: Path, report: dict[str, Any]) -> None:
    from tests.builders import build_model

    began = time.time()
    model = build_model(state / "model", "bert", num_labels=2, labels=["negative", "positive"])
    report["model_build_s"] = round(time.time() - began, 1)
    cluster = Cluster(state, model, args.clients)
    try:
        cluster.start()
        async with httpx.AsyncClient(timeout=5) as client:

            async def all_ready() -> bool:
                if "exited" in cluster.events():
                    raise CheckFailed("a replica exited while starting (see its log below)")
                nginx_ok = (await client.get(f"{cluster.nginx}/nginx-health")).status_code == 200
                ups = [await ready(client, cluster.url(p)) for p in cluster.ports]
                return nginx_ok and all(ups)

            await wait_for("replicas and nginx", all_ready, 300)

            async def scraped() -> bool:
                resp = await client.get(f"{cluster.prometheus}/api/v1/targets")
                active = resp.json()["data"]["activeTargets"]
                return len(active) == 2 and all(t["health"] == "up" for t in active)

            await wait_for("Prometheus to scrape both replicas", scraped, 60)
        report["startup_s"] = round(time.time() - began, 1)

        load = Load(cluster.nginx, args.clients)
        load_start = time.time()
        load_task = asyncio.create_task(load.run())
        try:
            await asyncio.wait_for(chaos(cluster, load, report), args.deadline)
        finally:
            load.stop()
            await asyncio.wait_for(load_task, 60)
        load_end = time.time()
        seconds = load_end - load_start
        report["load"] = {
            "clients": args.clients,
            "seconds": round(seconds, 1),
            "requests": load.total,
            "requests_per_s": round(load.total / seconds, 1),
            "statuses": dict(load.statuses),
            "first_failures": load.failures[:5],
        }
        report["nginx"] = nginx_retries(state)
        errors = load.total - load.statuses["200"]
        expect(report, "zero client errors", errors == 0, f"{errors} of {load.total}")
        expect(report, "load ran", load.total >= 200, f"only {load.total} requests")
        drain = report["drain"]
        expect(report, "drain: /ready 503", drain["ready_while_draining"] == 503, drain)
        expect(report, "drain: /health 200", drain["health_while_draining"] == 200, drain)
        expect(report, "drain: new work 503", drain["new_request_while_draining"] == 503, drain)
        expect(report, "drain: admitted answered", drain["admitted_slow_request"] == 200, drain)
        expect(report, "drain: exit 0", drain["exit_code"] == 0, drain)
        served = report["nginx"]["served_by"]
        expect(report, "both replicas served", len(served) == 2, served)
        # Two scrapes after the end, so the last seconds are in.
        await asyncio.sleep(2.5)
        await check_prometheus(cluster, load_start, time.time(), report)
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, help="keep the state here (default: temporary)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--deadline", type=float, default=300, help="seconds for the chaos part")
    args = parser.parse_args()
    state = args.state or Path(tempfile.mkdtemp(prefix="classifyd-live-"))
    state.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"state": str(state)}
    try:
        asyncio.run(main_async(args, state, report))
    except CheckFailed as exc:
        expect(report, "run", False, exc)
    print(json.dumps(report, indent=2))
    failed = [k for k, v in report.get("checks", {}).items() if v != "ok"]
    if failed:
        # What the processes said, since the state directory may not outlive the caller.
        logs = [state / "run.log", state / "events.log", state / "nginx" / "error.log"]
        logs += [*sorted(state.glob("replica-*.log")), state / "prometheus.log"]
        for log in logs:
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {log.name} (last lines)\n" + "\n".join(tail), file=sys.stderr)
        print(f"live test FAILED: {', '.join(failed)}; logs in {state}", file=sys.stderr)
        return 1
    if args.state is None:
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
