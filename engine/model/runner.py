"""ModelRunner: the only code that touches torch and the model, run on the worker thread.

`TransformersRunner` loads any `AutoModelForSequenceClassification` directory. On CUDA it
stages each batch on a side stream (engine/model/device.py), so the worker can prepare the
next batch while this one runs; `finish()` is the only place that waits (on an event).
Several CPU workers may share one runner: a forward writes nothing shared, so theirs overlap.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from engine.adapters import AdapterInfo, AdapterSpec
from engine.config import EngineConfig
from engine.model.convert import PAIRS_AS_TEXT
from engine.model.loading import load_classifier
from engine.model.quantize import quantize_int8

if TYPE_CHECKING:
    from engine.model.device import CudaStaging, Forward
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
    # True for a causal LM converted into a reranker: a pair is one text, query + document.
    pairs_as_text: bool = False
    # LoRA adapters (--lora-modules), each with its own head's labels; adapter i is index i + 1.
    adapters: tuple[AdapterInfo, ...] = ()

    @property
    def num_labels(self) -> int:
        return len(self.labels)


class ModelRunner(Protocol):
    """What the worker needs from a model. Every method runs on the worker thread."""

    # True when launch() returns before the device has finished (CUDA); the worker then
    # prepares the next batch before it waits on finish().
    is_async: bool

    def load(self) -> ModelInfo: ...

    # `adapters`: each row's adapter index (0: the base), only when some row has one.
    def launch(
        self,
        ids: Sequence[Sequence[int]],
        type_ids: Sequence[Sequence[int]] | None,
        adapters: Sequence[int] | None = None,
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
        self._takes_type_ids = False
        # A padded batch's inputs → its logits: the model's own, or by position for a decoder
        # without a pad token (engine/model/last_token.py).
        self._forward: Forward | None = None
        self._packed: PackedEncoder | None = None
        self._cuda: CudaStaging | None = None
        self._adapters: tuple[AdapterInfo, ...] = ()
        # Logits per row by adapter index (0: the base): a mixed batch's are zero-padded.
        self._widths: dict[int, int] = {}
        self._dtype: Any = None

    def load(self) -> ModelInfo:
        from engine.model.device import resolve_device, resolve_dtype

        device = resolve_device(self._config.device)
        dtype = resolve_dtype(self._config.dtype, device)
        model = self._load_model(device, dtype)
        self._adapters = self._attach_adapters(model, dtype)
        # Checked before any quantization: int8 moves results by its own per-batch scales
        # (pad rows included in the padded forward's), which the check could not tell from
        # a wrong layout.
        checked = self._check_packed_layout(model, device, dtype)
        model = self._quantize(model, device, dtype)
        self._packed = self._pack(model, checked)
        self._forward = self._padded_forward(model)
        self._takes_type_ids = "token_type_ids" in inspect.signature(model.forward).parameters
        self._model = model
        self._device = device
        self._start_streams(device)
        info = self._describe(model, device, dtype)
        self._warm_up(info)
        return info

    def launch(
        self,
        ids: Sequence[Sequence[int]],
        type_ids: Sequence[Sequence[int]] | None,
        adapters: Sequence[int] | None = None,
    ) -> Any:
        if adapters is None:
            return self._launch(ids, type_ids)
        from engine.model.last_token import OneRowAtATime
        from engine.model.lora import groups_of, routed

        # A cancelled request's rows may name an adapter unloaded since; nobody reads them.
        widths = [self._widths.get(a, 0) for a in adapters]
        if isinstance(self._forward, OneRowAtATime) and self._packed is None:
            # Its forward runs each row alone, so each row runs routed to its own adapter.
            handles = []
            for i, (row, adapter) in enumerate(zip(ids, adapters, strict=True)):
                with routed([(adapter, None)]):
                    handles.append(self._launch([row], None if type_ids is None else [type_ids[i]]))
            return _Routed(handles, widths)
        with routed(groups_of(adapters, self._device)):
            return _Routed([self._launch(ids, type_ids)], widths)

    def _launch(
        self, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None
    ) -> Any:
        import torch

        if self._packed is not None:
            with torch.inference_mode():
                return self._packed(ids, type_ids if self._takes_type_ids else None).float()
        assert self._forward is not None
        width = max(len(row) for row in ids)
        pad = self._pad_id
        # Right padding: exact for absolute-position encoders and rotary decoders alike
        # (see docs/MODELS.md); masked, the pad ids never reach a real token's result.
        input_ids = torch.tensor([[*row, *([pad] * (width - len(row)))] for row in ids])
        host: dict[str, Any] = {"input_ids": input_ids}
        if any(len(row) != width for row in ids):
            lengths = torch.tensor([len(row) for row in ids])
            host["attention_mask"] = (torch.arange(width)[None, :] < lengths[:, None]).to(
                torch.long
            )
        # else no mask at all: models read a missing mask as all ones, and building and
        # applying one is a measurable share of a single short text's forward.
        if type_ids is not None and self._takes_type_ids:
            host["token_type_ids"] = torch.tensor(
                [[*row, *([0] * (width - len(row)))] for row in type_ids]
            )
        with torch.inference_mode():
            if self._cuda is None:
                return self._forward(host).float()
            return self._cuda.launch(self._forward, host)

    def finish(self, launched: Any) -> list[list[float]]:
        if isinstance(launched, _Routed):
            full = [row for handle in launched.handles for row in self.finish(handle)]
            return [row[:width] for row, width in zip(full, launched.widths, strict=True)]
        if self._cuda is not None:
            return self._cuda.finish(launched)
        rows: list[list[float]] = launched.tolist()
        return rows

    def set_threads(self, threads: int) -> None:
        import torch

        # Per calling thread for OpenMP and MKL. The scheduler only changes it while no other
        # forward runs: some kernels size per-thread buffers by the global count.
        if self._device is not None and self._device.type == "cpu":
            torch.set_num_threads(threads)

    def load_adapter(self, spec: AdapterSpec, index: int) -> AdapterInfo:
        """A LoRA adapter added at run time under a new `index`, while batches may run: its
        weights go in before any batch is routed to it (engine/adapter_registry.py)."""
        from engine.model.lora import attach_adapter

        info = attach_adapter(self._model, spec, index, self._config.max_lora_rank, self._dtype)
        self._widths[index] = info.num_labels
        return info

    def unload_adapter(self, index: int) -> None:
        """Drop adapter `index`, once no admitted request is routed to it."""
        from engine.model.lora import detach_adapter

        detach_adapter(self._model, index)
        self._widths.pop(index, None)

    def close(self) -> None:
        self._model = None
        self._forward = None
        self._packed = None

    # -- the steps of load(), in order -------------------------------------------------

    def _load_model(self, device: Any, dtype: Any) -> Any:
        """The classifier with its trained head, in eval mode, on `device`."""
        import torch

        if device.type == "cpu":
            torch.set_num_threads(self._config.num_threads)
        model = load_classifier(self._config, dtype)
        model.eval()
        model.to(device)
        return model

    def _check_packed_layout(self, model: Any, device: Any, dtype: Any) -> PackedEncoder | None:
        """The packed forward once it matched the model's own; None where it does not apply.

        CPU only: the GPU path stages whole padded tensors on a side stream."""
        if device.type != "cpu" or not self._config.packed:
            return None
        if self._config.enable_lora:
            # The packed encoder is scripted and sees one token stream, not rows; adapters'
            # per-row routing lives in eager modules (engine/model/lora.py), so padded it is,
            # also before any adapter is loaded at run time.
            logger.info("LoRA adapters are served with the padded forward, not the packed one")
            return None
        from engine.model.packing import checked_packed

        # Eager for int8: only the layout is checked, and the int8 encoder is scripted anew.
        return checked_packed(model, dtype, script=self._config.quantization != "int8")

    def _attach_adapters(self, model: Any, dtype: Any) -> tuple[AdapterInfo, ...]:
        """--lora-modules onto the loaded base, before any forward wraps its modules."""
        self._dtype = dtype
        self._widths = {0: int(model.config.num_labels)}
        specs = self._config.adapters if self._config.enable_lora else ()
        if not specs:
            return ()
        from engine.model.lora import attach_adapters

        adapters = attach_adapters(model, specs, self._config.max_lora_rank, dtype)
        self._widths.update((i, a.num_labels) for i, a in enumerate(adapters, 1))
        return adapters

    def _quantize(self, model: Any, device: Any, dtype: Any) -> Any:
        if self._config.quantization != "int8":
            return model
        return quantize_int8(model, device, dtype)

    def _pack(self, model: Any, checked: PackedEncoder | None) -> PackedEncoder | None:
        """The packed forward over the model as it is now: over int8, the same modules with
        int8 Linears in place, whose layout the check before quantizing vouched for."""
        if checked is None or self._config.quantization != "int8":
            return checked
        from engine.model.packed import PackedEncoder

        return PackedEncoder.of(model)

    def _padded_forward(self, model: Any) -> Forward:
        """The forward of padded batches, and the id to pad them with.

        Decoder heads find each row's last real token by pad_token_id. A model shipped
        without one pads with its end token, and where its own forward refuses batches for
        want of a pad token, each row is read at its last real token by position instead."""
        pad = model.config.pad_token_id
        if pad is None:
            eos = model.config.eos_token_id
            self._pad_id = int((eos[0] if isinstance(eos, list) else eos) or 0)
            from engine.model.last_token import batches_without_pad_token, last_token_forward

            if not batches_without_pad_token(model):
                return last_token_forward(model)
        else:
            self._pad_id = int(pad)
        return lambda inputs: model(**inputs).logits

    def _start_streams(self, device: Any) -> None:
        if device.type == "cuda":
            from engine.model.device import CudaStaging

            self.is_async = True
            self._cuda = CudaStaging(device)

    def _describe(self, model: Any, device: Any, dtype: Any) -> ModelInfo:
        return ModelInfo(
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
            pairs_as_text=bool(getattr(model.config, PAIRS_AS_TEXT, False)),
            adapters=self._adapters,
        )

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


@dataclass(frozen=True)
class _Routed:
    """A launched batch with adapters, and each row's own label count."""

    handles: list[Any]
    widths: list[int]
