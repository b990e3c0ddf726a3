"""The openai client against classifyd, as vLLM's docs use it: `client.post` to the pooling
routes (no typed method exists for them) and `client.models.list()`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.compat.conftest import API_KEY, Live
from tests.reference import reference_probs

TEXTS = ["the movie was great", "a boring film", "coffee"]


@pytest.fixture(scope="module")
def openai() -> Any:
    return pytest.importorskip("openai")


def test_models_list(openai: Any, clf: Live, cross: Live) -> None:
    client = openai.OpenAI(base_url=f"{clf.url}/v1", api_key=API_KEY)
    models = client.models.list()
    assert [m.id for m in models] == ["tiny"]
    assert all(m.object == "model" for m in models)
    cross_models = openai.OpenAI(base_url=f"{cross.url}/v1", api_key=API_KEY).models.list()
    assert [m.id for m in cross_models] == ["cross"]


def test_post_classify(openai: Any, clf: Live) -> None:
    client = openai.OpenAI(base_url=clf.url, api_key=API_KEY)
    got = client.post("/classify", body={"model": "tiny", "input": TEXTS}, cast_to=object)
    want = clf.post("/classify", {"model": "tiny", "input": TEXTS}).json()
    assert got["model"] == "tiny" and got["object"] == "list"
    assert [d["index"] for d in got["data"]] == [0, 1, 2]
    assert [d["label"] for d in got["data"]] == [d["label"] for d in want["data"]]
    for a, b in zip(got["data"], want["data"], strict=True):
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-5)
    assert got["usage"]["prompt_tokens"] == want["usage"]["prompt_tokens"]
    for row, probs in zip(got["data"], reference_probs(clf.model_dir, TEXTS), strict=True):
        assert row["probs"] == pytest.approx(probs, abs=1e-5)


def test_post_classify_under_v1_base_url(openai: Any, clf: Live) -> None:
    """With the usual base_url ending in /v1, post("/classify") reaches /v1/classify
    (SGLang's path): the same results."""
    client = openai.OpenAI(base_url=f"{clf.url}/v1", api_key=API_KEY)
    got = client.post("/classify", body={"model": "tiny", "input": TEXTS}, cast_to=object)
    want = clf.post("/classify", {"model": "tiny", "input": TEXTS}).json()
    for a, b in zip(got["data"], want["data"], strict=True):
        assert a["label"] == b["label"]
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-5)


def test_post_score_as_httpx_response(openai: Any, cross: Live) -> None:
    body = {"model": "cross", "text_1": "what is the plot", "text_2": TEXTS}
    want = cross.post("/score", body).json()
    for base in (cross.url, f"{cross.url}/v1"):
        client = openai.OpenAI(base_url=base, api_key=API_KEY)
        response = client.post("/score", body=body, cast_to=httpx.Response)
        assert response.status_code == 200
        got = response.json()
        assert [d["index"] for d in got["data"]] == [0, 1, 2]
        assert [d["score"] for d in got["data"]] == pytest.approx(
            [d["score"] for d in want["data"]], abs=1e-5
        )


def test_errors_raise_the_clients_exceptions(openai: Any, clf: Live) -> None:
    client = openai.OpenAI(base_url=clf.url, api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.post("/classify", body={"model": "tiny", "input": []}, cast_to=object)
    assert bad.value.status_code == 400
    # openai unwraps {"error": {...}}: the server's message and param reach the caller.
    assert isinstance(bad.value.body, dict) and bad.value.body["param"] == "input"
    with pytest.raises(openai.NotFoundError, match="nope"):
        client.post("/classify", body={"model": "nope", "input": "x"}, cast_to=object)
    wrong = openai.OpenAI(base_url=f"{clf.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
