"""`POST /invocations` (SageMaker), as vLLM answers it: the body's fields pick the route.

vLLM tries its request types in order and answers with the first that validates: a
classification body (`input` or `messages`) gets `/classify`'s answer; on a one-label model a
rerank body (`query` and `documents`) gets `/rerank`'s and a score body (`text_1`/`text_2`,
`queries`/`documents` or `items`, `data_1`/`data_2`) `/score`'s. Anything else is vLLM's 400.
"""

from __future__ import annotations

import msgspec
from starlette.responses import Response

from protocol.codec import decode
from server import classify, scoring
from server.errors import bad_request
from server.http import Call
from server.state import AppState

# Only the top-level keys matter here; the chosen route decodes the body itself.
_keys_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


async def invocations(body: bytes, state: AppState, call: Call) -> Response:
    keys = decode(_keys_decoder, body).keys()
    if "input" in keys or "messages" in keys:
        return await classify.classify(body, state, call)
    scores = state.engine.info.num_labels == 1
    if scores and "query" in keys and "documents" in keys:
        return await scoring.rerank(body, state, call)
    if scores and any(a in keys and b in keys for a, b in scoring.SCORE_PAIRS):
        return await scoring.score(body, state, call)
    expected = ["ClassificationRequest", "PoolingRequest"]
    if scores:
        expected[1:1] = ["RerankRequest", "ScoreRequest"]
    # vLLM's words; the param names the field a classification body lacks.
    raise bad_request(
        f"Cannot find suitable handler for request. Expected one of: {expected}", "input"
    )
