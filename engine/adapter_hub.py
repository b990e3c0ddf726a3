"""LoRA adapters by Hub id: an `--lora-modules name=org/adapter` resolved to a local snapshot
before the engine loads, with engine/hub.py's rules (a path is never looked up; the Hub's
cache, token and offline mode; its errors as one sentence)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from engine.adapters import AdapterSpec
from engine.config import EngineConfig
from engine.errors import ModelLoadError
from engine.hub import explain, is_local

# What serving an adapter reads (engine/model/lora.py): its config, weights in one format,
# and the optional config.json that names its labels.
_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "config.json")


def fetch_adapters(cfg: EngineConfig, *, endpoint: str | None = None) -> EngineConfig:
    """`cfg` with every --lora-modules path a local directory, downloaded when a Hub id."""
    if not cfg.enable_lora or not cfg.lora_modules:
        return cfg
    modules = tuple(
        _as_module(spec, _local(spec, cfg.download_dir, endpoint)) for spec in cfg.adapters
    )
    return replace(cfg, lora_modules=modules)


def local_adapter(spec: AdapterSpec, cache_dir: str | None) -> str:
    """One adapter's directory: its path, or its Hub snapshot downloaded (run-time loads)."""
    return _local(spec, cache_dir, None)


def _as_module(spec: AdapterSpec, path: str) -> str:
    fields = {"name": spec.name, "path": path}
    if spec.base_model_name is not None:
        fields["base_model_name"] = spec.base_model_name
    return json.dumps(fields)


def _local(spec: AdapterSpec, cache_dir: str | None, endpoint: str | None) -> str:
    name = spec.path
    if is_local(name):
        return str(Path(name).expanduser())
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ModelLoadError(
            f"The LoRA adapter {spec.name!r}: {name!r} is neither a local directory nor a "
            "Hugging Face Hub id (org/name)."
        ) from None
    try:
        path: str = snapshot_download(
            name, cache_dir=cache_dir, endpoint=endpoint, allow_patterns=list(_FILES)
        )
    except Exception as exc:
        raise explain(exc, name, None, cache_dir) from exc
    if not (Path(path) / "adapter_config.json").is_file():
        raise ModelLoadError(
            f"The Hub repo {name!r} (LoRA adapter {spec.name!r}) has no adapter_config.json; "
            "it is not a PEFT adapter."
        )
    return path
