"""text-embeddings-inference's wire: `POST /predict`, TEI's `POST /rerank`, `POST /`, and its
error body."""

from __future__ import annotations

from typing import Literal

import msgspec

# TEI's input: a text, `[text]` or a pair `[a, b]`, or a batch `[[a], [a, b], ...]`. One
# array type per union (msgspec), so the shapes are told apart after decoding (server/tei.py).
PredictInputs = str | list[str | list[str]]
TruncationDirection = Literal["Left", "Right", "left", "right"]


class PredictRequest(msgspec.Struct, kw_only=True):
    inputs: PredictInputs
    raw_scores: bool = False
    # None: the server's --auto-truncate decides.
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "Right"


class Prediction(msgspec.Struct):
    score: float
    label: str


class TeiRerankRequest(msgspec.Struct, kw_only=True):
    """TEI's `/rerank` body; told from vLLM's by its `texts` (server/tei_rerank.py)."""

    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "Right"


class Rank(msgspec.Struct, omit_defaults=True):
    index: int
    score: float
    # Only with `return_text` (TEI leaves the field out otherwise).
    text: str | None = None


# TEI's error kinds, spelt as its serde enum writes them; the status follows from the kind
# (server/tei_errors.py).
TeiErrorType = Literal["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]


class TeiError(msgspec.Struct):
    error: str
    error_type: TeiErrorType


class RerankFields(msgspec.Struct):
    """Just enough of a `/rerank` body to tell TEI's (`texts`) from vLLM's (`documents`),
    without decoding either."""

    texts: msgspec.Raw = msgspec.Raw()
    documents: msgspec.Raw = msgspec.Raw()
