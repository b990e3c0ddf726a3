"""Engine errors in each route's own names, and /predict's figures when texts and pairs are
mixed (two engine calls for one request)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from starlette.testclient import TestClient


def _tokens(bert_dir: Path, *texts: str) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(bert_dir)(*texts)["input_ids"])


def test_mixed_predict_reports_both_calls(
    client: TestClient, bert_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = [["a good film"], ["the plot", "was dull"], ["awful"]]
    with caplog.at_level(logging.INFO, logger="classifyd.access"):
        response = client.post("/predict", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    assert len(response.json()) == 3
    [line] = [r for r in caplog.records if r.name == "classifyd.access"]
    tokens = (
        _tokens(bert_dir, "a good film")
        + _tokens(bert_dir, "the plot", "was dull")
        + _tokens(bert_dir, "awful")
    )
    assert (line.prompts, line.tokens) == (3, tokens)  # type: ignore[attr-defined]
    for name in ("x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time"):
        assert float(response.headers[name]) >= 0


def test_mixed_predict_names_the_bad_item_by_its_place_in_the_request(
    client: TestClient,
) -> None:
    # The pair is the first of its engine call, and the request's item 1. TEI's words and
    # kinds, naming the item.
    response = client.post("/predict", json={"inputs": [["ok"], ["a", "great " * 200]]})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error_type"] == "Validation"
    assert error["error"].startswith("Input validation error: `inputs[1]` must have less than ")
    empty = client.post("/predict", json={"inputs": [["ok"], ["fine"], ["a", ""]]})
    assert empty.status_code == 400
    assert empty.json() == {
        "error": "Input validation error: `inputs[2][1]` cannot be empty",
        "error_type": "Empty",
    }


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"input": ""}, "input", "`input` must not be an empty string."),
        ({"input": ["good", ""]}, "input[1]", "`input[1]` must not be an empty string."),
        ({"input": [[1, 2], []]}, "input[1]", "`input[1]` must not be an empty list of token ids."),
    ],
)
def test_the_engines_empty_rule_in_classifys_names(
    client: TestClient, body: dict[str, object], param: str, message: str
) -> None:
    error = client.post("/classify", json=body).json()["error"]
    assert (error["param"], error["message"]) == (param, message)
