"""/openapi.json: a valid OpenAPI 3 document that lists exactly the routes the server answers,
and a property-based run (schemathesis) of every operation against the live server."""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode, checks

from tests.conformance.conftest import Live

# Every route docs/API.md names, with the methods it answers.
ROUTES = {
    "/classify": {"post"},
    "/v1/classify": {"post"},
    "/invocations": {"post"},
    "/predict": {"post"},
    # TEI's root: /predict for a classifier, TEI's rerank for a one-label model.
    "/": {"post"},
    "/score": {"post"},
    "/v1/score": {"post"},
    "/rerank": {"post"},
    "/v1/rerank": {"post"},
    "/v2/rerank": {"post"},
    "/tokenize": {"post"},
    "/detokenize": {"post"},
    "/tokenizer_info": {"get"},
    "/pooling": {"post"},
    "/health": {"get"},
    "/ready": {"get"},
    "/ping": {"get", "post"},
    "/version": {"get"},
    "/v1/models": {"get"},
    "/info": {"get"},
    "/metrics": {"get"},
    "/openapi.json": {"get"},
}
# vLLM's run-time LoRA routes: documented, but 404 until --allow-runtime-lora-updating
# (tests/models/test_lora_runtime_live.py exercises them).
GATED = {"/v1/load_lora_adapter": {"post"}, "/v1/unload_lora_adapter": {"post"}}
METHODS = {"get", "post", "put", "delete", "patch"}
POST_ONLY = {p for p, ms in ROUTES.items() if ms == {"post"}}


@pytest.fixture(scope="module")
def spec(clf: Live) -> dict:
    response = clf.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body: dict = response.json()
    return body


def test_openapi_is_valid(spec: dict) -> None:
    assert spec["openapi"].startswith("3.")
    validate(spec)


def test_openapi_lists_every_route(spec: dict) -> None:
    listed = {path: set(ops) & METHODS for path, ops in spec["paths"].items()}
    assert listed == ROUTES | GATED


@pytest.mark.parametrize(("path", "method"), [(p, m) for p, ms in ROUTES.items() for m in ms])
def test_listed_routes_are_answered(clf: Live, spec: dict, path: str, method: str) -> None:
    """Each listed operation is routed (no 404/405), and its other methods are 405."""
    response = clf.client.request(method, path, json={} if method == "post" else None)
    assert response.status_code not in (404, 405), (method, path, response.text)
    for other in sorted(METHODS - ROUTES[path]):
        assert clf.client.request(other, path).status_code == 405, (other, path)


def test_operations_reference_defined_schemas(spec: dict) -> None:
    schemas = spec["components"]["schemas"]
    text = str(spec["paths"])
    for name in ("ClassifyRequest", "ClassifyResponse", "ErrorResponse", "ScoreRequest"):
        assert name in schemas and f"#/components/schemas/{name}" in text
    post = spec["paths"]["/classify"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ClassifyRequest"
    }
    for code in ("200", "400", "404", "413"):
        assert code in post["responses"], code


def test_documented_401_is_what_a_keyed_server_does(secured: Live, spec: dict) -> None:
    """An operation documents 401 exactly when a server with keys refuses it without one."""
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            response = secured.client.request(method, path, json={} if method == "post" else None)
            documented = "401" in operation["responses"]
            assert (response.status_code == 401) is documented, (method, path)


# -- property-based: schemathesis over the live server -----------------------------------
#
# schemathesis.pytest.from_fixture (its lazy loader) reads `request.node._nodeid`, which
# pytest 9 no longer has, so each operation is driven here through the documented
# `APIOperation.as_strategy()` and hypothesis' `given`, one test item per operation and mode.

# Negative cases need something to break: only operations with a request body have one.
OPERATIONS = [
    pytest.param(path, method, mode, id=f"{path}-{method}-{mode.value}")
    for path, methods in ROUTES.items()
    for method in sorted(methods)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or (method == "post" and path in POST_ONLY)
]
_schemas: dict[str, schemathesis.BaseSchema] = {}
# A body over --max-body-bytes is refused with 413 before it is parsed: a right answer to a
# schema-violating body too. TEI's routes refuse a body of the wrong shape with 422.
_CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 404, 405, 413, 422, 429]
"""


def _schema_of(live: Live) -> schemathesis.BaseSchema:
    if live.url not in _schemas:
        config = schemathesis.Config.from_str(_CONFIG)
        url = f"{live.url}/openapi.json"
        _schemas[live.url] = schemathesis.openapi.from_url(url, config=config, timeout=30)
    return _schemas[live.url]


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS)
@pytest.mark.parametrize("server", ["clf", "cross"])
def test_schemathesis(
    request: pytest.FixtureRequest, server: str, path: str, method: str, mode: GenerationMode
) -> None:
    live: Live = request.getfixturevalue(server)
    operation = _schema_of(live)[path][method.upper()]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=25,
        deadline=timedelta(seconds=10),
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        # Every check but positive_data_acceptance: the schema cannot say that `input` must
        # not be empty, or that `input` and `messages` exclude each other, so some
        # schema-valid bodies are rightly refused with a 400.
        case.call_and_validate(timeout=30, excluded_checks=[checks.positive_data_acceptance])

    run()
