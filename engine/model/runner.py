"""ModelRunner: the only code that touches torch and the model, run on the worker thread.

`TransformersRunner` loads any `AutoModelForSequenceClassification` directory. On CUDA it
stages each batch in pinned host memory, copies it on a side stream, runs the forward on a
compute stream and copies the logits back without a host sync, so the worker can prepare the
next batch while this one runs; `finish()` is the only place that waits (on an event).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from engine.config import EngineConfig
from engine.errors import ModelLoadError
from engine.model.loading import first_line, load_classifier
from engine.model.quantize import quantize_int8

if TYPE_CHECKING:
    from engine.model.packed import PackedEncoder

logger = logging.getLogger("classifyd.runner")

# Encoders whose position ids start after the padding index (RoBERTa's 514 → 512 usable).
_OFFSET_POSITION_MODELS = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text"}


@dataclass(frozen=True)
class ModelInfo:
    """What the rest of the server needs to know about the loaded model."""

    labels: tuple[str, ...]
    problem_type: str | None
    # The model's own limit from its position embeddings; None when it has none (e.g. ALiBi).
    max_position_len: int | None
    vocab_size: int
    dtype: str
    device: str
    model_type: str
    architecture: str
    # "int8" when the Linear layers were quantized at load (engine/model/quantize.py), else "none".
    quantization: str = "none"
    # True when forwards are packed (engine/model/packed.py): a batch costs its real tokens.
    packed: bool = False

    @property
    def num_labels(self) -> int:
        return len(self.labels)


class ModelRunner(Protocol):
    """What the worker needs from a model. Every method runs on the worker thread."""

    # True when launch() returns before the device has finished (CUDA); the worker then
    # prepares the next batch before it waits on finish().
    is_async: bool

    def load(self) -> ModelInfo: ...

    def launch(
        self, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None
    ) -> Any: ...

    def finish(self, launched: Any) -> list[list[float]]: ...

    # Torch threads for the forwards of the calling thread from now on (CPU; no-op on GPU).
    def set_threads(self, threads: int) -> None: ...

    def close(self) -> None: ...


def _max_position_len(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            if config.model_type in _OFFSET_POSITION_MODELS:
                value -= (config.pad_token_id or 0) + 1
            return value
    return None


def _labels(config: Any) -> tuple[str, ...]:
    id2label = getattr(config, "id2label", None) or {}
    count = int(getattr(config, "num_labels", len(id2label)) or len(id2label))
    return tuple(str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(count))


class TransformersRunner:
    """A Hugging Face sequence classifier, loaded from a local directory."""

    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self.is_async = False
        self._model: Any = None
        self._device: Any = None
        self._pad_id = 0
        # True when the model has no pad token of its own (see launch()).
        self._free_pad = False
        self._takes_type_ids = False
        self._packed: PackedEncoder | None = None
        self._streams: tuple[Any, Any] | None = None
        # Several CPU workers may share this runner; a model without a pad token has its
        # config changed per batch (see _launch()), so those forwards run one at a time.
        self._pad_lock = threading.Lock()

    def load(self) -> ModelInfo:
        import torch

        device = self._resolve_device(torch)
        dtype = self._resolve_dtype(torch, device)
        if device.type == "cpu":
            torch.set_num_threads(self._config.num_threads)
        model = load_classifier(self._config, dtype)
        model.eval()
        model.to(device)
        # CPU only for now: the GPU path stages whole padded tensors on a side stream, and
        # has not been measured packed. The layout is checked before any quantization: int8
        # moves results by its own per-batch scales (pad rows included in the padded
        # forward's), which the check could not tell from a wrong layout.
        int8 = self._config.quantization == "int8"
        checked = (
            # Eager for int8: only the layout is checked, and the int8 encoder is scripted anew.
            self._checked_packed(torch, model, dtype, script=not int8)
            if device.type == "cpu" and self._config.packed
            else None
        )
        if int8:
            model = quantize_int8(model, device, dtype)
            if checked is not None:
                # The same modules with int8 Linears in place. In-process, batches of 32 side
                # by side: ~440 texts/s against fp32 packed's ~310 (bench/README.md).
                from engine.model.packed import PackedEncoder

                checked = PackedEncoder.of(model)
        self._packed = checked
        # Decoder heads find each row's last real token by pad_token_id. A model shipped
        # without one pads with its end token, unless a prompt holds that token (see launch()).
        self._free_pad = model.config.pad_token_id is None
        if self._free_pad:
            eos = model.config.eos_token_id
            model.config.pad_token_id = eos[0] if isinstance(eos, list) else eos
        self._pad_id = int(model.config.pad_token_id or 0)
        self._takes_type_ids = "token_type_ids" in inspect.signature(model.forward).parameters
        self._model = model
        self._device = device
        if device.type == "cuda":
            self.is_async = True
            self._streams = (torch.cuda.Stream(device), torch.cuda.Stream(device))
        info = ModelInfo(
            labels=_labels(model.config),
            problem_type=getattr(model.config, "problem_type", None),
            max_position_len=_max_position_len(model.config),
            vocab_size=int(model.get_input_embeddings().num_embeddings),
            dtype=str(dtype).removeprefix("torch."),
            device=str(device),
            model_type=str(model.config.model_type),
            architecture=type(model).__name__,
            quantization=self._config.quantization,
            packed=self._packed is not None,
        )
        self._warm_up(info)
        return info

    def launch(self, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None) -> Any:
        guard = self._pad_lock if self._free_pad else contextlib.nullcontext()
        with guard:
            return self._launch(ids, type_ids)

    def _launch(
        self, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None
    ) -> Any:
        import torch

        if self._packed is not None:
            with torch.inference_mode():
                return self._packed(ids, type_ids if self._takes_type_ids else None).float()
        width = max(len(row) for row in ids)
        pad = self._pad_id
        if self._free_pad:
            # Alone, such a model reads the last token whatever it is; padded, the head skips
            # every pad id, so a prompt ending in the end token would be read one token early.
            # Pad with an id no prompt of this batch holds (under _pad_lock: shared config).
            used = {t for row in ids for t in row}
            if pad in used:
                pad = next(i for i in range(len(used) + 1) if i not in used)
            self._model.config.pad_token_id = pad
        # Right padding: exact for absolute-position encoders and rotary decoders alike
        # (see MODELS.md); the decoder heads pick the last real token by pad_token_id.
        input_ids = torch.tensor([[*row, *([pad] * (width - len(row)))] for row in ids])
        host: dict[str, Any] = {"input_ids": input_ids}
        if any(len(row) != width for row in ids):
            lengths = torch.tensor([len(row) for row in ids])
            host["attention_mask"] = (torch.arange(width)[None, :] < lengths[:, None]).to(
                torch.long
            )
        # else no mask at all: models read a missing mask as all ones, and building and
        # applying one costs 1.4 ms of a 10 ms single-text forward (measured, MiniLM-L6).
        if type_ids is not None and self._takes_type_ids:
            host["token_type_ids"] = torch.tensor(
                [[*row, *([0] * (width - len(row)))] for row in type_ids]
            )
        with torch.inference_mode():
            if self._streams is None:
                return self._model(**host).logits.float()
            return self._launch_cuda(torch, host)

    def finish(self, launched: Any) -> list[list[float]]:
        if self._streams is None:
            rows: list[list[float]] = launched.tolist()
            return rows
        logits, done = launched
        done.synchronize()
        result: list[list[float]] = logits.tolist()
        return result

    def set_threads(self, threads: int) -> None:
        import torch

        # Per calling thread for OpenMP and MKL. The scheduler only changes it while no other
        # forward runs: some kernels size per-thread buffers by the global count.
        if self._device is not None and self._device.type == "cpu":
            torch.set_num_threads(threads)

    def close(self) -> None:
        self._model = None

    def _launch_cuda(self, torch: Any, host: dict[str, Any]) -> Any:
        assert self._streams is not None
        copy_stream, compute_stream = self._streams
        with torch.cuda.stream(copy_stream):
            device_inputs = {
                k: v.pin_memory().to(self._device, non_blocking=True) for k, v in host.items()
            }
            copied = torch.cuda.Event()
            copied.record(copy_stream)
        with torch.cuda.stream(compute_stream):
            compute_stream.wait_event(copied)
            for tensor in device_inputs.values():
                # The copy stream allocated these; tell the allocator the compute stream uses them.
                tensor.record_stream(compute_stream)
            logits = self._model(**device_inputs).logits.float()
            out = torch.empty(logits.shape, dtype=torch.float32, pin_memory=True)
            out.copy_(logits, non_blocking=True)
            done = torch.cuda.Event()
            done.record(compute_stream)
        return out, done

    def _checked_packed(
        self, torch: Any, model: Any, dtype: Any, *, script: bool = True
    ) -> PackedEncoder | None:
        """The packed forward, once it has matched the model's own on a padded batch: a
        variant whose modules look right but compute otherwise keeps its own forward."""
        from engine.model.packed import PackedEncoder  # imports torch: on the worker thread only

        packed = PackedEncoder.of(model, script=script)
        if packed is None:
            return None
        vocab = int(model.get_input_embeddings().num_embeddings)
        rows = [[(7 * i + 3 * j + 5) % vocab for j in range(n)] for i, n in enumerate((9, 4, 6))]
        width = max(map(len, rows))
        pad = int(model.config.pad_token_id or 0)  # before load() settles self._pad_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        with torch.inference_mode():
            want = model(input_ids=ids, attention_mask=mask).logits.float().softmax(-1)
            got = packed(rows, None).float().softmax(-1)
        # fp32 agrees to ~1e-7; bf16 moves by its own rounding (bench/precision.py).
        diff = float((got - want).abs().max())
        if diff > (1e-4 if dtype == torch.float32 else 5e-2):
            logger.warning("packed forward differs from the model's by %.2g; not used", diff)
            return None
        return packed

    def _warm_up(self, info: ModelInfo) -> None:
        # On a GPU a full-budget batch makes an out-of-memory fail the boot, not a request.
        # On CPU one short batch is enough to initialise kernels and thread pools.
        cfg = self._config
        if self._device.type == "cuda":
            width = min(cfg.max_batch_tokens, cfg.max_model_len or info.max_position_len or 512)
            rows = max(1, min(cfg.max_num_seqs, cfg.max_batch_tokens // width))
        else:
            width, rows = 8, 2
        ids = [[self._pad_id + 1 if self._pad_id + 1 < info.vocab_size else 0] * width] * rows
        self.finish(self.launch(ids, None))

    def _resolve_device(self, torch: Any) -> Any:
        name = self._config.device
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise ModelLoadError(f"Unknown device {name!r}: {first_line(exc)}") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError(f"Device {name!r} was asked for, but CUDA is not available.")
        return device

    def _resolve_dtype(self, torch: Any, device: Any) -> Any:
        name = self._config.dtype
        if name == "auto":
            if device.type != "cuda":
                return torch.float32
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if name == "float16" and device.type == "cpu":
            raise ModelLoadError("float16 is not supported on CPU; use float32 or bfloat16.")
        return getattr(torch, name)
