"""huggingface_hub's InferenceClient with `model=<url>`: it posts TEI's body to POST /."""

from __future__ import annotations

from typing import Any

import pytest

from tests.compat.conftest import API_KEY, LABELS, Live
from tests.reference import reference_probs

TEXT = "the movie was great"


@pytest.fixture(scope="module")
def hub() -> Any:
    return pytest.importorskip("huggingface_hub")


def test_text_classification(hub: Any, clf: Live) -> None:
    client = hub.InferenceClient(model=clf.url, token=API_KEY, timeout=60)
    got = client.text_classification(TEXT)
    want = clf.post("/predict", {"inputs": TEXT}).json()
    # huggingface_hub returns element 0 of the answer (the Hub's API nests one list per
    # input; TEI answers one input flat): against TEI, the top prediction alone.
    assert got.label == want[0]["label"] and got.label in LABELS
    assert got.score == pytest.approx(want[0]["score"], abs=1e-5)
    # And plain transformers, one text at a time, agrees.
    probs = reference_probs(clf.model_dir, [TEXT])[0]
    top = max(range(len(probs)), key=probs.__getitem__)
    assert got.label == LABELS[top] and got.score == pytest.approx(probs[top], abs=1e-5)


def test_errors_reach_the_caller(hub: Any, clf: Live) -> None:
    client = hub.InferenceClient(model=clf.url, token=API_KEY, timeout=60)
    # TEI's error body reaches the caller's exception.
    with pytest.raises(hub.errors.HfHubHTTPError, match="cannot be empty"):
        client.text_classification("")
    wrong = hub.InferenceClient(model=clf.url, token="wrong", timeout=60)
    with pytest.raises(hub.errors.HfHubHTTPError) as raised:
        wrong.text_classification(TEXT)
    assert raised.value.response.status_code == 401
