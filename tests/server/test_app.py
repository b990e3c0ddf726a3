"""create_app's wiring: one route table behind HotPaths, Starlette, the API-key exemptions and
/openapi.json; the middleware list around every route; the server's own metric series."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine import EngineConfig
from engine.metrics import EngineMetrics
from server import lora_admin
from server.app import create_app
from server.config import ServerConfig
from server.dispatch import HotPaths
from server.metrics import server_metrics
from server.routes import OPEN_PATHS, TABLE, Endpoint, model_routes, routes
from tests.fakes import FakeRunner

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


def _app(
    model: Path, settings: ServerConfig | None = None, middleware: Sequence[Middleware] = ()
) -> ASGIApp:
    config = EngineConfig(model=str(model), max_batch_tokens=1024)
    factory = FakeRunner().factory()
    return create_app(config, settings, runner_factory=factory, middleware=middleware)


class _Stamp:
    """Pure-ASGI middleware: records each HTTP request it sees and stamps the response."""

    def __init__(self, app: ASGIApp, name: str, seen: list[tuple[str, str, str]]) -> None:
        self.app = app
        self.name = name
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.seen.append((self.name, scope["method"], scope["path"]))

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-stamp", self.name.encode())]
            await send(message)

        await self.app(scope, receive, stamped)


@pytest.fixture(scope="module")
def plain(bert_dir: Path) -> Iterator[TestClient]:
    with TestClient(_app(bert_dir)) as client:
        yield client


# -- the route table --------------------------------------------------------------------


def test_the_hot_map_holds_exactly_the_model_routes(bert_dir: Path) -> None:
    app = _app(bert_dir)
    assert isinstance(app, HotPaths)  # no middleware given: nothing wraps the dispatcher
    assert set(app.routes) == {e.path for e in TABLE if e.model} == set(model_routes)
    assert all(e.methods == ("POST",) for e in TABLE if e.model)
    # Starlette's table holds every entry once, a model route as the very same ModelRoute.
    assert [r.path for r in app.app.routes] == [e.path for e in TABLE]
    for route in routes:
        if route.path in model_routes:
            assert route.endpoint is model_routes[route.path]


def test_openapi_lists_the_table(plain: TestClient) -> None:
    paths = plain.get("/openapi.json").json()["paths"]
    assert {p: set(ops) for p, ops in paths.items()} == {
        e.path: {m.lower() for m in e.methods} for e in TABLE
    }
    assert list(paths) == [e.path for e in TABLE]
    for entry in TABLE:
        for operation in paths[entry.path].values():
            # A keyed route documents its 401; an open one cannot answer it.
            assert ("401" in operation["responses"]) is not entry.open, entry.path
            assert ("requestBody" in operation) is entry.model, entry.path


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.path)
def test_every_entry_is_served_with_exactly_its_methods(plain: TestClient, entry: Endpoint) -> None:
    for method in METHODS:
        body = {} if method == "POST" else None
        status = plain.request(method, entry.path, json=body).status_code
        if method in entry.methods:
            # The run-time LoRA routes are vLLM's 404 until --allow-runtime-lora-updating.
            absent = (405,) if entry.path in lora_admin.PATHS else (404, 405)
            assert status not in absent, (method, entry.path, status)
        else:
            assert status == 405, (method, entry.path, status)


def test_open_paths_are_the_open_entries_and_need_no_key(bert_dir: Path) -> None:
    assert {e.path for e in TABLE if e.open} == OPEN_PATHS
    assert {"/health", "/ready", "/ping", "/metrics"} == OPEN_PATHS
    with TestClient(_app(bert_dir, ServerConfig(api_keys=("k",)))) as client:
        for entry in TABLE:
            method = entry.methods[0]
            body = {} if method == "POST" else None
            status = client.request(method, entry.path, json=body).status_code
            assert (status == 401) is not entry.open, (entry.path, status)
        keyed = client.post("/classify", json={"input": "a"}, headers={"authorization": "Bearer k"})
        assert keyed.status_code == 200


# -- middleware -------------------------------------------------------------------------


def test_middleware_sees_every_route_outermost_first(bert_dir: Path) -> None:
    seen: list[tuple[str, str, str]] = []
    stack = [Middleware(_Stamp, "outer", seen), Middleware(_Stamp, "inner", seen)]
    with TestClient(_app(bert_dir, middleware=stack)) as client:
        responses = [
            client.post("/classify", json={"input": "a"}),  # a hot model route
            client.post("/classify", json={"input": 3}),  # its error envelope
            client.get("/health"),  # a Starlette route
            client.get("/nowhere"),  # Starlette's 404
        ]
    assert [r.status_code for r in responses] == [200, 400, 200, 404]
    for response in responses:
        assert response.headers.get_list("x-stamp") == ["inner", "outer"]
    assert seen == [
        (name, method, path)
        for method, path in [
            ("POST", "/classify"),
            ("POST", "/classify"),
            ("GET", "/health"),
            ("GET", "/nowhere"),
        ]
        for name in ("outer", "inner")
    ]


def test_middleware_sees_requests_the_api_key_refuses(bert_dir: Path) -> None:
    seen: list[tuple[str, str, str]] = []
    settings = ServerConfig(api_keys=("k",))
    app = _app(bert_dir, settings, middleware=[Middleware(_Stamp, "m", seen)])
    with TestClient(app) as client:
        refused = client.post("/classify", json={"input": "a"})
    assert refused.status_code == 401
    assert refused.headers["x-stamp"] == "m"
    assert seen == [("m", "POST", "/classify")]


# -- the server's own metrics -----------------------------------------------------------


def test_request_outcomes_are_the_servers_series_in_the_engines_registry(
    plain: TestClient,
) -> None:
    labelled = {
        label
        for metric in vars(EngineMetrics("x")).values()
        for label in getattr(metric, "_labelnames", ())
    }
    assert "status" not in labelled and "outcome" not in labelled
    text = plain.get("/metrics").text
    for outcome, status in [("success", "200"), ("error", "429"), ("cancelled", "499")]:
        assert f'classifyd_requests_total{{outcome="{outcome}",status="{status}"}}' in text
    assert text.count("# TYPE classifyd_requests_total counter") == 1


def test_server_metrics_are_registered_once_per_registry() -> None:
    registry = CollectorRegistry()
    first = server_metrics(registry)
    assert server_metrics(registry) is first
    assert server_metrics(CollectorRegistry()) is not first
