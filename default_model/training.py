"""Fine-tuning the encoder for sentiment, evaluating the saved model, and scoring it.

torch and transformers are imported inside the functions, so that only an actual build pays
for importing them: finding a complete build does not.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from default_model import layers
from default_model.data import Example, Split
from default_model.errors import DefaultModelError
from default_model.progress import Progress
from default_model.recipe import LABELS, DomainResult, Recipe

if TYPE_CHECKING:
    import torch

# Sentences per batch of the one pass through the frozen layers (no backward, so larger).
FEATURE_BATCH = 64


def resolve_precision(recipe: Recipe) -> str:
    """The recipe's precision, with "auto" decided by the CPU's native bf16 support."""
    if recipe.precision != "auto":
        return recipe.precision
    import torch

    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    capabilities: dict[str, Any] = get_capabilities() if callable(get_capabilities) else {}
    native = bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    return "bf16" if native else "fp32"


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffle, sort by length within windows of 64 batches, then shuffle the batches.

    Similar lengths share a batch (little padding, so short sentences train fast) while batch
    order and membership still vary from epoch to epoch.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 64
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and their attention mask."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def train(
    encoder_dir: Path,
    staging: Path,
    examples: list[Example],
    recipe: Recipe,
    precision: str,
    progress: bool,
) -> float:
    """Fine-tune the encoder in `encoder_dir` on `examples`; save model and tokenizer to
    `staging` in fp32. Returns the seconds spent caching the frozen layers' outputs."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(encoder_dir),
        local_files_only=True,
        dtype=torch.float32,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    depth = len(model.bert.encoder.layer)
    if recipe.frozen_layers > depth:
        raise DefaultModelError(
            f"frozen_layers is {recipe.frozen_layers} but the encoder has {depth} layers"
        )
    encoded: list[list[int]] = tokenizer(
        [e.text for e in examples], truncation=True, max_length=recipe.max_length
    )["input_ids"]
    started = time.monotonic()
    features = cache_features(model, encoded, tokenizer.pad_token_id, recipe, precision)
    features_seconds = time.monotonic() - started

    def cached(batch: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_features([features[i] for i in batch])

    fit_top(model, cached, [len(s) for s in encoded], [e.label for e in examples], recipe,
            precision, progress)  # fmt: skip
    model.eval()
    # Autocast never changes parameter dtypes, so these are the fp32 master weights.
    model.save_pretrained(str(staging))
    # Tokenizing the training set left truncation at max_length set in the Rust tokenizer;
    # saved, it would sit in tokenizer.json, which some servers (TEI) read and obey directly.
    tokenizer.backend_tokenizer.no_truncation()
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.save_pretrained(str(staging))
    _drop_loading_flags(staging / "tokenizer_config.json")
    return features_seconds


def cache_features(
    model: Any, encoded: Sequence[Sequence[int]], pad_id: int, recipe: Recipe, precision: str
) -> list[torch.Tensor]:
    """Each sentence's hidden states (length, width) after the frozen layers, computed once in
    eval mode. Sentences run sorted by length, so batches carry almost no padding; a row's
    padding does not reach its tokens (attention masks it), so the result is per sentence."""
    import torch

    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    features: list[torch.Tensor] = [torch.empty(0)] * len(encoded)
    # no_grad, not inference_mode: the cached tensors become inputs of the trained layers,
    # and autograd refuses to save inference tensors for the backward pass.
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        for start in range(0, len(order), FEATURE_BATCH):
            batch = order[start : start + FEATURE_BATCH]
            ids, mask = pad([encoded[i] for i in batch], pad_id)
            hidden = layers.frozen_forward(model, ids, mask, recipe.frozen_layers).float()
            for row, i in enumerate(batch):
                features[i] = hidden[row, : len(encoded[i])].clone()
    return features


def pad_features(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded hidden states (batch, length, width) and their attention mask."""
    import torch

    width = max(r.shape[0] for r in rows)
    hidden = rows[0].new_zeros((len(rows), width, rows[0].shape[1]))
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, states in enumerate(rows):
        hidden[row, : states.shape[0]] = states
        mask[row, : states.shape[0]] = 1
    return hidden, mask


def fit_top(
    model: Any,
    inputs: Callable[[list[int]], tuple[torch.Tensor, torch.Tensor]],
    lengths: Sequence[int],
    labels: Sequence[int],
    recipe: Recipe,
    precision: str,
    progress: bool,
) -> None:
    """Train the layers above the frozen ones, the pooler and the classifier; `inputs` gives a
    batch's hidden states after the frozen layers and its mask."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    rng = random.Random(recipe.seed)
    epochs = [
        length_bucketed_batches(lengths, recipe.batch_size, rng) for _ in range(recipe.epochs)
    ]
    total_steps = sum(len(batches) for batches in epochs)
    model.requires_grad_(False)
    top = [*model.bert.encoder.layer[recipe.frozen_layers :], model.bert.pooler, model.classifier]
    for module in top:
        module.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": recipe.weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    try:
        # The fused CPU kernel makes the optimizer step much cheaper than the foreach one.
        optimizer = torch.optim.AdamW(groups, lr=recipe.learning_rate, fused=True)
    except (RuntimeError, TypeError):
        optimizer = torch.optim.AdamW(groups, lr=recipe.learning_rate)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, math.ceil(recipe.warmup_fraction * total_steps), total_steps
    )
    autocast = precision == "bf16"
    bar = Progress(progress, total_steps, "training")
    # Only the trained modules' dropout matters: the frozen part is not run here.
    model.train()
    try:
        for batches in epochs:
            for batch in batches:
                hidden, mask = inputs(batch)
                target = torch.tensor([labels[i] for i in batch], dtype=torch.long)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    logits = layers.top_forward(model, hidden, mask, recipe.frozen_layers)
                loss = torch.nn.functional.cross_entropy(logits.float(), target)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, recipe.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                bar.update(loss.item())
    finally:
        bar.close()
    model.eval()


def _drop_loading_flags(config_path: Path) -> None:
    """transformers saves how the tokenizer was loaded (`local_files_only`, `is_local`) into its
    config; those describe this build machine, not the tokenizer."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in ("local_files_only", "is_local"):
        config.pop(key, None)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def evaluate(model_dir: Path, examples: list[Example]) -> list[int]:
    """Predictions of the model as saved, in fp32 and at full length, as the server runs it."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), local_files_only=True, dtype=torch.float32
    )
    model.eval()
    encoded: list[list[int]] = tokenizer([e.text for e in examples], truncation=True)["input_ids"]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    predictions = [0] * len(examples)
    with torch.inference_mode():
        for start in range(0, len(order), 128):
            batch = order[start : start + 128]
            ids, mask = pad([encoded[i] for i in batch], tokenizer.pad_token_id)
            logits = model(input_ids=ids, attention_mask=mask).logits
            for i, label in zip(batch, logits.argmax(dim=-1).tolist(), strict=True):
                predictions[i] = int(label)
    return predictions


def score(
    splits: dict[str, Split],
    recipe: Recipe,
    heldout: list[Example],
    predictions: list[int],
) -> tuple[DomainResult, ...]:
    """Each domain's held-out accuracy next to its majority-class baseline."""
    results = []
    for domain in recipe.all_domains:
        pairs = [
            (e.label, p) for e, p in zip(heldout, predictions, strict=True) if e.domain == domain
        ]
        train_positive = sum(e.label for e in splits[domain].train)
        majority = 1 if 2 * train_positive >= len(splits[domain].train) else 0
        n = max(1, len(pairs))
        results.append(
            DomainResult(
                domain=domain,
                trained=domain in recipe.domains,
                train_count=len(splits[domain].train) if domain in recipe.domains else 0,
                heldout_count=len(pairs),
                accuracy=sum(label == p for label, p in pairs) / n,
                baseline_label=LABELS[majority],
                baseline_accuracy=sum(label == majority for label, _ in pairs) / n,
            )
        )
    return tuple(results)


@contextlib.contextmanager
def torch_settings(num_threads: int) -> Iterator[None]:
    """Threads, deterministic kernels, RNG and log verbosity for the build; all restored after,
    because the server process goes on to use torch."""
    import torch
    from transformers.utils import logging as hf_logging

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # The "newly initialised classifier weights" report is expected here, not a problem, and
    # per-file load/save bars would only clutter the build's own progress output.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
