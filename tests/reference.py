"""Plain transformers, one text at a time, no padding: what every server result must equal."""

from __future__ import annotations

from pathlib import Path


def reference_probs(model_dir: Path, texts: list[str]) -> list[list[float]]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for text in texts:
            logits = model(**tok(text, return_tensors="pt")).logits[0]
            out.append(torch.softmax(logits, -1).tolist())
    return out
