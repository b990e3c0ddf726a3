"""Which model a request's `model` names: the base, or one of its LoRA adapters.

vLLM names an adapter by its own name; SGLang also as `base:adapter`. Each adapter answers
with its own head's labels and default activation (engine/adapters.py AdapterInfo).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.activation import Activation, default_activation
from engine.adapters import AdapterInfo
from server.errors import not_found
from server.state import AppState


@dataclass(frozen=True)
class Target:
    """What a request asked for: the name to echo, the adapter (None: the base), and the
    labels and activation its answers carry."""

    name: str
    adapter: str | None
    labels: tuple[str, ...]
    activation: Activation


def adapter_named(state: AppState, model: str) -> AdapterInfo | None:
    """The adapter `model` names, by its name or SGLang's `base:adapter`; None if none."""
    adapters = state.engine.info.adapters
    if not adapters:
        return None
    base, sep, name = model.rpartition(":")
    if sep and base not in state.names:
        name = model
    for adapter in adapters:
        if adapter.name in (model, name):
            return adapter
    return None


def target_of(state: AppState, model: str | None) -> Target:
    """The base or adapter a request's `model` names; 404 for a name this server lacks."""
    info = state.engine.info
    if model is None or model in state.names:
        return Target(model or state.names[0], None, info.labels, state.default_activation)
    adapter = adapter_named(state, model)
    if adapter is None:
        raise not_found(f"The model `{model}` does not exist.")
    kind = default_activation(adapter.problem_type, adapter.num_labels)
    return Target(model, adapter.name, adapter.labels, kind)
