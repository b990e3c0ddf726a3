"""Tiny PEFT LoRA adapters built locally on a tiny base, and PEFT's own answers for them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The head each family's classifier keeps its weights in (PEFT's modules_to_save).
HEADS = {"bert": "classifier", "roberta": "classifier", "qwen2": "score", "llama": "score"}
# Linear layers the adapters adapt: attention and feed-forward, as LoRA recipes do.
TARGETS = {
    "bert": ["query", "value", "dense"],
    "roberta": ["query", "key", "dense"],
    "qwen2": ["q_proj", "v_proj", "o_proj", "up_proj"],
    "llama": ["q_proj", "k_proj", "down_proj"],
}


def _base(base: Path, num_labels: int) -> Any:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config: Any = AutoConfig.from_pretrained(base)
    if num_labels != config.num_labels:
        config.num_labels = num_labels
        config.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        config.label2id = {v: k for k, v in config.id2label.items()}
    return AutoModelForSequenceClassification.from_pretrained(
        base, config=config, ignore_mismatched_sizes=True
    )


def build_adapter(
    base: Path,
    out: Path,
    arch: str,
    *,
    num_labels: int,
    seed: int,
    rank: int = 4,
    labels: Sequence[str] | None = None,
    problem_type: str | None = None,
    use_rslora: bool = False,
) -> Path:
    """A PEFT SEQ_CLS LoRA adapter with its own head of `num_labels`, weights randomised so
    that it answers clearly unlike the base. `labels`: written to the dir's config.json."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = _base(base, num_labels)
    config = LoraConfig(
        task_type="SEQ_CLS",
        r=rank,
        lora_alpha=2 * rank,
        target_modules=TARGETS[arch],
        modules_to_save=[HEADS[arch]],
        use_rslora=use_rslora,
    )
    peft: Any = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                param.normal_(0.0, 0.4)
    peft.save_pretrained(out)
    if labels is not None or problem_type is not None:
        own: dict[str, Any] = {}
        if labels is not None:
            own["id2label"] = {str(i): name for i, name in enumerate(labels)}
        if problem_type is not None:
            own["problem_type"] = problem_type
        (out / "config.json").write_text(json.dumps(own))
    return out


def peft_logits(base: Path, adapter: Path, prompts: Sequence[Sequence[int]]) -> list[list[float]]:
    """PEFT's logits for `adapter`, one prompt at a time in plain transformers (fp32)."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    saved = load_file(adapter / "adapter_model.safetensors")
    heads = ("score.weight", "classifier.weight", "out_proj.weight")
    width = next(v.shape[0] for k, v in saved.items() if k.endswith(heads))
    model: Any = PeftModel.from_pretrained(_base(base, width), adapter).eval()
    with torch.inference_mode():
        return [model(input_ids=torch.tensor([list(row)])).logits[0].tolist() for row in prompts]


def base_logits(base: Path, prompts: Sequence[Sequence[int]]) -> list[list[float]]:
    import torch
    from transformers import AutoModelForSequenceClassification

    model: Any = AutoModelForSequenceClassification.from_pretrained(base).eval()
    with torch.inference_mode():
        return [model(input_ids=torch.tensor([list(row)])).logits[0].tolist() for row in prompts]
