"""Tiny seeded models built from a config and saved, so tests load them like real ones."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

WORDS = (
    "the a an movie film plot actor actress scene story music score ending beginning "
    "great good bad awful boring brilliant dull lovely terrible fine wonderful poor "
    "was is were be been very really quite not never always so too much little "
    "i you we they it this that these those and or but because with without of in on "
    "love hate like enjoy loved hated liked enjoyed coffee cafe update broke everything "
    "frustrating new fast slow price service food staff room hotel phone battery screen"
).split()


def sentences(count: int, seed: int = 0, max_words: int = 60) -> list[str]:
    """Texts of very different lengths (1 to max_words words), reproducibly."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        n = 1 + (i * 7919 + rng.randrange(max_words)) % max_words
        out.append(" ".join(rng.choice(WORDS) for _ in range(n)))
    return out


def _wordpiece_tokenizer() -> Any:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab_list = [*specials, *sorted(set(WORDS)), *letters, *(f"##{c}" for c in letters)]
    vocab_list += [str(d) for d in range(10)] + list(".,!?'-")
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )


def _bpe_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sentences(300, seed=1), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", model_max_length=512
    )


def build_model(
    out: Path,
    arch: str = "bert",
    *,
    num_labels: int = 3,
    labels: list[str] | None = None,
    problem_type: str | None = None,
    seed: int = 0,
    max_positions: int | None = None,
    chat_template: str | None = None,
) -> Path:
    """Save a tiny seeded `arch` sequence classifier and its tokenizer into `out`."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig, LlamaConfig

    tokenizer = _wordpiece_tokenizer() if arch == "bert" else _bpe_tokenizer()
    id2label = {i: name for i, name in enumerate(labels)} if labels else None
    # A wide init (transformers' default is 0.02) so outputs differ clearly between inputs:
    # at 0.02 every text gets the same probabilities to 1e-5, and exactness checks prove nothing.
    common: dict[str, Any] = {
        "num_labels": num_labels,
        "problem_type": problem_type,
        "initializer_range": 0.5,
    }
    if id2label:
        common["id2label"] = id2label
        common["label2id"] = {v: k for k, v in id2label.items()}
    vocab = len(tokenizer)
    max_positions = max_positions or tokenizer.model_max_length
    config: Any
    if arch == "bert":
        config = BertConfig(
            vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=max_positions,
            pad_token_id=tokenizer.pad_token_id, **common,
        )  # fmt: skip
    elif arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, intermediate_size=64, max_position_embeddings=max_positions,
            eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
            pad_token_id=None, **common,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown arch {arch}")
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(out)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(out)
    return out
