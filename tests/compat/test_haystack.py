"""haystack's rankers ranking Documents against classifyd: HuggingFaceTEIRanker (TEI's
/rerank body), VLLMRanker (vLLM's /rerank under api_base_url) and CohereRanker (the cohere SDK,
/v2/rerank)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.compat.conftest import API_KEY, DOCS, QUERY, Live, same_ranking, server_rerank


@pytest.fixture(scope="module", autouse=True)
def haystack() -> Any:
    # Imported here, after conftest's `offline` set HAYSTACK_TELEMETRY_ENABLED=False.
    return pytest.importorskip("haystack")


def _documents() -> list[Any]:
    from haystack import Document

    return [Document(content=text, meta={"n": i}) for i, text in enumerate(DOCS)]


def _ranked(result: dict[str, Any]) -> list[tuple[int, float]]:
    return [(doc.meta["n"], doc.score) for doc in result["documents"]]


def _rankers(url: str) -> dict[str, Any]:
    from haystack.utils import Secret

    pytest.importorskip("haystack_integrations.components.rankers.cohere")
    from haystack_integrations.components.rankers.cohere import CohereRanker
    from haystack_integrations.components.rankers.huggingface_api import HuggingFaceTEIRanker
    from haystack_integrations.components.rankers.vllm import VLLMRanker

    key = Secret.from_token(API_KEY)
    return {
        "tei": HuggingFaceTEIRanker(url=url, token=key, top_k=2, max_retries=1),
        "vllm": VLLMRanker(model="cross", api_base_url=f"{url}/v1", api_key=key, top_k=2),
        "cohere": CohereRanker(model="cross", api_base_url=url, api_key=key, top_k=2),
    }


@pytest.mark.parametrize("name", ["tei", "vllm", "cohere"])
def test_ranker_orders_documents(cross: Live, name: str) -> None:
    ranker = _rankers(cross.url)[name]
    want = server_rerank(cross)
    result = ranker.run(query=QUERY, documents=_documents())
    same_ranking(_ranked(result), want, 2)
    assert [d.content for d in result["documents"]] == [DOCS[r["index"]] for r in want[:2]]
    every = ranker.run(query=QUERY, documents=_documents(), top_k=len(DOCS))
    same_ranking(_ranked(every), want, len(DOCS))
    if name == "vllm":
        assert every["meta"]["model"] == "cross" and every["meta"]["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize("name", ["tei", "vllm", "cohere"])
def test_ranker_surfaces_the_servers_error(cross: Live, name: str) -> None:
    ranker = _rankers(cross.url)[name]
    # TEI's and vLLM's rankers raise RuntimeError with the body; Cohere's, the SDK's error.
    with pytest.raises(Exception, match="`query`") as raised:
        ranker.run(query="", documents=_documents())
    if name != "cohere":
        assert raised.type is RuntimeError
