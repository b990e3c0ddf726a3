"""`POST /score` and `POST /rerank` (and `/v1/…`, `/v2/rerank`): vLLM's routes for one-label
models.

Each (first, second) or (query, document) pair goes through the tokenizer as a pair, as
cross-encoders are trained; the score is the activated single logit (sigmoid by default).
"""

from __future__ import annotations

import time

from starlette.responses import Response

from engine import ClassifyOptions, InvalidInput
from protocol.classify import Usage
from protocol.codec import decode, rerank_decoder, score_decoder
from protocol.scoring import (
    RerankDocument,
    RerankResponse,
    RerankResult,
    RerankUsage,
    ScoreData,
    ScoreRequest,
    ScoreResponse,
)
from server.classify import check_batch_size, classify_prompts, timing_headers
from server.errors import WireNames, bad_request, not_found
from server.http import Call, check_model
from server.prompts import activation, check_truncation, truncation, vllm_error
from server.responses import MsgspecResponse
from server.state import AppState

# vLLM's ScoreRequest is a union of these field pairs, tried in this order: where a body
# completes several, the first complete one is read and the others are ignored, as there.
SCORE_PAIRS = (
    ("queries", "documents"),
    ("queries", "items"),
    ("data_1", "data_2"),
    ("text_1", "text_2"),
)
Texts = str | list[str]
_PAIRS_TEXT = (
    "`text_1` and `text_2`, `queries` and `documents`, `queries` and `items`, or "
    "`data_1` and `data_2`"
)


def _require_one_label(state: AppState, route: str) -> None:
    labels = state.engine.info.num_labels
    if labels != 1:
        raise not_found(
            f"{route} needs a model with one output (a cross-encoder or reranker); this model "
            f"has {labels} labels. Use /classify.",
            # vLLM registers no scoring route for such a model: FastAPI's 404 there.
            detail="Not Found",
        )


def _texts(value: str | list[str], field: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not value:
        raise bad_request(f"`{field}` must not be empty.", field)
    return value


def _per_doc(value: int | None) -> int | None:
    # vLLM's message; its clients match on it.
    if value is not None and value < 1:
        raise bad_request(
            f"max_tokens_per_doc must be a positive integer, got {value}.", "max_tokens_per_doc"
        )
    return value


def score_pair(req: ScoreRequest) -> tuple[tuple[str, Texts], tuple[str, Texts]]:
    """The (name, value) of the body's first and second texts; 400 when no pair is complete."""
    given = {name: getattr(req, name) for pair in SCORE_PAIRS for name in pair}
    for first, second in SCORE_PAIRS:
        if given[first] is not None and given[second] is not None:
            return (first, given[first]), (second, given[second])
    started = [(a, b) for a, b in SCORE_PAIRS if given[a] is not None or given[b] is not None]
    detail = ""
    if started:
        a, b = started[0]
        detail = f" `{b if given[a] is not None else a}` is missing."
    # No field is at fault by itself: param stays null, as for any other missing field.
    raise bad_request(f"Send {_PAIRS_TEXT}.{detail}", None)


def _pair_path(field: str, value: Texts, index: int) -> str:
    """The JSON path of pair `index`'s text in `field`; one text there serves every pair."""
    if isinstance(value, str):
        return field
    return f"{field}[{0 if len(value) == 1 else index}]"


async def score(body: bytes, state: AppState, call: Call) -> Response:
    req = decode(score_decoder, body)
    call.adopt(req.request_id)
    # Part of decoding in vLLM (its request union), so a 400 before the model is looked at.
    (name_1, value_1), (name_2, value_2) = score_pair(req)
    model = check_model(state, req.model)
    _require_one_label(state, "/score")
    check_truncation(req.truncate_prompt_tokens, state.engine.max_model_len)
    per_doc = _per_doc(req.max_tokens_per_doc)
    first, second = _texts(value_1, name_1), _texts(value_2, name_2)
    check_batch_size(state, max(len(first), len(second)), name_2)
    if len(first) == 1:
        first = first * len(second)
    elif len(first) != len(second):
        raise bad_request(
            f"`{name_1}` has {len(first)} texts and `{name_2}` {len(second)}: give one "
            f"`{name_1}`, or as many as `{name_2}`.",
            name_2,
        )
    if per_doc is not None:
        second = await state.engine.heads(second, per_doc)
    options = ClassifyOptions(
        truncate_prompt_tokens=truncation(req.truncate_prompt_tokens, state.config.auto_truncate),
        truncation_side=req.truncation_side,
        priority=req.priority,
    )
    kind = activation(state.default_activation, req.use_activation, req.activation)
    try:
        rows, result = await classify_prompts(
            state, list(zip(first, second, strict=True)), options, kind
        )
    except InvalidInput as exc:
        names = WireNames(
            name_2,
            lambda i, part: (
                _pair_path(name_1, value_1, i) if part == 0 else _pair_path(name_2, value_2, i)
            ),
        )
        raise vllm_error(names, exc) from exc
    tokens = sum(result.prompt_tokens)
    response = ScoreResponse(
        id=f"score-{call.request_id}",
        created=int(time.time()),
        model=model,
        data=[ScoreData(index=i, score=row[0]) for i, row in enumerate(rows)],
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )
    return MsgspecResponse(response, headers=timing_headers(call, result))


async def rerank(body: bytes, state: AppState, call: Call) -> Response:
    req = decode(rerank_decoder, body)
    call.adopt(req.request_id)
    model = check_model(state, req.model)
    _require_one_label(state, "/rerank")
    check_truncation(req.truncate_prompt_tokens, state.engine.max_model_len)
    per_doc = _per_doc(req.max_tokens_per_doc)
    # Cohere's v1 SDK, Jina and litellm send `{"text": ...}` objects; the answer echoes the text.
    # One bare string is one document, as vLLM reads it.
    bare = isinstance(req.documents, str)
    given = [req.documents] if isinstance(req.documents, str) else req.documents
    documents = _texts([d if isinstance(d, str) else d.text for d in given], "documents")
    check_batch_size(state, len(documents), "documents")
    scored = documents if per_doc is None else await state.engine.heads(documents, per_doc)
    options = ClassifyOptions(
        truncate_prompt_tokens=truncation(req.truncate_prompt_tokens, state.config.auto_truncate),
        truncation_side=req.truncation_side,
        priority=req.priority,
    )
    kind = activation(state.default_activation, req.use_activation, req.activation)
    try:
        rows, result = await classify_prompts(
            state, [(req.query, d) for d in scored], options, kind
        )
    except InvalidInput as exc:
        names = WireNames(
            "documents",
            lambda i, part: "query" if part == 0 else "documents" if bare else f"documents[{i}]",
        )
        raise vllm_error(names, exc) from exc
    ranked = sorted(range(len(documents)), key=lambda i: -rows[i][0])
    if req.top_n:
        ranked = ranked[: req.top_n]
    tokens = sum(result.prompt_tokens)
    response = RerankResponse(
        id=f"rerank-{call.request_id}",
        model=model,
        usage=RerankUsage(prompt_tokens=tokens, total_tokens=tokens),
        results=[
            RerankResult(index=i, document=RerankDocument(documents[i]), relevance_score=rows[i][0])
            for i in ranked
        ],
    )
    return MsgspecResponse(response, headers=timing_headers(call, result))
