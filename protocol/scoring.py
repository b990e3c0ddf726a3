"""`POST /score` and `POST /rerank` (and `/v1/…`): vLLM's cross-encoder routes."""

from __future__ import annotations

from typing import Annotated

import msgspec

from protocol.classify import Usage

_Truncate = Annotated[int, msgspec.Meta(ge=-1)] | None


class ScoreRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    # One against one, one against many, or many against as many, as in vLLM.
    text_1: str | list[str]
    text_2: str | list[str]
    truncate_prompt_tokens: _Truncate = None
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


class RerankRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    query: str
    documents: list[str]
    # 0 (or absent): every document, best first.
    top_n: Annotated[int, msgspec.Meta(ge=0)] = 0
    truncate_prompt_tokens: _Truncate = None
    use_activation: bool | None = None
    priority: int = 0
    request_id: str | None = None


class RerankDocument(msgspec.Struct):
    text: str


class RerankResult(msgspec.Struct):
    index: int
    document: RerankDocument
    relevance_score: float


class RerankUsage(msgspec.Struct):
    total_tokens: int


class RerankResponse(msgspec.Struct):
    id: str
    model: str
    usage: RerankUsage
    results: list[RerankResult]
