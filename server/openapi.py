"""The OpenAPI 3.1 document of a route table, its schemas generated from the msgspec structs.

The schemas come from the same structs that decode and encode the wire, and the paths from
the table that routes the requests (server/routes.py), so the document cannot drift from what
the server accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from protocol.errors import ErrorResponse, Unauthorized
from protocol.tei import Prediction, Rank, TeiError, TeiRerankRequest
from server import __version__

_REF = "#/components/schemas/{name}"
_ERRORS = {
    "400": "Bad request: the message names the field (`param`).",
    "401": "Missing or wrong API key (when the server has keys).",
    "404": "Unknown model, or a route this model cannot answer.",
    "413": "The body is larger than --max-body-bytes.",
    "422": "TEI: a body of the wrong shape, a prompt too long, or too many inputs.",
    "424": "TEI: the model cannot answer this (rerank on a classifier), or failed.",
    "429": "Admission limit reached; retry after `Retry-After` seconds.",
    "500": "The model failed on this request's batch.",
    "503": "The engine is not ready, is shutting down, or its worker died.",
}
# One input gives a list of predictions, a batch a list of those (msgspec cannot express the
# union of two list types, so it is written by hand).
_ONE = {"type": "array", "items": {"$ref": _REF.format(name="Prediction")}}
PREDICTIONS = {"anyOf": [_ONE, {"type": "array", "items": _ONE}]}
# TEI's rerank answer: a bare list of ranks.
RANKS = {"type": "array", "items": {"$ref": _REF.format(name="Rank")}}
# What TEI's routes answer on error (server/tei_errors.py).
TEI_ERRORS = ("400", "413", "422", "424", "429", "500", "503")

# What every model route can answer besides 200 (server/http.py's ModelRoute and the engine).
_MODEL_ERRORS = ("400", "404", "413", "429", "500", "503")


@dataclass(frozen=True)
class Doc:
    """What /openapi.json says of one route's operations."""

    summary: str
    # A model route's body: a struct, or a JSON schema.
    request: Any = None
    # The 200 body: a struct, or a JSON schema; None when the answer has no body.
    response: Any = None
    ok: str = "OK"
    media_type: str = "application/json"
    # A route's own errors; a model route's are _MODEL_ERRORS, and 401 is added for every
    # route that needs a key.
    errors: tuple[str, ...] = ()
    # The error body: docs/API.md's envelope, or a peer's (a struct, or a JSON schema).
    error_body: Any = ErrorResponse
    # The 401's body, as the route's peer writes it; None: the bare status (TEI).
    unauthorized_body: Any = Unauthorized


class Documented(Protocol):
    """A route table entry, as far as the document needs it (server/routes.py's Endpoint)."""

    @property
    def path(self) -> str: ...
    @property
    def methods(self) -> tuple[str, ...]: ...
    @property
    def doc(self) -> Doc: ...
    @property
    def model(self) -> bool: ...
    @property
    def open(self) -> bool: ...


def _content(schema: Any, media_type: str = "application/json") -> dict[str, Any]:
    if isinstance(schema, type):
        schema = {"$ref": _REF.format(name=schema.__name__)}
    return {media_type: {"schema": schema}}


def _errors(codes: Iterable[str], body: Any = ErrorResponse) -> dict[str, Any]:
    return {code: {"description": _ERRORS[code], "content": _content(body)} for code in codes}


def _operation(entry: Documented) -> dict[str, Any]:
    doc = entry.doc
    ok: dict[str, Any] = {"description": doc.ok}
    if doc.response is not None:
        ok["content"] = _content(doc.response, doc.media_type)
    operation: dict[str, Any] = {"summary": doc.summary}
    if doc.request is not None:
        operation["requestBody"] = {"required": True, "content": _content(doc.request)}
    # A model route's errors are _MODEL_ERRORS unless its Doc lists its own (a peer's).
    errors = sorted(set(doc.errors or (_MODEL_ERRORS if entry.model else ())))
    operation["responses"] = {"200": ok, **_errors(errors, doc.error_body)}
    if not entry.open:
        refused: dict[str, Any] = {"description": _ERRORS["401"]}
        if doc.unauthorized_body is not None:
            refused["content"] = _content(doc.unauthorized_body)
        operation["responses"]["401"] = refused
    return operation


def document(table: Iterable[Documented]) -> dict[str, Any]:
    """The OpenAPI document of `table`, its paths in the table's order."""
    table = list(table)
    structs: list[Any] = [ErrorResponse, Unauthorized, Prediction, TeiError, TeiRerankRequest, Rank]
    structs += [
        s for entry in table for s in (entry.doc.request, entry.doc.response, entry.doc.error_body)
    ]
    types = list(dict.fromkeys(s for s in structs if isinstance(s, type)))
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    paths: dict[str, Any] = {}
    for entry in table:
        operation = _operation(entry)
        paths[entry.path] = {method.lower(): operation for method in entry.methods}
    return {
        "openapi": "3.1.0",
        "info": {"title": "classifyd", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
