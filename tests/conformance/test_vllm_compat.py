"""vLLM's other routes, field by field: /invocations' dispatch, /pooling, /tokenize with chats
and token strings, /detokenize, /tokenizer_info, chat content parts, and vLLM's error texts
that clients match."""

from __future__ import annotations

import base64
import struct

import pytest

from tests.conformance.conftest import Live, Reference, close, long_text, sigmoid
from tests.support import assert_error, softmax

TEXTS = ["I loved this film.", "Dreadful and dull."]
MESSAGES = [
    {"role": "system", "content": "Judge the sentiment."},
    {"role": "user", "content": "I loved this film."},
]
PARTS = [
    {"role": "system", "content": [{"type": "text", "text": "Judge the sentiment."}]},
    {
        "role": "user",
        "content": [{"type": "text", "text": "I loved"}, {"type": "text", "text": "this film."}],
    },
]
FLAT = [MESSAGES[0], {"role": "user", "content": "I loved\nthis film."}]


def _same_answer(got: dict, want: dict) -> None:
    for body in (got, want):
        body.pop("created", None)
        body.pop("id")
    assert got == want


# -- /invocations: the body picks the route --------------------------------------------


def test_invocations_rerank_body_gets_rerank_answer(cross: Live) -> None:
    body = {"query": "a good film", "documents": TEXTS, "top_n": 1}
    sagemaker, vllm = cross.post("/invocations", body), cross.post("/rerank", body)
    assert sagemaker.status_code == vllm.status_code == 200, sagemaker.text
    _same_answer(sagemaker.json(), vllm.json())
    assert len(sagemaker.json()["results"]) == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [("text_1", "text_2"), ("queries", "documents"), ("queries", "items"), ("data_1", "data_2")],
)
def test_invocations_score_body_gets_score_answer(cross: Live, first: str, second: str) -> None:
    # queries + documents is also a rerank body's shape only when `query` is singular.
    body = {first: "a good film", second: TEXTS}
    sagemaker, vllm = cross.post("/invocations", body), cross.post("/score", body)
    assert sagemaker.status_code == vllm.status_code == 200, sagemaker.text
    assert sagemaker.json()["id"].startswith("score-")
    _same_answer(sagemaker.json(), vllm.json())


def test_invocations_input_wins_over_query(cross: Live) -> None:
    # vLLM tries ClassificationRequest first.
    body = {"input": TEXTS[0], "query": "q", "documents": ["d"]}
    response = cross.post("/invocations", body)
    assert response.status_code == 200, response.text
    assert response.json()["id"].startswith("classify-")


@pytest.mark.parametrize(
    "body", [{}, {"model": "tiny"}, {"query": "q", "documents": ["d"]}, {"text_1": "a"}]
)
def test_invocations_without_a_handler(clf: Live, body: dict) -> None:
    # A three-label model has no rerank or score handler, as in vLLM.
    error = assert_error(clf.post("/invocations", body), 400, "BadRequestError", "input")
    assert error["message"].startswith("Cannot find suitable handler for request. Expected one")


# -- /pooling ---------------------------------------------------------------------------


@pytest.mark.parametrize("task", [None, "classify"])
def test_pooling_is_classify_probs(clf: Live, bert_ref: Reference, task: str | None) -> None:
    body: dict = {"input": TEXTS, "request_id": "p-1"}
    if task:
        body["task"] = task
    response = clf.post("/pooling", body)
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["id"] == "pooling-p-1" and got["object"] == "list" and got["model"] == "tiny"
    assert set(got) == {"id", "object", "created", "model", "data", "usage"}
    for index, (item, text) in enumerate(zip(got["data"], TEXTS, strict=True)):
        assert item["index"] == index and item["object"] == "pooling"
        assert close(item["data"], softmax(bert_ref.logits(text)), 1e-5)
    tokens = sum(len(bert_ref.ids(t)) for t in TEXTS)
    assert got["usage"]["prompt_tokens"] == got["usage"]["total_tokens"] == tokens


def test_pooling_raw_logits_and_base64(clf: Live, bert_ref: Reference) -> None:
    raw = clf.post("/pooling", {"input": TEXTS[0], "use_activation": False}).json()
    logits = bert_ref.logits(TEXTS[0])
    assert close(raw["data"][0]["data"], logits, 1e-5)
    for dtype, code, tol in (("float32", "f", 1e-5), ("float16", "e", 1e-2)):
        for order, mark in (("little", "<"), ("big", ">")):
            body = {"input": TEXTS[0], "use_activation": False, "encoding_format": "base64"}
            body |= {"embed_dtype": dtype, "endianness": order}
            got = clf.post("/pooling", body).json()["data"][0]["data"]
            values = list(struct.unpack(f"{mark}3{code}", base64.b64decode(got)))
            assert close(values, logits, tol), (dtype, order)


def test_pooling_chat_on_chat_model(chat: Live) -> None:
    pooled = chat.post("/pooling", {"messages": MESSAGES}).json()["data"][0]["data"]
    classified = chat.post("/classify", {"messages": MESSAGES}).json()["data"][0]["probs"]
    assert pooled == classified


def test_pooling_one_label_model_lists_score(cross: Live) -> None:
    response = cross.post("/pooling", {"input": "hi", "task": "embed"})
    error = assert_error(response, 400, "BadRequestError", "task")
    assert error["message"] == "Unsupported task: 'embed' Supported tasks: ('classify', 'score')"
    data = cross.post("/pooling", {"input": "hi"}).json()["data"][0]["data"]
    assert len(data) == 1 and 0 < data[0] < 1


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"input": "a", "task": "embed"}, "task", "Unsupported task: 'embed' Supported tasks: "),
        ({"input": "a", "task": "token_classify"}, "task", "Try switching the model's "),
        ({"input": "a", "task": "nope"}, "task", None),
        ({"input": "a", "dimensions": 8}, "dimensions", "dimensions is currently not supported"),
        ({"input": "a", "encoding_format": "bytes"}, "encoding_format", None),
        ({"input": "a", "encoding_format": "hex"}, "encoding_format", None),
        (
            {"input": "a", "encoding_format": "base64", "embed_dtype": "fp8_e4m3"},
            "embed_dtype",
            None,
        ),
        ({"input": ""}, "input", None),
        ({}, "input", None),
    ],
)
def test_pooling_refusals(clf: Live, body: dict, param: str, message: str | None) -> None:
    error = assert_error(clf.post("/pooling", body), 400, "BadRequestError", param)
    if message is not None:
        assert error["message"].startswith(message), error["message"]


def test_pooling_unknown_model(clf: Live) -> None:
    body = {"model": "nope", "input": "a", "task": "embed"}
    assert_error(clf.post("/pooling", body), 404, "NotFoundError", None)


# -- /tokenize, /detokenize, /tokenizer_info ----------------------------------------------


def test_tokenize_token_strs(clf: Live, bert_ref: Reference) -> None:
    text = "The movie was GREAT, really!"
    plain = clf.post("/tokenize", {"prompt": text}).json()
    assert "token_strs" in plain and plain["token_strs"] is None
    asked = clf.post("/tokenize", {"prompt": text, "return_token_strs": True}).json()
    ids = bert_ref.ids(text)
    assert asked["tokens"] == ids
    assert asked["token_strs"] == bert_ref.tokenizer.convert_ids_to_tokens(ids)


@pytest.mark.parametrize(
    "options",
    [{}, {"add_generation_prompt": False}, {"continue_final_message": True}],
    ids=["default", "no-generation-prompt", "continue"],
)
def test_tokenize_messages(chat: Live, chat_ref: Reference, options: dict) -> None:
    # vLLM's /tokenize defaults add_generation_prompt to true.
    generation = options.get("add_generation_prompt", not options.get("continue_final_message"))
    rendered = chat_ref.tokenizer.apply_chat_template(
        MESSAGES,
        tokenize=False,
        add_generation_prompt=generation,
        continue_final_message=options.get("continue_final_message", False),
    )
    response = chat.post("/tokenize", {"messages": MESSAGES, **options})
    assert response.status_code == 200, response.text
    ids = chat_ref.ids(rendered, add_special_tokens=False)
    assert response.json()["tokens"] == ids and response.json()["count"] == len(ids)


def test_tokenize_messages_kwargs_tools_and_parts(chat: Live, chat_ref: Reference) -> None:
    body = {"messages": PARTS, "chat_template_kwargs": {"greeting": "hi"}, "tools": []}
    response = chat.post("/tokenize", body)
    assert response.status_code == 200, response.text
    rendered = chat_ref.tokenizer.apply_chat_template(
        FLAT, tokenize=False, add_generation_prompt=True, greeting="hi"
    )
    assert response.json()["tokens"] == chat_ref.ids(rendered, add_special_tokens=False)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES, "prompt": "x"}, "messages"),
        ({"messages": []}, "messages"),
        (
            {"messages": MESSAGES, "add_generation_prompt": True, "continue_final_message": True},
            "continue_final_message",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages"),
        ({"prompt": "x", "return_token_strs": "yes"}, "return_token_strs"),
    ],
)
def test_tokenize_refusals(chat: Live, body: dict, param: str) -> None:
    assert_error(chat.post("/tokenize", body), 400, "BadRequestError", param)


def test_tokenize_messages_without_template(clf: Live) -> None:
    assert_error(clf.post("/tokenize", {"messages": MESSAGES}), 400, "BadRequestError", "messages")


def test_detokenize(clf: Live, bert_ref: Reference) -> None:
    text = "the movie was great"
    for special in (False, True):
        ids = bert_ref.ids(text, add_special_tokens=special)
        response = clf.post("/detokenize", {"tokens": ids, "model": "alias"})
        assert response.status_code == 200, response.text
        assert response.json() == {"prompt": bert_ref.tokenizer.decode(ids)}
    assert clf.post("/detokenize", {"tokens": []}).json() == {"prompt": ""}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tokens": [5, 10**6]}, "tokens"),
        ({"tokens": [5, -1]}, "tokens[1]"),
        ({"tokens": "5"}, "tokens"),
        ({}, None),
    ],
)
def test_detokenize_refusals(clf: Live, body: dict, param: str | None) -> None:
    assert_error(clf.post("/detokenize", body), 400, "BadRequestError", param)
    assert_error(clf.post("/detokenize", {"model": "nope", "tokens": [1]}), 404, "NotFoundError")


def test_tokenizer_info(chat: Live, chat_ref: Reference) -> None:
    response = chat.get("/tokenizer_info")
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["tokenizer_class"] == type(chat_ref.tokenizer).__name__
    assert "vocab_file" not in info and "merges_file" not in info


# -- chat content parts ---------------------------------------------------------------


@pytest.mark.parametrize("route", ["/classify", "/invocations", "/pooling"])
def test_content_parts_equal_joined_text(chat: Live, route: str) -> None:
    parts = chat.post(route, {"messages": PARTS})
    flat = chat.post(route, {"messages": FLAT})
    assert parts.status_code == flat.status_code == 200, parts.text
    assert parts.json()["data"] == flat.json()["data"]


def test_content_part_not_text_is_400(chat: Live) -> None:
    image = {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, image]}]}
    error = assert_error(chat.post("/classify", body), 400, "BadRequestError", "messages")
    assert "messages[0].content[1]" in error["message"]


# -- vLLM's error texts ----------------------------------------------------------------


@pytest.mark.parametrize("route", ["/classify", "/invocations", "/pooling"])
def test_too_long_in_vllm_words(clf: Live, bert_ref: Reference, route: str) -> None:
    text = long_text(150)
    n = len(bert_ref.ids(text))
    error = assert_error(clf.post(route, {"input": text}), 400, "BadRequestError", "input_tokens")
    assert error["message"] == (
        f"You passed {n} input tokens and requested 0 output tokens. However, the model's "
        "context length is only 128 tokens, resulting in a maximum input length of 128 "
        "tokens. Please reduce the length of the input prompt. "
        f"(parameter=input_tokens, value={n})"
    )


@pytest.mark.parametrize("route", ["/classify", "/invocations", "/pooling"])
def test_truncation_over_max_in_vllm_words(clf: Live, route: str) -> None:
    response = clf.post(route, {"input": "hi", "truncate_prompt_tokens": 129})
    error = assert_error(response, 400, "BadRequestError", "truncate_prompt_tokens")
    assert error["message"] == (
        "truncate_prompt_tokens=129 cannot be greater than max_model_len - max_output_tokens "
        "= 128. Please request a smaller truncation size. "
        "(parameter=truncate_prompt_tokens, value=129)"
    )


def test_both_chat_flags_in_vllm_words(chat: Live) -> None:
    body = {"messages": MESSAGES, "add_generation_prompt": True, "continue_final_message": True}
    error = assert_error(
        chat.post("/classify", body), 400, "BadRequestError", "continue_final_message"
    )
    assert error["message"] == (
        "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
    )


def test_one_label_pooling_matches_score_activation(cross: Live, cross_ref: Reference) -> None:
    data = cross.post("/pooling", {"input": "a fine film"}).json()["data"][0]["data"]
    assert close(data, [sigmoid(cross_ref.logits("a fine film")[0])], 1e-5)
