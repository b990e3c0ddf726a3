"""litellm.rerank with each provider prefix that can point at classifyd, and `api_base`:
hosted_vllm/ posts vLLM's /rerank, cohere/ and jina_ai/ post /v1/rerank (Cohere's body),
huggingface/ posts TEI's /rerank body (query + texts)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.compat.conftest import API_KEY, DOCS, QUERY, Live, same_ranking, server_rerank

# litellm's pydantic models warn at import about ReadOnly TypedDict items.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PROVIDERS = ["hosted_vllm", "cohere", "jina_ai", "huggingface"]


@pytest.fixture
def litellm(monkeypatch: pytest.MonkeyPatch) -> Any:
    module = pytest.importorskip("litellm")
    monkeypatch.setattr(module, "suppress_debug_info", True)
    # litellm's cost calculator fetches huggingface.co/<model>/raw/main/config.json after
    # every huggingface/ call (a failure only costs it the price): not classifyd's wire.
    monkeypatch.setattr(module.utils, "_get_max_position_embeddings", lambda model_name: None)
    return module


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rerank(litellm: Any, cross: Live, provider: str) -> None:
    want = server_rerank(cross)
    got = litellm.rerank(
        model=f"{provider}/cross",
        query=QUERY,
        documents=DOCS,
        top_n=2,
        api_base=cross.url,
        api_key=API_KEY,
    )
    pairs = [(r["index"], r["relevance_score"]) for r in got.results]
    # TEI's /rerank has no top_n (TEI ignores it, and so does litellm's reading): every
    # document comes back, best first.
    same_ranking(pairs, want, len(DOCS) if provider == "huggingface" else 2)
    for r in got.results:
        assert r["document"]["text"] == DOCS[r["index"]]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_request_carries_the_servers_message(litellm: Any, cross: Live, provider: str) -> None:
    with pytest.raises(litellm.BadRequestError, match="`query`") as raised:
        litellm.rerank(
            model=f"{provider}/cross", query="", documents=DOCS, api_base=cross.url, api_key=API_KEY
        )
    assert raised.value.status_code == 400
