"""The forward of a decoder shipped without a pad token: each row read at its last real token.

A decoder's classification head reads one position per row, found by comparing the ids to
the pad token; without one, transformers reads the last position and refuses batches. In a
padded batch the last real token is not the last position, and no pad id can be told from
a prompt that ends in that same id; setting one per batch in the shared config would make
the workers that share the model wait for each other. So this runs the base model and
applies the head itself at each row's last real token, which the attention mask gives
(the runner pads on the right). Nothing shared is written, and the result is the model's
own for each prompt alone: the base model computes the same hidden states, and the head is
the same Linear applied to one row instead of every row.

Imports torch: the runner imports this module on the worker thread only.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from torch import Tensor, nn

from engine.model.device import Forward

logger = logging.getLogger("classifyd.runner")


class LastTokenForward:
    """The base model, then the head (`score`) at each row's last real token."""

    def __init__(self, base: nn.Module, head: nn.Module) -> None:
        self._base = base
        self._head = head
        # A forward's key/value cache is never read again: not building one saves its copies.
        takes = inspect.signature(base.forward).parameters
        self._extra: dict[str, Any] = {"use_cache": False} if "use_cache" in takes else {}

    def __call__(self, inputs: dict[str, Tensor]) -> Tensor:
        hidden: Tensor = self._base(**inputs, **self._extra)[0]
        mask = inputs.get("attention_mask")
        if mask is None:
            last = hidden[:, -1]  # no padding: every row ends at the last position
        else:
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            last = hidden[rows, mask.sum(-1) - 1]
        logits: Tensor = self._head(last)
        return logits


class OneRowAtATime:
    """The model's own forward, one prompt per call, each cut to its own length: alone, a
    model without a pad token reads its last position, the prompt's last token."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __call__(self, inputs: dict[str, Tensor]) -> Tensor:
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        lengths = [ids.shape[1]] * ids.shape[0] if mask is None else mask.sum(-1).tolist()
        rows = [
            self._model(
                **{k: v[i : i + 1, :n] for k, v in inputs.items() if k != "attention_mask"}
            ).logits
            for i, n in enumerate(lengths)
        ]
        return torch.cat(rows)


def batches_without_pad_token(model: Any) -> bool:
    """Whether the model's own forward takes several prompts at once with no pad token: the
    decoder heads of transformers refuse to, as they find each row's last token by it."""
    vocab = int(model.get_input_embeddings().num_embeddings)
    device = model.get_input_embeddings().weight.device
    ids = torch.tensor([[1 % vocab, 2 % vocab], [3 % vocab, 4 % vocab]], device=device)
    try:
        with torch.inference_mode():
            model(input_ids=ids)
    except ValueError:
        return False
    return True


def last_token_forward(model: Any) -> Forward:
    """The batched forward for `model`, a decoder without a pad token: LastTokenForward once
    it has given the model's own answers on prompts alone; else one prompt at a time, which
    is exact for any head but slower."""
    head = getattr(model, "score", None)
    base = getattr(model, "base_model", model)
    # With LoRA adapters the head is a HeadSwitch (engine/model/lora.py) over Linear heads,
    # which applies by position the same way.
    linear = isinstance(getattr(head, "base", head), nn.Linear)
    if isinstance(head, nn.Module) and linear and base is not model:
        forward = LastTokenForward(base, head)
        if _agrees(model, forward):
            return forward
    logger.warning(
        "%s has no pad token and no head this server can apply by position; "
        "its prompts run one at a time",
        type(model).__name__,
    )
    return OneRowAtATime(model)


def _agrees(model: Any, forward: LastTokenForward) -> bool:
    """Whether `forward` gives the model's own logits for a few prompts, each alone."""
    embeddings = model.get_input_embeddings()
    vocab, device = int(embeddings.num_embeddings), embeddings.weight.device
    # fp32 differs by float rounding only; half precision by its own rounding of the head.
    tol = 1e-4 if embeddings.weight.dtype == torch.float32 else 2e-2
    for length in (5, 2):
        ids = torch.tensor([[(7 * j + 3) % vocab for j in range(length)]], device=device)
        with torch.inference_mode():
            want = model(input_ids=ids).logits.float()
            got = forward({"input_ids": ids}).float()
        if got.shape != want.shape:
            return False
        if float((got - want).abs().max()) > tol * (1 + float(want.abs().max())):
            return False
    return True
