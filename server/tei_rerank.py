"""TEI's rerank (`POST /rerank` with `texts`), and TEI's `POST /`.

`/rerank` is vLLM's and TEI's at once: the body decides. With `texts` (and no `documents`) it
is TEI's: a bare list `[{index, score, text?}]`, best first, TEI's errors and headers; any
other body goes to vLLM's handler (server/scoring.py) unchanged.
`POST /` is what TEI answers at its root: predict for a classifier, rerank for a one-label
model (TEI's `ModelType::Reranker`), which is where `huggingface_hub.InferenceClient(model=
<url>)` posts.
"""

from __future__ import annotations

import time

import msgspec
from starlette.responses import Response

from engine import InvalidInput
from protocol.codec import decode, tei_rerank_decoder
from protocol.tei import Rank, RerankFields
from server import scoring, tei
from server.classify import classify_prompts
from server.http import Call
from server.responses import MsgspecResponse
from server.state import AppState
from server.tei_errors import TeiApiError, batch_too_large, input_error, to_tei_response

_fields_decoder = msgspec.json.Decoder(RerankFields)


def is_tei_rerank(body: bytes) -> bool:
    """TEI's body: `texts` and no `documents`. A body that is no JSON object is vLLM's to
    refuse."""
    # vLLM's bodies (most of them) never name `texts`: only a body that does is parsed here,
    # before the handler parses it again.
    if b'"texts"' not in body:
        return False
    try:
        fields = _fields_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return False
    return bool(fields.texts) and not fields.documents


async def rerank(body: bytes, state: AppState, call: Call) -> Response:
    if not is_tei_rerank(body):
        return await scoring.rerank(body, state, call)
    try:
        return await rerank_texts(body, state, call)
    except Exception as exc:  # TEI's body gets TEI's error body
        return to_tei_response(exc, call.request_id)


async def rerank_texts(body: bytes, state: AppState, call: Call) -> Response:
    """TEI's rerank, its checks in TEI's order: empty `texts`, model kind, batch size."""
    began = time.perf_counter()
    req = decode(tei_rerank_decoder, body)
    if not req.texts:
        raise TeiApiError("Empty", "`texts` cannot be empty")
    if state.engine.info.num_labels != 1:
        raise TeiApiError("Backend", "Backend error: model is not a re-ranker model")
    limit = state.config.max_client_batch_size
    if len(req.texts) > limit:
        raise batch_too_large(len(req.texts), limit)
    kind = "none" if req.raw_scores else state.default_activation
    options = tei.tei_options(state, req.truncate, req.truncation_direction)
    pairs = [(req.query, text) for text in req.texts]
    try:
        rows, result = await classify_prompts(state, pairs, options, kind)
    except InvalidInput as exc:
        raise input_error(exc, lambda i, part: "query" if part == 0 else f"texts[{i}]") from exc
    # TEI sorts ascending and reverses: of equal scores, the later text ranks first.
    ranked = sorted(range(len(rows)), key=lambda i: (rows[i][0], i), reverse=True)
    ranks = [
        Rank(index=i, score=rows[i][0], text=req.texts[i] if req.return_text else None)
        for i in ranked
    ]
    chars = len(req.query) * len(req.texts) + sum(len(text) for text in req.texts)
    return MsgspecResponse(ranks, headers=tei.tei_headers(state, call, result, chars, began))


async def root(body: bytes, state: AppState, call: Call) -> Response:
    """TEI's `POST /`: rerank for a one-label model, predict for any other."""
    if state.engine.info.num_labels == 1:
        return await rerank_texts(body, state, call)
    return await tei.predict(body, state, call)
