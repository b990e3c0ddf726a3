"""The peers' own tests of the routes classifyd serves, ported (vLLM's classify, cross-encoder,
truncation and prompt-limit suites; the rest in test_peer_suites_more.py): one test per peer
test, named after it, each naming the peer file and test it ports.

The peers test real models; here every assertion about the wire is kept and every number is
classifyd's own (or plain transformers'), on the tiny models of conftest.py. Peer tests that
cannot apply to a classification server are listed in docs/API.md ("Peer tests that cannot
apply"), with the reason.
"""

from __future__ import annotations

import pytest

from tests.conformance.conftest import LABELS, Live, Reference, close, long_text, sigmoid
from tests.conformance.peers import (
    CHAT,
    DOCS,
    QUERY,
    TEXT,
    TEXTS_1,
    TEXTS_2,
    error_of,
    max_len,
    ok,
)
from tests.support import softmax

# ===================================================================================
# vLLM tests/entrypoints/pooling/classify/test_online.py (a 2-label classifier there)
# ===================================================================================


def test_classify_online_test_basic(clf: Live, bert_ref: Reference) -> None:
    # classify/test_online.py::test_basic: /v1/models lists the served name first; /tokenize
    # gives the tokenizer's ids.
    assert clf.get("/v1/models").json()["data"][0]["id"] == "tiny"
    body = clf.post("/tokenize", {"model": "tiny", "prompt": TEXT}).json()
    assert body["tokens"] == bert_ref.ids(TEXT)


@pytest.mark.parametrize("as_ids", [False, True])
def test_classify_online_test_completion_request(
    clf: Live, bert_ref: Reference, as_ids: bool
) -> None:
    # classify/test_online.py::test_completion_request: input str and list[int].
    prompt: object = bert_ref.ids(TEXT) if as_ids else TEXT
    out = ok(clf.post("/classify", {"model": "tiny", "input": prompt}))
    assert out["object"] == "list" and out["model"] == "tiny"
    assert len(out["data"]) == 1
    assert "label" in out["data"][0] and "probs" in out["data"][0]


@pytest.mark.parametrize("as_ids", [False, True])
def test_classify_online_test_completion_request_batched(
    clf: Live, bert_ref: Reference, as_ids: bool
) -> None:
    # classify/test_online.py::test_completion_request_batched (N=10 there; this server's
    # --max-client-batch-size is 8).
    n = 8
    prompt: object = [bert_ref.ids(TEXT)] * n if as_ids else [TEXT] * n
    out = ok(clf.post("/classify", {"model": "tiny", "input": prompt}))
    assert len(out["data"]) == n
    for i, item in enumerate(out["data"]):
        assert item["index"] == i
        assert len(item["probs"]) == item["num_classes"]
        assert item["label"] in LABELS


@pytest.mark.parametrize("value", ["", []])
def test_classify_online_test_empty_input_error(clf: Live, value: object) -> None:
    # classify/test_online.py::test_empty_input_error.
    error_of(clf.post("/classify", {"model": "tiny", "input": value}), 400)


def test_classify_online_test_truncate_prompt_tokens(clf: Live) -> None:
    # classify/test_online.py::test_truncate_prompt_tokens: usage counts the kept tokens; one
    # over the maximum length is a 400 naming the field.
    out = ok(clf.post("/classify", {"input": long_text(200), "truncate_prompt_tokens": 5}))
    assert len(out["data"]) == 1 and out["data"][0]["index"] == 0
    assert out["usage"]["prompt_tokens"] == out["usage"]["total_tokens"] == 5
    body = {"input": "test", "truncate_prompt_tokens": max_len(clf) + 1}
    assert "truncate_prompt_tokens" in error_of(clf.post("/classify", body), 400)["message"]


@pytest.mark.parametrize("special", [False, True])
def test_classify_online_test_add_special_tokens(clf: Live, special: bool) -> None:
    # classify/test_online.py::test_add_special_tokens.
    ok(clf.post("/classify", {"input": TEXT, "add_special_tokens": special}))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"add_generation_prompt": True},
        {"continue_final_message": True},
        {"add_special_tokens": True},
    ],
)
def test_classify_online_test_chat_request(chat: Live, chat_ref: Reference, options: dict) -> None:
    # classify/test_online.py::test_chat_request: usage is the rendered chat's token count,
    # moved by each option as the tokenizer moves it (51 / 54 / 49 / 51 there).
    out = ok(chat.post("/classify", {"model": "chat", "messages": CHAT, **options}))
    assert out["object"] == "list" and out["model"] == "chat" and len(out["data"]) == 1
    tokenizer = chat_ref.tokenizer
    prompt = tokenizer.apply_chat_template(
        CHAT,
        tokenize=False,
        add_generation_prompt=options.get("add_generation_prompt", False),
        continue_final_message=options.get("continue_final_message", False),
    )
    special = options.get("add_special_tokens", False)
    want = len(tokenizer(prompt, add_special_tokens=special)["input_ids"])
    assert out["usage"]["prompt_tokens"] == want


def test_classify_online_test_chat_request_both_flags(chat: Live) -> None:
    # classify/test_online.py::test_chat_request, its last case.
    body = {"messages": CHAT, "continue_final_message": True, "add_generation_prompt": True}
    message = error_of(chat.post("/classify", body), 400)["message"]
    assert "Cannot set both `continue_final_message` and `add_generation_prompt` to True." in (
        message
    )


def _same_keys_and_values(got: dict, want: dict, field: str, items: str = "data") -> None:
    assert got.keys() == want.keys()
    for a, b in zip(got[items], want[items], strict=True):
        assert a.keys() == b.keys()
        assert a[field] == pytest.approx(b[field], rel=0.01)


def test_classify_online_test_invocations_completion_request(clf: Live) -> None:
    # classify/test_online.py::test_invocations_completion_request.
    body = {"model": "tiny", "input": TEXT}
    classified, invoked = ok(clf.post("/classify", body)), ok(clf.post("/invocations", body))
    _same_keys_and_values(invoked, classified, "probs")


def test_classify_online_test_invocations_chat_request(chat: Live) -> None:
    # classify/test_online.py::test_invocations_chat_request.
    body = {"model": "chat", "messages": CHAT}
    classified, invoked = ok(chat.post("/classify", body)), ok(chat.post("/invocations", body))
    _same_keys_and_values(invoked, classified, "probs")


@pytest.mark.parametrize("name", ["use_activation", "activation"])
def test_classify_online_test_use_activation(clf: Live, name: str) -> None:
    # classify/test_online.py::test_use_activation (and the older name, openai/
    # test_classification.py::test_activation): default = activated = softmax(raw).
    def outputs(value: bool | None) -> list[float]:
        body: dict = {"input": TEXT} | ({} if value is None else {name: value})
        row: list[float] = ok(clf.post("/classify", body))["data"][0]["probs"]
        return row

    default, with_, without = outputs(None), outputs(True), outputs(False)
    assert close(default, with_, 1e-2)
    assert not close(with_, without, 1e-2)
    assert close(softmax(without), with_, 1e-2)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/score", {"model": "tiny", "queries": "ping", "documents": "pong"}),
        ("/rerank", {"model": "tiny", "query": "ping", "documents": ["pong"]}),
    ],
)
def test_classify_online_test_score_and_test_rerank(clf: Live, path: str, body: dict) -> None:
    # classify/test_online.py::test_score, ::test_rerank: vLLM does not register the scoring
    # routes for a model with several labels, so FastAPI answers {"detail": "Not Found"}.
    response = clf.post(path, body)
    assert response.status_code == 404
    assert response.json()["detail"] == "Not Found"


def test_classify_online_test_pooling_classify(clf: Live) -> None:
    # classify/test_online.py::test_pooling_classify: one row of num_labels numbers.
    body = {"model": "tiny", "input": TEXT, "encoding_format": "float", "task": "classify"}
    out = ok(clf.post("/pooling", body))
    assert len(out["data"]) == 1 and len(out["data"][0]["data"]) == len(LABELS)


POOLING_REFUSALS = {
    "embed": "Unsupported task: 'embed'",
    "token_embed": "Unsupported task: 'token_embed'",
    "token_classify": "Try switching the model's pooling_task via",
    "plugin": "No IOProcessor plugin installed.",
}


@pytest.mark.parametrize("task", list(POOLING_REFUSALS))
def test_classify_online_test_pooling_not_supported(clf: Live, task: str) -> None:
    # classify/test_online.py::test_pooling_not_supported.
    body = {"model": "tiny", "input": TEXT, "encoding_format": "float", "task": task}
    error = error_of(clf.post("/pooling", body), 400)
    assert error["type"] == "BadRequestError"
    assert error["message"].startswith(POOLING_REFUSALS[task]), error["message"]


# ===================================================================================
# vLLM tests/entrypoints/pooling/scoring/test_cross_encoder_online.py (a reranker)
# ===================================================================================


def test_cross_encoder_online_test_basic(cross: Live, cross_ref: Reference) -> None:
    # test_cross_encoder_online.py::test_basic.
    assert cross.get("/v1/models").json()["data"][0]["id"] == "cross"
    body = cross.post("/tokenize", {"model": "cross", "prompt": TEXT}).json()
    assert body["tokens"] == cross_ref.ids(TEXT)


@pytest.mark.parametrize(
    ("first", "second", "pairs"),
    [
        # ::test_score_api_queries_str_1_documents_str_1
        (TEXTS_1[0], TEXTS_2[0], [(TEXTS_1[0], TEXTS_2[0])]),
        # ::test_score_api_queries_str_1_documents_str_n
        (TEXTS_1[0], TEXTS_2, [(TEXTS_1[0], TEXTS_2[0]), (TEXTS_1[0], TEXTS_2[1])]),
        # ::test_score_api_queries_str_n_documents_str_n (and ::test_score_api_queries_vs_documents)
        (TEXTS_1, TEXTS_2, list(zip(TEXTS_1, TEXTS_2, strict=True))),
    ],
)
def test_cross_encoder_online_test_score_api_queries_documents(
    cross: Live, cross_ref: Reference, first: object, second: object, pairs: list
) -> None:
    body = {"model": "cross", "queries": first, "documents": second}
    score = ok(cross.post("/score", body))
    assert score["id"] and len(score["data"]) == len(pairs)
    for item, (a, b) in zip(score["data"], pairs, strict=True):
        assert item["score"] == pytest.approx(sigmoid(cross_ref.logits(a, b)[0]), abs=1e-5)


@pytest.mark.parametrize(
    ("first", "second"),
    # ::test_score_api_queries_vs_items, ::test_score_api_text_1_vs_text_2,
    # ::test_score_api_data_1_vs_data_2
    [("queries", "items"), ("text_1", "text_2"), ("data_1", "data_2")],
)
def test_cross_encoder_online_test_score_api_field_pairs(
    cross: Live, cross_ref: Reference, first: str, second: str
) -> None:
    score = ok(cross.post("/score", {"model": "cross", first: TEXTS_1, second: TEXTS_2}))
    assert score["id"] and len(score["data"]) == 2
    for item, (a, b) in zip(score["data"], zip(TEXTS_1, TEXTS_2, strict=True), strict=True):
        assert item["score"] == pytest.approx(sigmoid(cross_ref.logits(a, b)[0]), abs=1e-5)


def _scores(cross_ref: Reference, query: str, docs: list[str]) -> list[float]:
    return [sigmoid(cross_ref.logits(query, doc)[0]) for doc in docs]


def test_cross_encoder_online_test_rerank_api_texts(cross: Live, cross_ref: Reference) -> None:
    # ::test_rerank_api_texts: every document, best first (the peer's thresholds are its
    # model's; here the order and the scores are plain transformers').
    out = ok(cross.post("/rerank", {"model": "cross", "query": QUERY, "documents": DOCS}))
    assert out["id"] and len(out["results"]) == 2
    want = _scores(cross_ref, QUERY, DOCS)
    got = [r["relevance_score"] for r in out["results"]]
    assert got == sorted(got, reverse=True)
    for result in out["results"]:
        assert result["relevance_score"] == pytest.approx(want[result["index"]], abs=1e-5)


def test_cross_encoder_online_test_rerank_api_top_n(cross: Live, cross_ref: Reference) -> None:
    # ::test_rerank_api_top_n: the best two of three.
    docs = [*DOCS, "the actress was brilliant"]
    body = {"model": "cross", "query": QUERY, "documents": docs, "top_n": 2}
    out = ok(cross.post("/rerank", body))
    assert len(out["results"]) == 2
    want = _scores(cross_ref, QUERY, docs)
    best = sorted(range(3), key=lambda i: -want[i])[:2]
    assert [r["index"] for r in out["results"]] == best


def test_cross_encoder_online_test_rerank_api_max_model_len(cross: Live) -> None:
    # ::test_rerank_api_max_model_len.
    body = {"model": "cross", "query": long_text(300), "documents": DOCS}
    response = cross.post("/rerank", body)
    assert response.status_code == 400
    assert "Please reduce the length of the input prompt" in response.text


def test_cross_encoder_online_test_score_api_max_model_len(cross: Live) -> None:
    # ::test_score_api_max_model_len: too long is a 400; so is a truncation past the maximum.
    body: dict = {"model": "cross", "queries": long_text(300), "documents": DOCS}
    response = cross.post("/score", body)
    assert response.status_code == 400
    assert "Please reduce the length of the input prompt" in response.text
    body["truncate_prompt_tokens"] = max_len(cross) + 1
    response = cross.post("/score", body)
    assert response.status_code == 400
    assert "Please request a smaller truncation size." in response.text


def test_cross_encoder_online_test_invocations(cross: Live) -> None:
    # ::test_invocations: a rerank body on /invocations gets /rerank's answer.
    body = {"model": "cross", "query": QUERY, "documents": DOCS}
    reranked, invoked = ok(cross.post("/rerank", body)), ok(cross.post("/invocations", body))
    _same_keys_and_values(invoked, reranked, "relevance_score", "results")


def test_cross_encoder_online_test_use_activation(cross: Live) -> None:
    # ::test_use_activation: default = activated = sigmoid(raw), on /rerank.
    def outputs(value: bool | None) -> list[float]:
        body: dict = {"query": QUERY, "documents": DOCS}
        if value is not None:
            body["use_activation"] = value
        results = sorted(ok(cross.post("/rerank", body))["results"], key=lambda r: r["index"])
        return [r["relevance_score"] for r in results]

    default, with_, without = outputs(None), outputs(True), outputs(False)
    assert close(default, with_, 1e-2)
    assert not close(with_, without, 1e-2)
    assert close([sigmoid(x) for x in without], with_, 1e-2)


def test_cross_encoder_online_test_pooling_classify(cross: Live) -> None:
    # ::test_pooling_classify: one number per prompt.
    body = {"model": "cross", "input": TEXT, "encoding_format": "float", "task": "classify"}
    out = ok(cross.post("/pooling", body))
    assert len(out["data"]) == 1 and len(out["data"][0]["data"]) == 1


def test_cross_encoder_online_test_rerank_max_tokens_per_doc(cross: Live) -> None:
    # ::test_rerank_max_tokens_per_doc (and test_max_tokens_per_doc.py's per-model copies).
    body = {"query": QUERY, "documents": [long_text(100), DOCS[0]], "max_tokens_per_doc": 10}
    out = ok(cross.post("/rerank", body))
    assert out["id"] and len(out["results"]) == 2 and out["usage"]["prompt_tokens"] > 0


def test_cross_encoder_online_test_rerank_max_tokens_per_doc_reduces_tokens(cross: Live) -> None:
    # ::test_rerank_max_tokens_per_doc_reduces_tokens.
    doc = long_text(60)
    limit = max_len(cross) - 1
    body = {"query": QUERY, "documents": [doc], "truncate_prompt_tokens": limit}
    unlimited = ok(cross.post("/rerank", body))
    body = {"query": QUERY, "documents": [doc], "max_tokens_per_doc": 10}
    limited = ok(cross.post("/rerank", body))
    assert limited["usage"]["prompt_tokens"] < unlimited["usage"]["prompt_tokens"]


@pytest.mark.parametrize("k", [0, -5])
def test_cross_encoder_online_test_rerank_max_tokens_per_doc_validation(
    cross: Live, k: int
) -> None:
    # ::test_rerank_max_tokens_per_doc_validation.
    body = {"query": QUERY, "documents": DOCS[:1], "max_tokens_per_doc": k}
    response = cross.post("/rerank", body)
    assert response.status_code == 400
    assert "max_tokens_per_doc must be a positive integer" in response.text


def test_cross_encoder_online_test_score_max_tokens_per_doc_with_score_template(
    cross: Live,
) -> None:
    # ::test_score_max_tokens_per_doc_with_score_template.
    body = {"query": QUERY, "documents": [long_text(80)], "max_tokens_per_doc": 15}
    out = ok(cross.post("/rerank", body))
    assert len(out["results"]) == 1 and out["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize("route", ["/score", "/rerank"])
def test_pooling_common_params_truncation_side(cross: Live, route: str) -> None:
    # vLLM's scoring requests take its pooling-common `truncation_side` (the
    # pooling-common-params its docs list for /score); right is the tokenizer's own side.
    doc = long_text(60, seed=3)
    pair = {"text_1": QUERY, "text_2": doc} if route == "/score" else {"query": QUERY}
    body: dict = {"truncate_prompt_tokens": 20, **pair}
    if route == "/rerank":
        body["documents"] = [doc]
    got = {}
    for side in (None, "left", "right"):
        out = ok(cross.post(route, body | ({"truncation_side": side} if side else {})))
        assert out["usage"]["prompt_tokens"] == 20
        rows = out["data"] if route == "/score" else out["results"]
        got[side] = rows[0]["score" if route == "/score" else "relevance_score"]
    assert got[None] == pytest.approx(got["right"], abs=1e-6)
    assert got["left"] != pytest.approx(got["right"], abs=1e-6)


@pytest.mark.parametrize("task", ["embed", "token_embed", "plugin"])
def test_cross_encoder_online_test_pooling_not_supported(cross: Live, task: str) -> None:
    # ::test_pooling_not_supported.
    body = {"model": "cross", "input": TEXT, "encoding_format": "float", "task": task}
    error = error_of(cross.post("/pooling", body), 400)
    assert error["type"] == "BadRequestError"
    assert error["message"].startswith(POOLING_REFUSALS[task]), error["message"]


# ===================================================================================
# vLLM tests/entrypoints/pooling/basic/test_truncation.py (there on /v1/embeddings)
# ===================================================================================


def test_truncation_test_smaller_truncation_size(clf: Live) -> None:
    out = ok(clf.post("/classify", {"input": long_text(200), "truncate_prompt_tokens": 10}))
    assert out["usage"]["prompt_tokens"] == 10


def test_truncation_test_bigger_truncation_size(clf: Live) -> None:
    # The exact text there is an older vLLM's; both of its wordings end the same way.
    body = {"input": long_text(200), "truncate_prompt_tokens": max_len(clf) + 1}
    error = error_of(clf.post("/classify", body), 400)
    assert error["type"] == "BadRequestError"
    assert error["message"].startswith("truncate_prompt_tokens")
    assert "Please request a smaller truncation size." in error["message"]


def test_truncation_test_max_truncation_size(clf: Live) -> None:
    out = ok(clf.post("/classify", {"input": long_text(200), "truncate_prompt_tokens": -1}))
    assert out["usage"]["prompt_tokens"] == max_len(clf)


# ===================================================================================
# vLLM tests/entrypoints/pooling/test_pooling_prompt_limit.py (VLLM_MAX_COMPLETION_PROMPTS;
# here --max-client-batch-size, 8 on this server)
# ===================================================================================


@pytest.mark.parametrize("route", ["/classify", "/pooling"])
@pytest.mark.parametrize("prompts", [["x"] * 9, [[1]] * 9])
def test_pooling_prompt_limit_input_list_rejected(clf: Live, route: str, prompts: list) -> None:
    # ::TestPoolingPromptLimit::test_string_list_rejected, ::test_token_id_lists_rejected,
    # ::TestClassifyPromptLimit::test_input_list_rejected.
    error_of(clf.post(route, {"input": prompts}), 400)


@pytest.mark.parametrize("route", ["/classify", "/pooling"])
@pytest.mark.parametrize("prompt", [["x"] * 8, "hello world", list(range(5, 17))])
def test_pooling_prompt_limit_within_limit_accepted(clf: Live, route: str, prompt: object) -> None:
    # ::test_within_limit_accepted, ::test_scalar_string_unaffected,
    # ::test_single_token_id_list_unaffected: one list of ids is one prompt.
    ok(clf.post(route, {"input": prompt}))
