"""Loading a sequence classifier from a local directory, with vLLM's loading options.

Runs on the worker thread (it imports torch). Every failure becomes one ModelLoadError
sentence that says what was wrong and what to pass instead: a start-up error, not a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from engine.errors import ModelLoadError


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
    if cfg.convert == "classify":
        return _convert_causal_lm(cfg, hf_config, dtype)
    archs = list(getattr(hf_config, "architectures", None) or [])
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ModelLoadError(
            f"{cfg.model!r} holds a {archs[0]}, not a sequence classifier; for a causal LM pass "
            "--convert classify with --classifier-from-tokens (e.g. no,yes)."
        )
    from transformers import AutoModelForSequenceClassification

    try:
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            cfg.model,
            config=hf_config,
            dtype=dtype,
            trust_remote_code=cfg.trust_remote_code,
            output_loading_info=True,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"Cannot load {cfg.model!r} as a sequence classifier: {first_line(exc)}"
        ) from exc
    missing = [k for k in loading.get("missing_keys", ()) if _is_head(k)]
    if missing:
        # A head initialised at random would answer with noise; refuse instead.
        raise ModelLoadError(
            f"{cfg.model!r} has no trained classification head (missing {', '.join(missing)})."
        )
    return model


def _is_head(key: str) -> bool:
    return key.split(".")[0] in {"classifier", "score", "out_proj", "pre_classifier"}


def _convert_causal_lm(cfg: EngineConfig, hf_config: Any, dtype: Any) -> Any:
    """A causal LM → a zero-shot classifier whose logits are the LM's next-token logits of
    the label tokens at the last position (vLLM's `classifier_from_token`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tokens = list(cfg.classifier_from_tokens)
    if (
        not tokens
        and getattr(hf_config, "id2label", None)
        and "id2label" in (cfg.hf_overrides or {})
    ):
        tokens = [hf_config.id2label[i] for i in sorted(hf_config.id2label)]
    if not tokens:
        raise ModelLoadError(
            "--convert classify needs the label tokens: --classifier-from-tokens no,yes "
            "(or an id2label of tokens in --hf-overrides)."
        )
    tokenizer = AutoTokenizer.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
    ids = []
    for token in tokens:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1:
            raise ModelLoadError(
                f"Label token {token!r} is {len(encoded)} tokens for this tokenizer; each label "
                "must be exactly one token."
            )
        ids.append(encoded[0])
    try:
        lm = AutoModelForCausalLM.from_pretrained(
            cfg.model, config=hf_config, dtype=dtype, trust_remote_code=cfg.trust_remote_code
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"Cannot load {cfg.model!r} as a causal LM: {first_line(exc)}"
        ) from exc
    config = lm.config
    config.num_labels = len(tokens)
    config.id2label = dict(enumerate(tokens))
    config.label2id = {t: i for i, t in enumerate(tokens)}
    config.problem_type = config.problem_type or "single_label_classification"
    try:
        model = AutoModelForSequenceClassification.from_config(
            config, dtype=dtype, trust_remote_code=cfg.trust_remote_code
        )
    except ValueError as exc:
        raise ModelLoadError(f"{type(lm).__name__} has no sequence-classification form.") from exc
    head = getattr(model, "score", None)
    if head is None:
        raise ModelLoadError(f"{type(model).__name__} has no `score` head to fill.")
    # Same trunk, same weights; only the head differs.
    state = {k: v for k, v in lm.state_dict().items() if not k.startswith("lm_head")}
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys or [k for k in result.missing_keys if not _is_head(k)]:
        raise ModelLoadError(f"Cannot map the LM's weights onto {type(model).__name__}.")
    with torch.no_grad():
        head.weight.copy_(lm.get_output_embeddings().weight[ids])
        if getattr(head, "bias", None) is not None:
            head.bias.zero_()
    return model
