"""Loading a sequence classifier from a local directory, with vLLM's loading options.

Runs on the worker thread (it imports torch). Every failure becomes one ModelLoadError
sentence that says what was wrong and what to pass instead: a start-up error, not a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from engine.errors import ModelLoadError
from engine.model.convert import check_remote_code, conversion_of, convert_causal_lm


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def apply_overrides(hf_config: Any, overrides: dict[str, Any]) -> None:
    """--hf-overrides: set config attributes; `id2label` keys may be strings (JSON)."""
    for key, value in overrides.items():
        if key == "id2label":
            value = {int(k): str(v) for k, v in value.items()}
            hf_config.id2label = value
            hf_config.label2id = {v: k for k, v in value.items()}
        elif key == "num_labels" and "id2label" in overrides:
            continue  # id2label already fixed the count
        else:
            setattr(hf_config, key, value)


def check_model_dir(model: str) -> None:
    """Fail fast, before anything heavy loads, on a directory that cannot be a model."""
    path = Path(model)
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "has no config.json"
        raise ModelLoadError(f"The model directory {model!r} {what}.")


def load_config(cfg: EngineConfig) -> Any:
    from transformers import AutoConfig

    check_model_dir(cfg.model)
    check_remote_code(cfg)
    try:
        hf_config = AutoConfig.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"Cannot read the model config in {cfg.model!r}: {first_line(exc)}"
        ) from exc
    apply_overrides(hf_config, cfg.hf_overrides or {})
    return hf_config


def load_classifier(cfg: EngineConfig, dtype: Any) -> Any:
    """The model as a *ForSequenceClassification, with trained head weights."""
    from transformers.utils import logging as hf_logging

    # A server's start-up log is ours; the library's per-shard progress bars are noise there.
    hf_logging.disable_progress_bar()
    hf_config = load_config(cfg)
    conversion = conversion_of(cfg, hf_config)
    if conversion is not None:
        return convert_causal_lm(cfg, hf_config, conversion, dtype)
    archs = list(getattr(hf_config, "architectures", None) or [])
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ModelLoadError(
            f"{cfg.model!r} holds a {archs[0]}, not a sequence classifier; for a causal LM pass "
            "--convert classify with --classifier-from-tokens (e.g. no,yes)."
        )
    from transformers import AutoModelForSequenceClassification

    model, loading = load_pretrained(
        AutoModelForSequenceClassification, cfg, hf_config, dtype, "a sequence classifier"
    )
    missing = [k for k in loading.get("missing_keys", ()) if _is_head(k)]
    if missing:
        # A head initialised at random would answer with noise; refuse instead.
        raise ModelLoadError(
            f"{cfg.model!r} has no trained classification head (missing {', '.join(missing)})."
        )
    return model


def load_pretrained(
    auto_class: Any, cfg: EngineConfig, hf_config: Any, dtype: Any, what: str
) -> tuple[Any, dict[str, Any]]:
    """`auto_class.from_pretrained` on the model directory, with its loading info (missing
    keys); a failure is one ModelLoadError naming `what` it was loading as."""
    try:
        model, loading = auto_class.from_pretrained(
            cfg.model,
            config=hf_config,
            dtype=dtype,
            trust_remote_code=cfg.trust_remote_code,
            output_loading_info=True,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"Cannot load {cfg.model!r} as {what}: {first_line(exc)}") from exc
    return model, loading


def _is_head(key: str) -> bool:
    return key.split(".")[0] in {"classifier", "score", "out_proj", "pre_classifier"}
