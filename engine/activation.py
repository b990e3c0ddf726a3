"""Logits → what the client sees: probabilities by problem type, and labels.

Plain Python on purpose: rows hold a handful of floats, and the HTTP layer never imports torch.
Sums run in double precision, so results match torch's fp32 softmax well within 1e-6. It
lives in the engine so the server and the offline Classifier share one definition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Activation = Literal["softmax", "sigmoid", "none"]


def default_activation(problem_type: str | None, num_labels: int) -> Activation:
    if problem_type == "multi_label_classification":
        return "sigmoid"
    if problem_type == "regression":
        return "none"
    if num_labels == 1:
        return "sigmoid"
    return "softmax"


def softmax(row: Sequence[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(x - top) for x in row]
    total = math.fsum(exps)
    return [e / total for e in exps]


def sigmoid(row: Sequence[float]) -> list[float]:
    # Split by sign so exp never overflows.
    return [
        1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x)) for x in row
    ]


def activate(row: Sequence[float], kind: Activation) -> list[float]:
    if kind == "softmax":
        return softmax(row)
    if kind == "sigmoid":
        return sigmoid(row)
    return list(row)


def argmax(row: Sequence[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)
