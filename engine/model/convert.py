"""A causal LM served as a classifier or reranker, built the way vLLM converts one.

vLLM's spellings are read from the model config (after --hf-overrides):

- `classifier_from_token`: the label tokens, each one vocabulary entry;
- `method`: "from_2_way_softmax" (two tokens → one label whose weight is w[second] − w[first],
  so its sigmoid is the softmax of the pair: Qwen3-Reranker, mxbai-rerank-v2) or
  "no_post_processing" (each token's logit as is: bge-reranker-v2-gemma);
- `is_original_qwen3_reranker`: from_2_way_softmax over its two tokens.

`--convert classify --classifier-from-tokens a,b` is the same conversion with the default
method, no_post_processing. The head rows come from the LM's output embeddings, so the
classifier's logits are exactly the LM's next-token logits at the last position (or their
difference). Runs on the worker thread (it imports torch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.config import EngineConfig
from engine.errors import ModelLoadError

Method = Literal["from_2_way_softmax", "no_post_processing"]
METHODS: tuple[Method, ...] = ("from_2_way_softmax", "no_post_processing")
# Set on a converted model's config: pairs are scored as one text (query + document), as
# vLLM scores an "LLM as reranker" unless use_sep_token / use_pad_token says otherwise.
PAIRS_AS_TEXT = "classifyd_pairs_as_text"


@dataclass(frozen=True)
class Conversion:
    tokens: tuple[str, ...]
    method: Method

    @property
    def num_labels(self) -> int:
        return 1 if self.method == "from_2_way_softmax" else len(self.tokens)


def conversion_of(cfg: EngineConfig, hf_config: Any) -> Conversion | None:
    """The conversion the options and config ask for, or None for a plain classifier."""
    tokens = getattr(hf_config, "classifier_from_token", None)
    method = getattr(hf_config, "method", None)
    qwen3 = bool(getattr(hf_config, "is_original_qwen3_reranker", False))
    if tokens is None and cfg.classifier_from_tokens:
        tokens = list(cfg.classifier_from_tokens)
    if (
        tokens is None
        and cfg.convert == "classify"
        and getattr(hf_config, "id2label", None)
        and "id2label" in (cfg.hf_overrides or {})
    ):
        tokens = [hf_config.id2label[i] for i in sorted(hf_config.id2label)]
    if tokens is None and method is None and not qwen3 and cfg.convert != "classify":
        return None
    if isinstance(tokens, str) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise ModelLoadError(
            "Converting a causal LM needs its label tokens: --classifier-from-tokens no,yes, "
            'or "classifier_from_token": ["no", "yes"] in --hf-overrides.'
        )
    if qwen3:
        if method not in (None, "from_2_way_softmax"):
            raise ModelLoadError(
                f"is_original_qwen3_reranker converts with from_2_way_softmax, not {method!r}."
            )
        method = "from_2_way_softmax"
    method = method or "no_post_processing"
    if method not in METHODS:
        raise ModelLoadError(
            f"Unknown conversion method {method!r}; use one of {', '.join(METHODS)}."
        )
    if method == "from_2_way_softmax" and len(tokens) != 2:
        raise ModelLoadError(
            f"from_2_way_softmax takes exactly two tokens (false, true), got {len(tokens)}."
        )
    return Conversion(tuple(tokens), method)


def check_remote_code(cfg: EngineConfig) -> None:
    """Refuse, with the flag to pass, a model whose classes live in its own directory."""
    if cfg.trust_remote_code:
        return
    try:
        raw = json.loads((Path(cfg.model) / "config.json").read_text())
    except (OSError, ValueError):
        return  # loading reports an unreadable config in its own words
    auto_map = raw.get("auto_map") if isinstance(raw, dict) else None
    if not isinstance(auto_map, dict):
        return
    needed = [k for k in ("AutoConfig", "AutoModelForSequenceClassification") if k in auto_map]
    if needed:
        raise ModelLoadError(
            f"{cfg.model!r} ships its own model code ({auto_map[needed[-1]]}); pass "
            "--trust-remote-code to run it."
        )


def label_token_ids(tokenizer: Any, tokens: tuple[str, ...]) -> list[int]:
    """Each label token's id: its vocabulary entry (vLLM's convert_tokens_to_ids), else the
    one token the text encodes to."""
    vocab = tokenizer.get_vocab()
    ids = []
    for token in tokens:
        if token in vocab:
            ids.append(int(vocab[token]))
            continue
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1:
            raise ModelLoadError(
                f"Label token {token!r} is not in the vocabulary and is {len(encoded)} tokens "
                "for this tokenizer; each label must be exactly one token."
            )
        ids.append(int(encoded[0]))
    return ids


def convert_causal_lm(cfg: EngineConfig, hf_config: Any, conversion: Conversion, dtype: Any) -> Any:
    """The causal LM in `cfg.model` as a *ForSequenceClassification over `conversion`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from engine.model.loading import load_pretrained

    tokenizer = AutoTokenizer.from_pretrained(
        cfg.tokenizer or cfg.model, trust_remote_code=cfg.trust_remote_code
    )
    ids = label_token_ids(tokenizer, conversion.tokens)
    lm, loading = load_pretrained(AutoModelForCausalLM, cfg, hf_config, dtype, "a causal LM")
    if any(k.startswith("lm_head") for k in loading.get("missing_keys", ())):
        # An LM head initialised at random would give the classifier random rows.
        raise ModelLoadError(
            f"{cfg.model!r} has no trained LM head to take the label tokens' rows from; a "
            "checkpoint that already is a classifier needs no classifier_from_token."
        )
    config = lm.config
    labels = _labels(cfg, conversion)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {t: i for i, t in enumerate(labels)}
    if config.num_labels > 1:
        config.problem_type = config.problem_type or "single_label_classification"
    config.architectures = [type(lm).__name__.replace("ForCausalLM", "ForSequenceClassification")]
    setattr(
        config,
        PAIRS_AS_TEXT,
        not getattr(config, "use_sep_token", getattr(config, "use_pad_token", False)),
    )
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
    if result.unexpected_keys or [k for k in result.missing_keys if not k.startswith("score")]:
        raise ModelLoadError(f"Cannot map the LM's weights onto {type(model).__name__}.")
    rows = lm.get_output_embeddings().weight.detach().float()[ids]
    if conversion.method == "from_2_way_softmax":
        # sigmoid(l_true − l_false) is the two-way softmax's probability of the true token.
        rows = rows[1:2] - rows[0:1]
    with torch.no_grad():
        head.weight.copy_(rows.to(head.weight.dtype))
        if getattr(head, "bias", None) is not None:
            head.bias.zero_()
    return model


def _labels(cfg: EngineConfig, conversion: Conversion) -> list[str]:
    overrides = (cfg.hf_overrides or {}).get("id2label")
    if isinstance(overrides, dict) and len(overrides) == conversion.num_labels:
        return [str(overrides[k]) for k in sorted(overrides, key=int)]
    if conversion.method == "from_2_way_softmax":
        return [conversion.tokens[1]]  # the probability of the "true" token
    return list(conversion.tokens)
