"""Whether a model runs packed: the packed forward is used only once it has matched the
model's own on a padded batch, so a variant whose modules look right but compute otherwise
keeps its own forward.

Imports torch: the runner imports this module on the worker thread only.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from engine.model.packed import PackedEncoder

logger = logging.getLogger("classifyd.runner")


def checked_packed(model: Any, dtype: torch.dtype, *, script: bool = True) -> PackedEncoder | None:
    """The packed forward of `model`, or None: not a family it knows, or it disagrees."""
    packed = PackedEncoder.of(model, script=script)
    if packed is None:
        return None
    vocab = int(model.get_input_embeddings().num_embeddings)
    rows = [[(7 * i + 3 * j + 5) % vocab for j in range(n)] for i, n in enumerate((9, 4, 6))]
    width = max(map(len, rows))
    pad = int(model.config.pad_token_id or 0)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    with torch.inference_mode():
        want = model(input_ids=ids, attention_mask=mask).logits.float().softmax(-1)
        got = packed(rows, None).float().softmax(-1)
    # fp32 agrees to float rounding; bf16 moves by its own rounding (bench/precision.py).
    diff = float((got - want).abs().max())
    if diff > (1e-4 if dtype == torch.float32 else 5e-2):
        logger.warning("packed forward differs from the model's by %.2g; not used", diff)
        return None
    return packed
