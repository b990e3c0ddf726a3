"""Opt-in int8: dynamic quantization of a classifier's Linear layers on CPU.

Weights are stored as int8 once, at load (one scale per output channel); activations are
quantized per batch, per tensor, from their own range, and the matrix products run in int8
with VNNI where the CPU has it. Because the activation scale comes from the whole batch, a
text's result also depends on its batch-mates: this path is neither exact nor batch-invariant,
which is why it is opt-in (bench/precision.py prints its measured speed-up and deviation).

Two kinds of layer stay in float32: the classification head (a tiny share of the work, and
the last step before the probabilities) and the down-projections (more inputs than outputs,
e.g. the feed-forward output after GELU), whose inputs carry the outliers a per-tensor int8
scale handles worst; quantizing them moves far more labels on the default model.
"""

from __future__ import annotations

import warnings
from typing import Any

from engine.errors import ModelLoadError

# Module names of the heads of the supported architectures (BERT, RoBERTa, DeBERTa and
# ModernBERT name theirs `classifier`; the decoders `score`).
_HEAD_NAMES = ("classifier", "score")


def quantize_int8(model: Any, device: Any, dtype: Any) -> Any:
    import torch

    if device.type != "cpu":
        raise ModelLoadError(
            "--quantization int8 runs on CPU only; on a GPU use --dtype bfloat16 or float16."
        )
    if dtype != torch.float32:
        raise ModelLoadError("--quantization int8 needs float32 weights (--dtype float32 or auto).")
    linear_names = {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and module.in_features <= module.out_features
        and not any(name == h or name.startswith(h + ".") for h in _HEAD_NAMES)
    }
    if not linear_names:
        raise ModelLoadError("--quantization int8 found no Linear layers to quantize.")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the eager dynamic path is
        # still the one that uses the CPU's int8 instructions without a compile step.
        warnings.simplefilter("ignore")
        spec = dict.fromkeys(linear_names, per_channel_dynamic_qconfig)
        return quantize_dynamic(model, spec, dtype=torch.qint8)
