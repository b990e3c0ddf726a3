"""docs/API.md's request table for POST /classify and /v1/classify, row by row, over real HTTP."""

from __future__ import annotations

import re

import pytest

from tests.builders import sentences
from tests.conformance.conftest import LABELS, Live, Reference, close, long_text, sigmoid
from tests.support import assert_error, probs_of, softmax

ROUTES = ("/classify", "/v1/classify")
TEXTS = sentences(5, seed=21, max_words=20)


def _check_response(body: dict, model: str, count: int) -> None:
    assert set(body) == {"id", "object", "created", "model", "data", "usage"}, body
    assert body["object"] == "list"
    assert body["model"] == model
    assert isinstance(body["created"], int) and body["created"] > 1_600_000_000
    assert body["id"].startswith("classify-")
    assert [d["index"] for d in body["data"]] == list(range(count))
    for item in body["data"]:
        assert set(item) == {"index", "label", "probs", "num_classes"}
        assert item["num_classes"] == len(item["probs"]) == 3
        assert abs(sum(item["probs"]) - 1) < 1e-5
        best = max(range(3), key=item["probs"].__getitem__)
        assert item["label"] == LABELS[best]
    usage = body["usage"]
    assert set(usage) == {
        "prompt_tokens",
        "total_tokens",
        "completion_tokens",
        "prompt_tokens_details",
    }
    assert usage["total_tokens"] == usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] == 0
    assert usage["prompt_tokens_details"] is None


# -- model ----------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("model", [None, "tiny", "alias"])
def test_model_served_names(clf: Live, route: str, model: str | None) -> None:
    body = {"input": TEXTS[0]} if model is None else {"model": model, "input": TEXTS[0]}
    response = clf.post(route, body)
    assert response.status_code == 200, response.text
    _check_response(response.json(), model or "tiny", 1)


@pytest.mark.parametrize("route", ROUTES)
def test_unknown_model_is_404(clf: Live, route: str) -> None:
    response = clf.post(route, {"model": "gpt-9", "input": "hi"})
    error = assert_error(response, 404, "NotFoundError")
    assert error["message"] == "The model `gpt-9` does not exist."


# -- input shapes ---------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_input_string(clf: Live, bert_ref: Reference, route: str) -> None:
    response = clf.post(route, {"input": TEXTS[0]})
    _check_response(response.json(), "tiny", 1)
    assert close(probs_of(response)[0], softmax(bert_ref.logits(TEXTS[0])))
    assert response.json()["usage"]["prompt_tokens"] == len(bert_ref.ids(TEXTS[0]))


@pytest.mark.parametrize("route", ROUTES)
def test_input_list_of_strings(clf: Live, bert_ref: Reference, route: str) -> None:
    response = clf.post(route, {"input": TEXTS})
    _check_response(response.json(), "tiny", len(TEXTS))
    got = probs_of(response)
    for text, probs in zip(TEXTS, got, strict=True):
        assert close(probs, softmax(bert_ref.logits(text)))
        # Batching never changes a result.
        assert close(probs, probs_of(clf.post(route, {"input": text}))[0], 1e-6)
    tokens = sum(len(bert_ref.ids(t)) for t in TEXTS)
    assert response.json()["usage"]["prompt_tokens"] == tokens


@pytest.mark.parametrize("route", ROUTES)
def test_input_token_ids(clf: Live, bert_ref: Reference, route: str) -> None:
    ids = bert_ref.ids(TEXTS[1])
    response = clf.post(route, {"input": ids})
    _check_response(response.json(), "tiny", 1)
    assert close(probs_of(response)[0], probs_of(clf.post(route, {"input": TEXTS[1]}))[0], 1e-6)
    assert response.json()["usage"]["prompt_tokens"] == len(ids)


@pytest.mark.parametrize("route", ROUTES)
def test_input_lists_of_token_ids(clf: Live, bert_ref: Reference, route: str) -> None:
    rows = [bert_ref.ids(t) for t in TEXTS[:3]]
    response = clf.post(route, {"input": rows})
    _check_response(response.json(), "tiny", 3)
    for row, probs in zip(rows, probs_of(response), strict=True):
        assert close(probs, softmax(bert_ref.logits_ids(row)))
    assert response.json()["usage"]["prompt_tokens"] == sum(map(len, rows))


# -- messages -------------------------------------------------------------------------

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "the movie was great"},
    {"role": "assistant", "content": "it was"},
]


def _rendered_probs(chat: Live, text: str) -> tuple[list[float], int]:
    response = chat.post("/classify", {"input": text, "add_special_tokens": False})
    return probs_of(response)[0], response.json()["usage"]["prompt_tokens"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"add_generation_prompt": True},
        {"continue_final_message": True},
        {"chat_template_kwargs": {"greeting": "hello there"}},
    ],
    ids=["plain", "generation-prompt", "continue-final", "template-kwargs"],
)
def test_messages_equal_rendered_template(
    chat: Live, chat_ref: Reference, route: str, options: dict
) -> None:
    kwargs = dict(options)
    kwargs.update(kwargs.pop("chat_template_kwargs", {}))
    rendered = chat_ref.tokenizer.apply_chat_template(MESSAGES, tokenize=False, **kwargs)
    response = chat.post(route, {"messages": MESSAGES, **options})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "chat"
    assert body["data"][0]["label"] in ("LABEL_0", "LABEL_1")
    expected, tokens = _rendered_probs(chat, rendered)
    assert close(body["data"][0]["probs"], expected, 1e-6)
    assert body["usage"]["prompt_tokens"] == tokens
    assert close(expected, softmax(chat_ref.logits(rendered, add_special_tokens=False)))


def test_messages_options_change_the_prompt(chat: Live) -> None:
    plain = chat.post("/classify", {"messages": MESSAGES}).json()["usage"]["prompt_tokens"]
    for option in (
        {"add_generation_prompt": True},
        {"continue_final_message": True},
        {"chat_template_kwargs": {"greeting": "hello there"}},
    ):
        response = chat.post("/classify", {"messages": MESSAGES, **option})
        assert response.json()["usage"]["prompt_tokens"] != plain, option


@pytest.mark.parametrize("route", ROUTES)
def test_messages_generation_prompt_and_continue_is_400(chat: Live, route: str) -> None:
    body = {"messages": MESSAGES, "add_generation_prompt": True, "continue_final_message": True}
    assert_error(chat.post(route, body), 400, "BadRequestError", "continue_final_message")


def test_messages_without_chat_template_is_400(clf: Live) -> None:
    assert_error(clf.post("/classify", {"messages": MESSAGES}), 400, "BadRequestError", "messages")


def test_messages_and_input_is_400(chat: Live) -> None:
    body = {"messages": MESSAGES, "input": "hi"}
    assert_error(chat.post("/classify", body), 400, "BadRequestError", "messages")


# -- truncation -----------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_truncate_prompt_tokens_k(clf: Live, bert_ref: Reference, route: str) -> None:
    text = long_text(40)
    response = clf.post(route, {"input": text, "truncate_prompt_tokens": 10})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] == 10
    expected = softmax(bert_ref.logits(text, truncation=True, max_length=10))
    assert close(probs_of(response)[0], expected)


@pytest.mark.parametrize("route", ROUTES)
def test_truncate_prompt_tokens_minus_one_is_model_max(
    clf: Live, bert_ref: Reference, route: str
) -> None:
    text = long_text(200)
    assert len(bert_ref.ids(text)) > 128
    response = clf.post(route, {"input": text, "truncate_prompt_tokens": -1})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] == 128
    expected = softmax(bert_ref.logits(text, truncation=True, max_length=128))
    assert close(probs_of(response)[0], expected)


@pytest.mark.parametrize("route", ROUTES)
def test_truncate_prompt_tokens_over_max_is_400(clf: Live, route: str) -> None:
    response = clf.post(route, {"input": "hi", "truncate_prompt_tokens": 129})
    error = assert_error(response, 400, "BadRequestError", "truncate_prompt_tokens")
    assert "truncate_prompt_tokens" in error["message"]
    assert "128" in error["message"] and "129" in error["message"]


@pytest.mark.parametrize("route", ROUTES)
def test_truncation_side(clf: Live, bert_ref: Reference, route: str) -> None:
    text = long_text(40, seed=5)
    got = {}
    for side in ("left", "right"):
        body = {"input": text, "truncate_prompt_tokens": 12, "truncation_side": side}
        response = clf.post(route, body)
        assert response.json()["usage"]["prompt_tokens"] == 12
        got[side] = probs_of(response)[0]
        expected = softmax(bert_ref.logits(text, side=side, truncation=True, max_length=12))
        assert close(got[side], expected), side
    assert not close(got["left"], got["right"], 1e-2)
    # The tokenizer's own side (right) is the default.
    default = clf.post(route, {"input": text, "truncate_prompt_tokens": 12})
    assert close(probs_of(default)[0], got["right"], 1e-6)


def test_truncation_of_token_ids(clf: Live, bert_ref: Reference) -> None:
    ids = bert_ref.ids(long_text(30))
    for side, kept in (("left", ids[-7:]), ("right", ids[:7])):
        body = {"input": ids, "truncate_prompt_tokens": 7, "truncation_side": side}
        response = clf.post("/classify", body)
        assert response.json()["usage"]["prompt_tokens"] == 7
        assert close(probs_of(response)[0], softmax(bert_ref.logits_ids(kept))), side


# -- special tokens, activation ------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_add_special_tokens_false(clf: Live, bert_ref: Reference, route: str) -> None:
    text = TEXTS[2]
    with_special = clf.post(route, {"input": text, "add_special_tokens": True})
    without = clf.post(route, {"input": text, "add_special_tokens": False})
    assert with_special.json()["usage"]["prompt_tokens"] == len(bert_ref.ids(text))
    plain = len(bert_ref.ids(text, add_special_tokens=False))
    assert without.json()["usage"]["prompt_tokens"] == plain == len(bert_ref.ids(text)) - 2
    expected = softmax(bert_ref.logits(text, add_special_tokens=False))
    assert close(probs_of(without)[0], expected)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("field", ["use_activation", "activation"])
def test_activation_false_gives_logits(
    clf: Live, bert_ref: Reference, route: str, field: str
) -> None:
    response = clf.post(route, {"input": TEXTS[3], field: False})
    assert response.status_code == 200, response.text
    item = response.json()["data"][0]
    logits = bert_ref.logits(TEXTS[3])
    assert close(item["probs"], logits)
    assert item["label"] == LABELS[max(range(3), key=logits.__getitem__)]
    on = clf.post(route, {"input": TEXTS[3], field: True})
    assert close(probs_of(on)[0], softmax(logits))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("value", [True, False])
def test_normalize_is_400_naming_use_activation(clf: Live, route: str, value: bool) -> None:
    response = clf.post(route, {"input": "hi", "normalize": value})
    error = assert_error(response, 400, "BadRequestError", "normalize")
    assert "use_activation" in error["message"]


def test_default_activation_one_label_is_sigmoid(cross: Live, cross_ref: Reference) -> None:
    response = cross.post("/classify", {"input": TEXTS[0]})
    item = response.json()["data"][0]
    assert item["label"] == "LABEL_0" and item["num_classes"] == 1
    logit = cross_ref.logits(TEXTS[0])[0]
    assert close(item["probs"], [sigmoid(logit)])


# -- priority, ids, ignored fields ---------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("priority", [-5, 0, 7])
def test_priority_accepted(clf: Live, route: str, priority: int) -> None:
    response = clf.post(route, {"input": TEXTS[0], "priority": priority})
    base = clf.post(route, {"input": TEXTS[0]})
    assert close(probs_of(response)[0], probs_of(base)[0], 1e-6)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("fields", "headers", "expected"),
    [
        ({"request_id": "req-1"}, {}, "req-1"),
        ({"rid": "rid-2"}, {}, "rid-2"),
        ({}, {"X-Request-Id": "hdr-3"}, "hdr-3"),
        ({"request_id": "req-4"}, {"X-Request-Id": "hdr-4"}, "req-4"),
        ({"rid": "rid-5"}, {"X-Request-Id": "hdr-5"}, "rid-5"),
    ],
)
def test_request_id_echoed(
    clf: Live, route: str, fields: dict, headers: dict, expected: str
) -> None:
    response = clf.post(route, {"input": "hi", **fields}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == expected
    assert response.json()["id"] == f"classify-{expected}"


@pytest.mark.parametrize("route", ROUTES)
def test_random_request_id(clf: Live, route: str) -> None:
    first = clf.post(route, {"input": "hi"})
    second = clf.post(route, {"input": "hi"})
    ids = [r.headers["x-request-id"] for r in (first, second)]
    assert all(re.fullmatch(r"[0-9a-f]{8,}", i) for i in ids), ids
    assert ids[0] != ids[1]
    assert first.json()["id"] == f"classify-{ids[0]}"


@pytest.mark.parametrize("route", ROUTES)
def test_user_and_unknown_fields_ignored(clf: Live, route: str) -> None:
    body = {
        "input": TEXTS[4],
        "user": "someone",
        "encoding_format": "float",
        "vendor_extra": {"nested": [1, 2, {"x": None}]},
        "dimensions": 3,
    }
    response = clf.post(route, body)
    assert response.status_code == 200, response.text
    assert close(probs_of(response)[0], probs_of(clf.post(route, {"input": TEXTS[4]}))[0], 1e-6)


# -- model without id2label ------------------------------------------------------------


def test_labels_without_id2label(chat: Live) -> None:
    response = chat.post("/classify", {"input": ["one", "two words"]})
    assert response.status_code == 200, response.text
    for item in response.json()["data"]:
        assert item["label"] == ("LABEL_0" if item["probs"][0] >= item["probs"][1] else "LABEL_1")
