"""The cohere SDK against classifyd: `Client.rerank` (posts /v1/rerank) and
`ClientV2.rerank` (posts /v2/rerank), with base_url pointed at the server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.compat.conftest import API_KEY, DOCS, QUERY, Live, same_ranking, server_rerank


@pytest.fixture(scope="module")
def cohere() -> Any:
    return pytest.importorskip("cohere")


@pytest.mark.parametrize("version", ["Client", "ClientV2"])
def test_rerank(cohere: Any, cross: Live, version: str) -> None:
    client = getattr(cohere, version)(api_key=API_KEY, base_url=cross.url)
    want = server_rerank(cross)
    got = client.rerank(model="cross", query=QUERY, documents=DOCS, top_n=3)
    same_ranking([(r.index, r.relevance_score) for r in got.results], want, 3)
    assert len(got.results) == 3
    # vLLM always returns each document; the SDK reads it back.
    texts = [r.document.text if version == "Client" else r.document["text"] for r in got.results]
    assert texts == [DOCS[r.index] for r in got.results]
    all_of = client.rerank(model="cross", query=QUERY, documents=DOCS)
    same_ranking([(r.index, r.relevance_score) for r in all_of.results], want, len(DOCS))


@pytest.mark.parametrize("version", ["Client", "ClientV2"])
def test_bad_request_reaches_the_sdk(cohere: Any, cross: Live, version: str) -> None:
    client = getattr(cohere, version)(api_key=API_KEY, base_url=cross.url)
    with pytest.raises(cohere.BadRequestError) as raised:
        client.rerank(model="cross", query="", documents=DOCS)
    assert raised.value.status_code == 400
    assert "`query`" in raised.value.body["error"]["message"]
    with pytest.raises(cohere.NotFoundError):
        client.rerank(model="nope", query=QUERY, documents=DOCS)


def test_wrong_key_is_unauthorized(cohere: Any, cross: Live) -> None:
    client = cohere.ClientV2(api_key="wrong", base_url=cross.url)
    with pytest.raises(cohere.UnauthorizedError):
        client.rerank(model="cross", query=QUERY, documents=DOCS)
