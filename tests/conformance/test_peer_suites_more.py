"""The peers' own tests, ported (continued from test_peer_suites.py): vLLM's /pooling and
tokenization suites, SGLang's classify tests, TEI's router tests. One test per peer test,
named after it; every number is classifyd's own or plain transformers'.
"""

from __future__ import annotations

import base64
import struct

import pytest

from tests.conformance.conftest import LABELS, Live, Reference, close
from tests.conformance.peers import CHAT, TEXT, error_of, max_len, ok
from tests.support import softmax

# ===================================================================================
# vLLM tests/entrypoints/pooling/pooling/test_online.py (a reward model there)
# ===================================================================================


@pytest.mark.parametrize("as_ids", [False, True])
def test_pooling_online_test_completion_request(
    clf: Live, bert_ref: Reference, as_ids: bool
) -> None:
    ids = bert_ref.ids(TEXT)
    body = {"model": "tiny", "input": ids if as_ids else TEXT, "encoding_format": "float"}
    out = ok(clf.post("/pooling", body))
    assert out["id"] and len(out["data"]) == 1
    usage = out["usage"]
    assert usage["completion_tokens"] == 0
    assert usage["prompt_tokens"] == usage["total_tokens"] == len(ids)


@pytest.mark.parametrize("as_ids", [False, True])
def test_pooling_online_test_completion_request_batched(
    clf: Live, bert_ref: Reference, as_ids: bool
) -> None:
    n, ids = 8, bert_ref.ids(TEXT)
    body = {"input": [ids] * n if as_ids else [TEXT] * n, "encoding_format": "float"}
    out = ok(clf.post("/pooling", body))
    assert len(out["data"]) == n
    usage = out["usage"]
    assert usage["completion_tokens"] == 0
    assert usage["prompt_tokens"] == usage["total_tokens"] == len(ids) * n


def test_pooling_online_test_conversation_pooling(chat: Live, chat_ref: Reference) -> None:
    # A chat equals its rendered template sent as text without special tokens.
    chatted = ok(chat.post("/pooling", {"messages": CHAT, "encoding_format": "float"}))
    prompt = chat_ref.tokenizer.apply_chat_template(CHAT, tokenize=False)
    body = {"input": prompt, "encoding_format": "float", "add_special_tokens": False}
    completed = ok(chat.post("/pooling", body))
    assert chatted["created"] <= completed["created"]
    for out in (chatted, completed):
        del out["id"], out["created"]
    assert chatted == completed


def test_pooling_online_test_batch_base64_pooling(clf: Live) -> None:
    texts = ["hello my name is", "the best thing about the film is the music"]
    floats = ok(clf.post("/pooling", {"input": texts, "encoding_format": "float"}))
    packed = ok(clf.post("/pooling", {"input": texts, "encoding_format": "base64"}))
    default = ok(clf.post("/pooling", {"input": texts}))
    for want, got, plain in zip(floats["data"], packed["data"], default["data"], strict=True):
        raw = base64.b64decode(got["data"])
        decoded = list(struct.unpack(f"={len(raw) // 4}f", raw))
        assert close(decoded, want["data"], 1e-6)
        assert plain["data"] == want["data"]


def _decode(raw: bytes, dtype: str, endianness: str) -> list[float]:
    mark = {"little": "<", "big": ">", "native": "="}[endianness]
    if dtype == "bfloat16":
        halves = struct.unpack(f"{mark}{len(raw) // 2}H", raw)
        return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]
    code, size = {"float32": ("f", 4), "float16": ("e", 2)}[dtype]
    return list(struct.unpack(f"{mark}{len(raw) // size}{code}", raw))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("endianness", ["native", "little", "big"])
def test_pooling_online_test_base64_embed_dtype_and_endianness(
    clf: Live, dtype: str, endianness: str
) -> None:
    texts = [TEXT] * 3
    floats = ok(clf.post("/pooling", {"input": texts, "encoding_format": "float"}))
    body = {"input": texts, "encoding_format": "base64", "embed_dtype": dtype}
    packed = ok(clf.post("/pooling", body | {"endianness": endianness}))
    for want, got in zip(floats["data"], packed["data"], strict=True):
        decoded = _decode(base64.b64decode(got["data"]), dtype, endianness)
        assert close(decoded, want["data"], 1e-2), (dtype, endianness)


@pytest.mark.parametrize("param", ["encoding_format", "embed_dtype", "endianness"])
def test_pooling_online_test_params_not_supported(clf: Live, param: str) -> None:
    # There the message also holds pydantic's error type ("literal_error"): see docs/API.md.
    body = {"input": TEXT, "encoding_format": "base64", param: f"bad_{param}"}
    error = error_of(clf.post("/pooling", body), 400)
    assert f"bad_{param}" in error["message"], error["message"]


# ===================================================================================
# vLLM tests/entrypoints/openai/test_tokenization.py
# ===================================================================================


@pytest.mark.parametrize("special", [False, True])
def test_tokenization_test_tokenize_completions(
    clf: Live, bert_ref: Reference, special: bool
) -> None:
    prompt = "vllm1 this is a test prompt"
    tokens = bert_ref.tokenizer.encode(prompt, add_special_tokens=special)
    body = {"add_special_tokens": special, "model": "tiny", "prompt": prompt}
    result = ok(clf.post("/tokenize", body))
    assert result["tokens"] == tokens and result["count"] == len(tokens)
    assert result["max_model_len"] == max_len(clf)
    assert result["token_strs"] is None


@pytest.mark.parametrize("tools", [None, [{"type": "function", "function": {"name": "f"}}]])
def test_tokenization_test_tokenize_chat(
    chat: Live, chat_ref: Reference, tools: list | None
) -> None:
    # ::test_tokenize_chat and ::test_tokenize_chat_with_tools (the tiny template ignores
    # tools; they must still be accepted and passed).
    tokenizer = chat_ref.tokenizer
    for add_generation in (False, True):
        for special in (False, True):
            conversation = [*CHAT]
            for continue_final in (False, True):
                if add_generation and continue_final:
                    continue
                if continue_final:
                    conversation.append({"role": "assistant", "content": "sure"})
                prompt = tokenizer.apply_chat_template(
                    conversation,
                    tools=tools,
                    add_generation_prompt=add_generation,
                    continue_final_message=continue_final,
                    tokenize=False,
                )
                tokens = tokenizer.encode(prompt, add_special_tokens=special)
                body: dict = {
                    "add_generation_prompt": add_generation,
                    "continue_final_message": continue_final,
                    "add_special_tokens": special,
                    "messages": conversation,
                    "model": "chat",
                }
                if tools:
                    body["tools"] = tools
                result = ok(chat.post("/tokenize", body))
                assert result["tokens"] == tokens, body
                assert result["count"] == len(tokens)
                assert result["max_model_len"] == max_len(chat)
                assert result["token_strs"] is None


def test_tokenization_test_tokenize_with_return_token_strs(clf: Live, bert_ref: Reference) -> None:
    prompt = "this is a token_strs test prompt! vllm1"
    result = ok(clf.post("/tokenize", {"prompt": prompt, "return_token_strs": True}))
    tokens = bert_ref.tokenizer.encode(prompt, add_special_tokens=True)
    assert result["tokens"] == tokens and result["count"] == len(tokens)
    assert result["token_strs"] == bert_ref.tokenizer.convert_ids_to_tokens(tokens)


def test_tokenization_test_detokenize(clf: Live, bert_ref: Reference) -> None:
    # Words of the tiny vocabulary, so that decoding gives the text back, as there.
    prompt = "the movie was a great film"
    tokens = bert_ref.tokenizer.encode(prompt, add_special_tokens=False)
    response = clf.post("/detokenize", {"model": "tiny", "tokens": tokens})
    assert ok(response) == {"prompt": prompt}


def test_tokenization_test_tokenizer_info(chat: Live) -> None:
    # ::test_tokenizer_info_basic, ::_schema, ::_added_tokens_structure,
    # ::_consistency_with_tokenize, ::_chat_template.
    info = ok(chat.get("/tokenizer_info"))
    assert isinstance(info["tokenizer_class"], str) and info["tokenizer_class"]
    types = {
        "add_bos_token": bool,
        "add_prefix_space": bool,
        "clean_up_tokenization_spaces": bool,
        "split_special_tokens": bool,
        "bos_token": str,
        "eos_token": str,
        "pad_token": str,
        "unk_token": str,
        "chat_template": str,
        "errors": str,
        "model_max_length": int,
        "additional_special_tokens": list,
        "added_tokens_decoder": dict,
    }
    for field, type_ in types.items():
        if info.get(field) is not None:
            assert isinstance(info[field], type_), field
    for token_id, token in (info.get("added_tokens_decoder") or {}).items():
        assert isinstance(token_id, str) and isinstance(token, dict)
        assert "content" in token and isinstance(token["special"], bool)
    tokenized = ok(chat.post("/tokenize", {"prompt": "hello world!"}))
    if info.get("model_max_length") and tokenized.get("max_model_len"):
        assert info["model_max_length"] >= tokenized["max_model_len"]
    assert isinstance(info["chat_template"], str) and info["chat_template"].strip()


# ===================================================================================
# SGLang test/srt/.../test_serving_classify.py (OpenAIServingClassify's unit tests, here
# over HTTP on /v1/classify)
# ===================================================================================


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("   \t", "Input cannot be empty or whitespace only"),
        ([], "Input cannot be empty"),
        (["ok", ""], "Input at index 1 cannot be empty or whitespace only"),
    ],
)
def test_serving_classify_test_validate_rejects_empty_and_whitespace_inputs(
    clf: Live, value: object, message: str
) -> None:
    response = clf.post("/v1/classify", {"model": "tiny", "input": value})
    assert response.status_code == 400
    assert response.json()["message"] == message


@pytest.mark.parametrize(
    ("value", "message"),
    [([1, -1], "Token ID at index 1 must be non-negative"), ([1, "bad"], None)],
)
def test_serving_classify_test_validate_rejects_mixed_or_negative_token_ids(
    clf: Live, value: list, message: str | None
) -> None:
    response = clf.post("/v1/classify", {"model": "tiny", "input": value})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "BadRequestError"
    if message is not None:
        assert body["message"] == message


def test_serving_classify_test_build_classify_response_applies_softmax_and_usage_totals(
    clf: Live, bert_ref: Reference
) -> None:
    texts = ["the plot was great", "a dull and boring film"]
    out = ok(clf.post("/v1/classify", {"model": "tiny", "input": texts}))
    assert out["id"].startswith("classify-") and out["model"] == "tiny"
    usage = out["usage"]
    tokens = sum(len(bert_ref.ids(t)) for t in texts)
    assert usage["prompt_tokens"] == usage["total_tokens"] == tokens
    assert usage["completion_tokens"] == 0
    assert [item["index"] for item in out["data"]] == [0, 1]
    for item, text in zip(out["data"], texts, strict=True):
        assert abs(sum(item["probs"]) - 1) < 1e-6 and item["num_classes"] == len(LABELS)
        want = softmax(bert_ref.logits(text))
        assert close(item["probs"], want)
        assert item["label"] == LABELS[max(range(len(want)), key=want.__getitem__)]


def test_serving_classify_test_init_builds_default_label_mapping_from_num_labels(
    chat: Live,
) -> None:
    # The chat model has no id2label: LABEL_<i>.
    out = ok(chat.post("/v1/classify", {"input": "hello"}))
    assert out["data"][0]["label"] in ("LABEL_0", "LABEL_1")


def test_classify_lora_api_test_protocol_rejects_non_classification_input(clf: Live) -> None:
    # test_classify_lora_api.py::test_protocol_rejects_non_classification_input: 422 there,
    # from a bare FastAPI app without SGLang's handlers; classifyd answers 400 (docs/API.md).
    response = clf.post("/v1/classify", {"model": "tiny", "input": {"text": "please"}})
    assert response.status_code == 400
    assert response.json()["object"] == "error"


# ===================================================================================
# text-embeddings-inference router/tests/test_http_predict.rs, test_http_rerank.rs
# ===================================================================================


def test_http_predict_test_predict(clf: Live) -> None:
    # A batch of the same text gives each item the single answer (TEI compares to its
    # snapshot's precision).
    single = ok(clf.post("/predict", {"inputs": "test"}))
    batch = ok(clf.post("/predict", {"inputs": [["test"]] * 5}))
    assert len(batch) == 5
    for predictions in batch:
        assert [p["label"] for p in predictions] == [p["label"] for p in single]
        for got, want in zip(predictions, single, strict=True):
            assert got["score"] == pytest.approx(want["score"], abs=1e-5)


def test_http_rerank_test_rerank(cross: Live) -> None:
    # Two equal texts score the same, the later one ranked first (TEI sorts ascending and
    # reverses); `return_text` echoes each text.
    body = {"query": "test", "texts": ["test", "other", "test"], "return_text": True}
    ranks = ok(cross.post("/rerank", body))
    assert [set(r) for r in ranks] == [{"index", "score", "text"}] * 3
    assert [r["text"] for r in ranks] == [body["texts"][r["index"]] for r in ranks]  # type: ignore[index]
    assert {ranks[0]["index"], ranks[1]["index"]} == {0, 2}
    assert ranks[0]["score"] == pytest.approx(ranks[1]["score"], abs=1e-6)
    if ranks[0]["score"] == ranks[1]["score"]:
        assert (ranks[0]["index"], ranks[1]["index"]) == (2, 0)
