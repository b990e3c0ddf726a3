"""LoRA adapters on the one loaded base model, applied per row in mixed batches.

Each adapter is a PEFT `SEQ_CLS` directory (adapter_config.json, adapter_model.safetensors):
LoRA matrices for some Linear layers of the trunk, and usually its own copy of the head
(`modules_to_save`), possibly with another label count. Loading wraps each targeted Linear in
`LoraLinear` and each saved head module in `HeadSwitch`, both holding every adapter's weights
by index (0 is the base). A batch's forward runs inside `routed(groups)`: each wrapper applies
an adapter's delta or head to that adapter's rows only, as PEFT's mixed-batch forward does
(`adapter_names`), so one forward serves any mix of adapters. The routing is thread-local,
not module state (PEFT's forward hooks are), because CPU workers share one model and run
their batches at the same time.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from engine.adapters import AdapterInfo, AdapterSpec
from engine.errors import ModelLoadError

# PEFT's prefix on every saved key: the PeftModel's `base_model.model` is the base itself.
_PREFIX = "base_model.model."
# adapter_config.json settings that change the math beyond base(x) + B(A(x)) * scaling.
_UNSUPPORTED = {
    "use_dora": "DoRA",
    "lora_bias": "LoRA bias terms",
    "fan_in_fan_out": "fan_in_fan_out (Conv1D layers)",
    "rank_pattern": "per-module ranks (rank_pattern)",
    "alpha_pattern": "per-module alphas (alpha_pattern)",
    "layer_replication": "layer_replication",
    "target_parameters": "target_parameters",
    "trainable_token_indices": "trainable tokens",
    "alora_invocation_tokens": "activated LoRA (aLoRA)",
    "use_qalora": "QA-LoRA",
}

# (adapter index, its rows in the batch; None: every row) for the forward running on this
# thread; unset outside `routed`, when every wrapper is the base layer alone.
_route = threading.local()
Groups = list[tuple[int, Tensor | None]]


def groups_of(adapters: Sequence[int], device: torch.device | None = None) -> Groups:
    """Each adapter index of a batch with the rows that carry it, in first-seen order; the
    row indices on the model's device, copied there once rather than at every layer."""
    distinct = list(dict.fromkeys(adapters))
    if len(distinct) == 1:
        return [(distinct[0], None)]
    return [
        (index, torch.tensor([row for row, a in enumerate(adapters) if a == index], device=device))
        for index in distinct
    ]


@contextmanager
def routed(groups: Groups | None) -> Iterator[None]:
    """Run the forward inside with these rows → adapters (None: the base for every row)."""
    _route.groups = groups
    try:
        yield
    finally:
        _route.groups = None


def _groups() -> Groups | None:
    groups: Groups | None = getattr(_route, "groups", None)
    return groups


class LoraLinear(nn.Module):
    """A base Linear plus each adapter's low-rank delta: base(x) + B(A(x)) * scaling."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.deltas: dict[int, tuple[Tensor, Tensor, float]] = {}

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)
        groups = _groups()
        if not groups:
            return out
        for index, rows in groups:
            delta = self.deltas.get(index)
            if delta is None:
                continue
            a, b, scaling = delta
            if rows is None:
                out = out + nn.functional.linear(nn.functional.linear(x, a), b) * scaling
            else:
                part = nn.functional.linear(nn.functional.linear(x[rows], a), b) * scaling
                out[rows] += part.to(out.dtype)
        return out


class HeadSwitch(nn.Module):
    """A head module and each adapter's own copy of it, applied to that adapter's rows.
    Heads of different widths write into one zero-padded output; the runner cuts each row
    back to its adapter's label count."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.heads = nn.ModuleDict()

    def head(self, index: int) -> nn.Module:
        # One dict read (nn.ModuleDict has no get()): an unload cannot fall between a test and
        # the read. Only a cancelled request's rows may still name an unloaded adapter.
        head = self.heads._modules.get(str(index))
        return self.base if head is None else head

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        groups = _groups()
        if not groups:
            return self.base(x, *args, **kwargs)
        if len(groups) == 1:
            return self.head(groups[0][0])(x, *args, **kwargs)
        parts = [(rows, self.head(index)(x[rows], *args, **kwargs)) for index, rows in groups]
        width = max(part.shape[-1] for _, part in parts)
        out = parts[0][1].new_zeros((x.shape[0], *parts[0][1].shape[1:-1], width))
        for rows, part in parts:
            out[rows, ..., : part.shape[-1]] = part
        return out


def attach_adapters(
    model: nn.Module, specs: Sequence[AdapterSpec], max_rank: int, dtype: torch.dtype
) -> tuple[AdapterInfo, ...]:
    """Load every adapter onto `model` (in place); adapter i + 1 is `specs[i]`."""
    return tuple(
        _attach(model, spec, index, max_rank, dtype) for index, spec in enumerate(specs, 1)
    )


def attach_adapter(
    model: nn.Module, spec: AdapterSpec, index: int, max_rank: int, dtype: torch.dtype
) -> AdapterInfo:
    """One adapter onto a model that may be serving: wrappers for other indices keep their
    answers (a new wrapper adds nothing for them), and a failed load leaves nothing behind."""
    try:
        return _attach(model, spec, index, max_rank, dtype)
    except BaseException:
        detach_adapter(model, index)
        raise


def detach_adapter(model: nn.Module, index: int) -> None:
    """Drop adapter `index`'s deltas and heads; only once no forward is routed to it."""
    for module in model.modules():
        if isinstance(module, LoraLinear):
            module.deltas.pop(index, None)
        elif isinstance(module, HeadSwitch) and str(index) in module.heads:
            del module.heads[str(index)]


def _attach(
    model: nn.Module, spec: AdapterSpec, index: int, max_rank: int, dtype: torch.dtype
) -> AdapterInfo:
    where = f"The LoRA adapter {spec.name!r} ({spec.path})"
    config = _read_config(spec, where)
    rank = _check_config(config, max_rank, where)
    tensors = _read_weights(Path(spec.path), where)
    alpha = float(config.get("lora_alpha", rank))
    scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    device = next(model.parameters()).device
    modules = dict(model.named_modules())
    deltas: dict[str, dict[str, Tensor]] = {}
    heads: dict[str, dict[str, Tensor]] = {}
    saved = [str(m) for m in config.get("modules_to_save") or ()]
    for key, tensor in tensors.items():
        name = key.removeprefix(_PREFIX)
        for part in ("lora_A", "lora_B"):
            if name.endswith(f".{part}.weight"):
                deltas.setdefault(name[: -len(f".{part}.weight")], {})[part] = tensor
                break
        else:
            head = _head_of(name, modules, saved)
            if head is None:
                raise ModelLoadError(
                    f"{where} does not fit the base model: it holds {name!r}, neither a LoRA "
                    "matrix nor a head module of the base (modules_to_save)."
                )
            heads.setdefault(head, {})[name[len(head) + 1 :]] = tensor
    for path, pair in deltas.items():
        _add_delta(model, modules, path, pair, index, scaling, max_rank, where, dtype, device)
    width = None
    for path, state in sorted(heads.items(), key=lambda h: list(modules).index(h[0])):
        width = _add_head(model, modules, path, state, index, where, dtype, device)
    base: Any = model.config
    base_labels = tuple(str(base.id2label.get(i, f"LABEL_{i}")) for i in range(base.num_labels))
    labels, problem_type = _labels(Path(spec.path), width, base_labels, base)
    return AdapterInfo(spec.name, spec.path, labels, problem_type, rank)


def _read_config(spec: AdapterSpec, where: str) -> dict[str, Any]:
    path = Path(spec.path)
    if not path.is_dir():
        raise ModelLoadError(f"{where} is not a directory.")
    try:
        config = json.loads((path / "adapter_config.json").read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{where} has no adapter_config.json.") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{where}: adapter_config.json cannot be read ({exc}).") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{where}: adapter_config.json is not a JSON object.")
    return config


def _read_weights(path: Path, where: str) -> dict[str, Tensor]:
    try:
        if (path / "adapter_model.safetensors").is_file():
            from safetensors.torch import load_file

            return load_file(path / "adapter_model.safetensors")
        if (path / "adapter_model.bin").is_file():
            weights: dict[str, Tensor] = torch.load(path / "adapter_model.bin", weights_only=True)
            return weights
    except Exception as exc:
        raise ModelLoadError(f"{where}: its weights cannot be read ({exc}).") from exc
    raise ModelLoadError(f"{where} has no adapter_model.safetensors (or adapter_model.bin).")


def _check_config(config: dict[str, Any], max_rank: int, where: str) -> int:
    kind = config.get("peft_type")
    if kind != "LORA":
        raise ModelLoadError(f"{where} is a {kind} adapter; only LoRA adapters are served.")
    task = config.get("task_type")
    if task not in (None, "SEQ_CLS"):
        raise ModelLoadError(f"{where} is a {task} adapter, not a SEQ_CLS (classifier) one.")
    for key, what in _UNSUPPORTED.items():
        if config.get(key):
            raise ModelLoadError(f"{where} uses {what}, which this server does not apply.")
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise ModelLoadError(f"{where} has no valid rank `r` in adapter_config.json.")
    if rank > max_rank:
        raise ModelLoadError(
            f"{where} has rank {rank}, more than --max-lora-rank {max_rank}; raise it."
        )
    return rank


def _head_of(name: str, modules: dict[str, nn.Module], saved: list[str]) -> str | None:
    """The saved head module (a modules_to_save entry) that the key `name` belongs to."""
    for path in modules:
        if (
            path
            and name.startswith(path + ".")
            and any(path == entry or path.endswith("." + entry) for entry in saved)
        ):
            return path
    return None


def _add_delta(
    model: nn.Module,
    modules: dict[str, nn.Module],
    path: str,
    pair: dict[str, Tensor],
    index: int,
    scaling: float,
    max_rank: int,
    where: str,
    dtype: torch.dtype,
    device: torch.device,
) -> None:
    layer = modules.get(path)
    if isinstance(layer, LoraLinear):
        layer = layer.base
    if not isinstance(layer, nn.Linear):
        what = "no such module" if layer is None else type(layer).__name__
        raise ModelLoadError(
            f"{where} targets {path!r} ({what}) in the base model; only Linear layers are "
            "supported, and the adapter must be for this base."
        )
    if set(pair) != {"lora_A", "lora_B"}:
        raise ModelLoadError(f"{where} has only one of lora_A / lora_B for {path!r}.")
    a, b = pair["lora_A"], pair["lora_B"]
    rank = a.shape[0]
    if a.shape != (rank, layer.in_features) or b.shape != (layer.out_features, rank):
        raise ModelLoadError(
            f"{where} does not fit the base model: {path!r} is {layer.in_features} → "
            f"{layer.out_features}, the adapter's matrices are {tuple(a.shape)} and "
            f"{tuple(b.shape)}."
        )
    if rank > max_rank:
        raise ModelLoadError(
            f"{where} has rank {rank} at {path!r}, more than --max-lora-rank {max_rank}."
        )
    wrapper = modules[path]
    if not isinstance(wrapper, LoraLinear):
        wrapper = LoraLinear(layer)
        model.set_submodule(path, wrapper)
        modules[path] = wrapper
    wrapper.deltas[index] = (a.to(device, dtype), b.to(device, dtype), scaling)


def _add_head(
    model: nn.Module,
    modules: dict[str, nn.Module],
    path: str,
    state: dict[str, Tensor],
    index: int,
    where: str,
    dtype: torch.dtype,
    device: torch.device,
) -> int | None:
    """The adapter's copy of the head module at `path`; its output width (last Linear's)."""
    switch = modules[path]
    if not isinstance(switch, HeadSwitch):
        switch = HeadSwitch(switch)
        model.set_submodule(path, switch)
        modules[path] = switch
    head = copy.deepcopy(switch.base)
    expected = set(head.state_dict())
    if set(state) != expected:
        raise ModelLoadError(
            f"{where}: its saved {path!r} does not match the base's (has "
            f"{sorted(state)}, the base has {sorted(expected)})."
        )
    # A head may have its own label count: a Linear whose saved weight has other rows is
    # rebuilt at that size (same inputs), anything else must match the base's shape.
    for name, sub in list(head.named_modules()):
        weight = state.get(f"{name}.weight" if name else "weight")
        if isinstance(sub, nn.Linear) and weight is not None and weight.shape != sub.weight.shape:
            if weight.dim() != 2 or weight.shape[1] != sub.in_features:
                break
            new = nn.Linear(sub.in_features, weight.shape[0], bias=sub.bias is not None)
            if name:
                head.set_submodule(name, new)
            else:
                head = new
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"{where}: its saved {path!r} does not fit the base's head "
            f"({str(exc).splitlines()[-1].strip()})."
        ) from exc
    head.to(device, dtype).eval()
    switch.heads[str(index)] = head
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def _labels(
    path: Path, width: int | None, base_labels: tuple[str, ...], base: Any
) -> tuple[tuple[str, ...], str | None]:
    """An adapter's labels: its directory's config.json id2label when it has one of the
    head's width; else LABEL_i. Without its own head it answers with the base's."""
    if width is None:
        return base_labels, getattr(base, "problem_type", None)
    own: dict[str, Any] = {}
    if (path / "config.json").is_file():
        try:
            own = json.loads((path / "config.json").read_text())
        except ValueError:
            own = {}
    id2label = own.get("id2label") or {}
    names = [id2label.get(str(i), id2label.get(i)) for i in range(width)]
    if len(id2label) == width and all(n is not None for n in names):
        labels = tuple(str(n) for n in names)
    else:
        labels = tuple(f"LABEL_{i}" for i in range(width))
    return labels, own.get("problem_type")
