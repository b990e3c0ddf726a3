"""`POST /score` and `POST /rerank` (and `/v1/…`): vLLM's routes for one-label models.

Each (text_1, text_2) or (query, document) pair goes through the tokenizer as a pair, as
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
from server.prompts import activation, truncation
from server.responses import MsgspecResponse
from server.state import AppState


def _require_one_label(state: AppState, route: str) -> None:
    labels = state.engine.info.num_labels
    if labels != 1:
        raise not_found(
            f"{route} needs a model with one output (a cross-encoder or reranker); this model "
            f"has {labels} labels. Use /classify."
        )


def _texts(value: str | list[str], field: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not value:
        raise bad_request(f"`{field}` must not be empty.", field)
    return value


def _score_path(req: ScoreRequest, index: int, part: int | None) -> str:
    """The JSON path of pair `index`'s first (`part` 0) or second text; one text in
    `text_1` serves every pair."""
    field, value = ("text_1", req.text_1) if part == 0 else ("text_2", req.text_2)
    if isinstance(value, str):
        return field
    return f"{field}[{0 if len(value) == 1 else index}]"


async def score(body: bytes, state: AppState, call: Call) -> Response:
    req = decode(score_decoder, body)
    call.adopt(req.request_id)
    model = check_model(state, req.model)
    _require_one_label(state, "/score")
    first, second = _texts(req.text_1, "text_1"), _texts(req.text_2, "text_2")
    check_batch_size(state, max(len(first), len(second)), "text_2")
    if len(first) == 1:
        first = first * len(second)
    elif len(first) != len(second):
        raise bad_request(
            f"`text_1` has {len(first)} texts and `text_2` {len(second)}: give one `text_1`, "
            "or as many as `text_2`.",
            "text_2",
        )
    options = ClassifyOptions(
        truncate_prompt_tokens=truncation(req.truncate_prompt_tokens, state.config.auto_truncate),
        priority=req.priority,
    )
    kind = activation(state.default_activation, req.use_activation, req.activation)
    try:
        rows, result = await classify_prompts(
            state, list(zip(first, second, strict=True)), options, kind
        )
    except InvalidInput as exc:
        names = WireNames("text_2", lambda i, part: _score_path(req, i, part))
        raise names.error(exc) from exc
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
    documents = _texts(req.documents, "documents")
    check_batch_size(state, len(documents), "documents")
    options = ClassifyOptions(
        truncate_prompt_tokens=truncation(req.truncate_prompt_tokens, state.config.auto_truncate),
        priority=req.priority,
    )
    kind = activation(state.default_activation, req.use_activation)
    try:
        rows, result = await classify_prompts(
            state, [(req.query, d) for d in documents], options, kind
        )
    except InvalidInput as exc:
        names = WireNames("documents", lambda i, part: "query" if part == 0 else f"documents[{i}]")
        raise names.error(exc) from exc
    ranked = sorted(range(len(documents)), key=lambda i: -rows[i][0])
    if req.top_n:
        ranked = ranked[: req.top_n]
    response = RerankResponse(
        id=f"rerank-{call.request_id}",
        model=model,
        usage=RerankUsage(total_tokens=sum(result.prompt_tokens)),
        results=[
            RerankResult(index=i, document=RerankDocument(documents[i]), relevance_score=rows[i][0])
            for i in ranked
        ],
    )
    return MsgspecResponse(response, headers=timing_headers(call, result))
