"""`POST /predict`: text-embeddings-inference's classification route."""

from __future__ import annotations

from typing import Literal

import msgspec

# TEI's input: a text, a pair [a, b], or a list of texts and pairs. One array type per union
# (msgspec), so the shapes are told apart after decoding (server/tei.py).
PredictInputs = str | list[str | list[str]]


class PredictRequest(msgspec.Struct, kw_only=True):
    inputs: PredictInputs
    raw_scores: bool = False
    # None: the server's --auto-truncate decides.
    truncate: bool | None = None
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"


class Prediction(msgspec.Struct):
    score: float
    label: str
