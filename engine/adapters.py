"""LoRA adapters named on the command line (--lora-modules), as vLLM spells them.

    name=path                                   (the short form)
    {"name": "n", "path": "p", "base_model_name": "b"}   (vLLM's JSON form)

Parsed and checked here, without torch, when the config is made; the adapters themselves load
with the model on the worker thread (engine/model/lora.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter to serve: the name clients send as `model`, and its directory."""

    name: str
    path: str
    # vLLM's JSON form may name the base it applies to; it must be the served model.
    base_model_name: str | None = None


@dataclass(frozen=True)
class AdapterInfo:
    """A loaded adapter as the rest of the server sees it: its own head's labels."""

    name: str
    path: str
    labels: tuple[str, ...]
    problem_type: str | None
    rank: int

    @property
    def num_labels(self) -> int:
        return len(self.labels)


def parse_lora_module(value: str) -> AdapterSpec:
    """One --lora-modules value; ValueError with one sentence when it is neither form."""
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--lora-modules {value!r} is not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise ValueError(f"--lora-modules {value!r} must be a JSON object")
        unknown = set(data) - {"name", "path", "base_model_name"}
        if unknown:
            raise ValueError(
                f"--lora-modules {value!r} has unknown keys {sorted(unknown)}; "
                "expected name, path and optionally base_model_name"
            )
        name, path, base = data.get("name"), data.get("path"), data.get("base_model_name")
        if not isinstance(name, str) or not isinstance(path, str) or not name or not path:
            raise ValueError(f"--lora-modules {value!r} needs a string `name` and `path`")
        if base is not None and not isinstance(base, str):
            raise ValueError(f"--lora-modules {value!r}: base_model_name must be a string")
        return AdapterSpec(name, path, base)
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(
            f"--lora-modules {value!r} must be name=path or a JSON object "
            '{"name": ..., "path": ...}'
        )
    return AdapterSpec(name.strip(), path.strip())


def parse_lora_modules(
    values: tuple[str, ...], served: tuple[str, ...], max_loras: int | None
) -> tuple[AdapterSpec, ...]:
    """Every --lora-modules value, checked against each other and the served names."""
    specs = tuple(parse_lora_module(v) for v in values)
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"the LoRA adapter name {spec.name!r} is given twice")
        if spec.name in served:
            raise ValueError(f"the LoRA adapter name {spec.name!r} is already a served model name")
        if spec.base_model_name is not None and spec.base_model_name not in served:
            raise ValueError(
                f"the LoRA adapter {spec.name!r} names base_model_name "
                f"{spec.base_model_name!r}, which is not a model this server serves "
                f"({', '.join(served)})"
            )
        seen.add(spec.name)
    if max_loras is not None and len(specs) > max_loras:
        raise ValueError(
            f"{len(specs)} LoRA adapters are given but --max-loras is {max_loras}; "
            "raise it or serve fewer"
        )
    return specs
