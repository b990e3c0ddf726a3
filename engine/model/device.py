"""Where the model runs: the device and dtype asked for, and CUDA's two-stream staging.

Imports torch: the runner imports this module on the worker thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from engine.errors import ModelLoadError
from engine.model.loading import first_line

# A batch's inputs (input_ids, attention_mask, ...) → its logits, one row per prompt.
Forward = Callable[[dict[str, Any]], Any]


def resolve_device(name: str) -> torch.device:
    """--device: "auto" takes the GPU when there is one."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ModelLoadError(f"Unknown device {name!r}: {first_line(exc)}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"Device {name!r} was asked for, but CUDA is not available.")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """--dtype: "auto" is float32 on CPU and the GPU's best half precision."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name == "float16" and device.type == "cpu":
        raise ModelLoadError("float16 is not supported on CPU; use float32 or bfloat16.")
    dtype: torch.dtype = getattr(torch, name)
    return dtype


class CudaStaging:
    """Each batch staged in pinned host memory and copied on a side stream, its forward on a
    compute stream and its logits copied back, all without a host sync: the worker prepares
    the next batch meanwhile, and `finish` waits on the batch's event."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._copy = torch.cuda.Stream(device)
        self._compute = torch.cuda.Stream(device)

    def launch(self, forward: Forward, host: dict[str, Any]) -> tuple[Any, Any]:
        """(pinned logits, the event recorded once they are there); under inference_mode."""
        with torch.cuda.stream(self._copy):
            device_inputs = {
                k: v.pin_memory().to(self._device, non_blocking=True) for k, v in host.items()
            }
            copied = torch.cuda.Event()
            copied.record(self._copy)
        with torch.cuda.stream(self._compute):
            self._compute.wait_event(copied)
            for tensor in device_inputs.values():
                # The copy stream allocated these; tell the allocator the compute stream uses them.
                tensor.record_stream(self._compute)
            logits = forward(device_inputs).float()
            out = torch.empty(logits.shape, dtype=torch.float32, pin_memory=True)
            out.copy_(logits, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self._compute)
        return out, done

    @staticmethod
    def finish(launched: tuple[Any, Any]) -> list[list[float]]:
        logits, done = launched
        done.synchronize()
        rows: list[list[float]] = logits.tolist()
        return rows
