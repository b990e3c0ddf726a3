"""`POST /score` and `POST /rerank` (and `/v1/…`, `/v2/rerank`): vLLM's cross-encoder routes."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from protocol.classify import Usage

_Truncate = Annotated[int, msgspec.Meta(ge=-1)] | None
# One text or a list; as vLLM's ScoreInputs (text only).
_Texts = str | list[str]
# Per-text token cap, vLLM's `max_tokens_per_doc`; checked by the route (a positive integer).
_PerDoc = int | None


class ScoreRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    # One pair of fields, as in vLLM: `text_1`/`text_2`, `queries`/`documents`,
    # `queries`/`items` or `data_1`/`data_2`. One against one, one against many, or many
    # against as many. Where several pairs are complete, vLLM's order decides (the route).
    text_1: _Texts | None = None
    text_2: _Texts | None = None
    queries: _Texts | None = None
    documents: _Texts | None = None
    items: _Texts | None = None
    data_1: _Texts | None = None
    data_2: _Texts | None = None
    truncate_prompt_tokens: _Truncate = None
    # vLLM's pooling-common field: which end truncate_prompt_tokens cuts (the tokenizer's own
    # side when absent).
    truncation_side: Literal["left", "right"] | None = None
    # Cut each second text to its first k tokens before pairing.
    max_tokens_per_doc: _PerDoc = None
    use_activation: bool | None = None
    activation: bool | None = None
    priority: int = 0
    request_id: str | None = None


class ScoreData(msgspec.Struct):
    index: int
    score: float
    object: str = "score"


class ScoreResponse(msgspec.Struct):
    id: str
    created: int
    model: str
    data: list[ScoreData]
    usage: Usage
    object: str = "list"


class RerankInput(msgspec.Struct):
    """A document as an object (Cohere v1 SDK, Jina, litellm); other fields are ignored."""

    text: str


class RerankRequest(msgspec.Struct, kw_only=True):
    """vLLM's rerank body, also Cohere's v1 and v2 and Jina's (unknown fields such as
    `return_documents` and `rank_fields` are ignored, as vLLM ignores them)."""

    model: str | None = None
    query: str
    # One bare string is one document, as vLLM reads it.
    documents: str | list[str | RerankInput]
    # 0 (or absent): every document, best first.
    top_n: Annotated[int, msgspec.Meta(ge=0)] = 0
    truncate_prompt_tokens: _Truncate = None
    truncation_side: Literal["left", "right"] | None = None
    # Cut each document to its first k tokens before pairing it with the query.
    max_tokens_per_doc: _PerDoc = None
    use_activation: bool | None = None
    activation: bool | None = None
    priority: int = 0
    request_id: str | None = None


class RerankDocument(msgspec.Struct):
    text: str


class RerankResult(msgspec.Struct):
    index: int
    document: RerankDocument
    relevance_score: float


class RerankUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(msgspec.Struct):
    id: str
    model: str
    usage: RerankUsage
    results: list[RerankResult]
