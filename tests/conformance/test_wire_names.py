"""The engine's 400s in each route's own field names (server/errors.py WireNames)."""

from __future__ import annotations

import pytest

from tests.conformance.conftest import Live
from tests.support import assert_error, assert_tei_error


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/score", {"text_1": "a", "text_2": ["b", ""]}, "text_2[1]"),
        ("/score", {"text_1": ["a", ""], "text_2": ["b", "c"]}, "text_1[1]"),
        # One `text_1` serves every pair: an empty one is named where it was given.
        ("/score", {"text_1": [""], "text_2": ["b", "c"]}, "text_1[0]"),
        ("/rerank", {"query": "", "documents": ["d"]}, "query"),
        ("/rerank", {"query": "q", "documents": ["d", "e", ""]}, "documents[2]"),
    ],
)
def test_an_empty_text_is_named_by_its_path(
    cross: Live, route: str, body: dict[str, object], param: str
) -> None:
    error = assert_error(cross.post(route, body), 400, "BadRequestError", param)
    assert error["message"] == f"`{param}` must not be an empty string."


def test_predict_over_the_admission_limit(tight: Live) -> None:
    # More inputs than may ever be in flight: TEI's body, a 422 `Validation`.
    response = tight.post("/predict", {"inputs": [["a"], ["b"], ["c"]]})
    assert "--max-concurrent-requests" in assert_tei_error(response, 422, "Validation")
