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


# -- tokenizers of the other families ------------------------------------------------------
#
# Each is trained in a few milliseconds on `sentences(300, seed=1)`, so it splits some words
# into pieces, as real tokenizers do on rare words.


def _trained_tokenizer(
    kind: str,
    specials: list[str],
    *,
    template: tuple[str, str] | None = None,
    vocab_size: int = 400,
    model_max_length: int = 256,
    extra_corpus: tuple[str, ...] = (),
    **tokens: Any,
) -> Any:
    """A fast tokenizer: `kind` is "bytelevel" (GPT-2/RoBERTa/Qwen BPE), "metaspace"
    (SentencePiece-style BPE, Llama/Mistral/Gemma) or "unigram" (XLM-RoBERTa's model, with
    given pieces). `template`
    is (single, pair) for a TemplateProcessing post-processor that adds special tokens."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE, Unigram
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    trainer: Any
    if kind == "bytelevel":
        tok = Tokenizer(BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif kind == "metaspace":
        tok = Tokenizer(BPE(unk_token=tokens.get("unk_token")))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    elif kind == "unigram":
        # SentencePiece-style: whole words (the trainer collapses on so small a corpus, so
        # the pieces are given) and single characters for everything else.
        pieces = [(t, 0.0) for t in specials] + [("▁", -8.0)]
        pieces += [(f"▁{w}", -5.0) for w in sorted(set(WORDS))[: vocab_size // 2]]
        pieces += [(c, -10.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
        pieces = list(dict(pieces).items())
        unk = tokens.get("unk_token")
        tok = Tokenizer(Unigram(pieces, unk_id=specials.index(unk) if unk else None))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = None
    else:
        raise ValueError(f"unknown tokenizer kind {kind}")
    if trainer is not None:
        tok.train_from_iterator([*sentences(300, seed=1), *extra_corpus], trainer)
    if template is not None:
        single, pair = template
        used = {t for t in (single + " " + pair).split() if t in specials}
        tok.post_processor = processors.TemplateProcessing(
            single=single,
            pair=pair,
            special_tokens=[(t, tok.token_to_id(t)) for t in specials if t in used],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=model_max_length, **tokens
    )


_ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as in RoBERTa
_ROBERTA_TEMPLATE = ("<s> $A </s>", "<s> $A </s> </s> $B:1 </s>:1")
_ROBERTA_TOKENS = {
    "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
    "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>",
}  # fmt: skip


def _tokenizer_for(arch: str) -> Any:
    if arch in ("bert", "electra", "deberta-v2"):
        return _wordpiece_tokenizer()
    if arch in ("distilbert", "modernbert"):
        # Their forward takes no token_type_ids, and their tokenizers return none.
        tok = _wordpiece_tokenizer()
        tok.model_input_names = ["input_ids", "attention_mask"]
        return tok
    if arch == "roberta":
        return _trained_tokenizer("bytelevel", _ROBERTA_SPECIALS, template=_ROBERTA_TEMPLATE,
                                  **_ROBERTA_TOKENS)  # fmt: skip
    if arch == "xlm-roberta":
        return _trained_tokenizer("unigram", _ROBERTA_SPECIALS, template=_ROBERTA_TEMPLATE,
                                  **_ROBERTA_TOKENS)  # fmt: skip
    if arch == "llama":
        return _bpe_tokenizer()
    if arch == "gpt2":
        # As GPT-2: one special token, which is bos, eos and unk; no pad token.
        return _trained_tokenizer("bytelevel", ["<|endoftext|>"], bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", unk_token="<|endoftext|>")  # fmt: skip
    if arch == "jamba":
        # As Jamba's: <|pad|>=0 (its config's pad id), <|startoftext|>=1 added in front, eos 2.
        return _trained_tokenizer(
            "metaspace", ["<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|unk|>"],
            template=("<|startoftext|> $A", "<|startoftext|> $A <|startoftext|> $B"),
            pad_token="<|pad|>", bos_token="<|startoftext|>", eos_token="<|endoftext|>",
            unk_token="<|unk|>",
        )  # fmt: skip
    if arch in ("qwen2", "qwen3"):
        # As Qwen: no BOS, pad <|endoftext|>, eos <|im_end|>.
        return _trained_tokenizer(
            "bytelevel", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            eos_token="<|im_end|>", pad_token="<|endoftext|>",
        )  # fmt: skip
    if arch == "mistral":
        # SentencePiece-style with a BOS, no pad token, and left padding in its config: the
        # server pads on the right whatever the tokenizer says, and must still be exact.
        return _trained_tokenizer(
            "metaspace", ["<unk>", "<s>", "</s>"], template=("<s> $A", "<s> $A <s> $B"),
            bos_token="<s>", eos_token="</s>", unk_token="<unk>", padding_side="left",
        )  # fmt: skip
    if arch == "gemma2":
        # As Gemma: <pad>=0, <eos>=1, <bos>=2 (added in front), <unk>=3.
        return _trained_tokenizer(
            "metaspace", ["<pad>", "<eos>", "<bos>", "<unk>"],
            template=("<bos> $A", "<bos> $A <bos> $B"),
            pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>",
        )  # fmt: skip
    raise ValueError(f"unknown arch {arch}")


# Every architecture build_model knows, encoders first. Those the installed transformers lacks
# are in missing_archs() (with the reason), never silently dropped.
ARCHS = (
    "bert", "distilbert", "roberta", "xlm-roberta", "deberta-v2", "electra", "modernbert",
    "qwen2", "qwen3", "llama", "mistral", "gemma2", "gpt2", "jamba",
)  # fmt: skip
DECODERS = ("qwen2", "qwen3", "llama", "mistral", "gemma2", "gpt2", "jamba")
_CONFIG_CLASSES = {
    "bert": "BertConfig", "distilbert": "DistilBertConfig", "roberta": "RobertaConfig",
    "xlm-roberta": "XLMRobertaConfig", "deberta-v2": "DebertaV2Config",
    "electra": "ElectraConfig", "modernbert": "ModernBertConfig", "qwen2": "Qwen2Config",
    "qwen3": "Qwen3Config", "llama": "LlamaConfig", "mistral": "MistralConfig",
    "gemma2": "Gemma2Config", "gpt2": "GPT2Config", "jamba": "JambaConfig",
    "gemma": "GemmaConfig",
}  # fmt: skip


def missing_archs() -> dict[str, str]:
    """arch → why it cannot be built with the installed transformers."""
    import transformers

    return {
        arch: f"transformers {transformers.__version__} has no {name}"
        for arch, name in _CONFIG_CLASSES.items()
        if not hasattr(transformers, name)
    }


def _config(arch: str, tokenizer: Any, max_positions: int, common: dict[str, Any]) -> Any:
    import transformers

    cls = getattr(transformers, _CONFIG_CLASSES[arch])
    vocab = len(tokenizer)
    # Encoders: 2 layers, hidden 32, 2 heads.
    enc = {"vocab_size": vocab, "hidden_size": 32, "num_hidden_layers": 2,
           "num_attention_heads": 2, "intermediate_size": 64}  # fmt: skip
    # Decoders: the same with grouped-query attention (2 query heads, 1 key/value head).
    dec = {**enc, "num_key_value_heads": 1, "max_position_embeddings": max_positions,
           "eos_token_id": tokenizer.eos_token_id,
           # The tiny llama tokenizer has no BOS; its config has always named eos there.
           "bos_token_id": tokenizer.bos_token_id or tokenizer.eos_token_id}  # fmt: skip
    if arch in ("bert", "electra"):
        extra = {"embedding_size": 32} if arch == "electra" else {}
        return cls(**enc, max_position_embeddings=max_positions,
                   pad_token_id=tokenizer.pad_token_id, **extra, **common)  # fmt: skip
    if arch == "distilbert":
        return cls(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                   max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id,
                   **common)  # fmt: skip
    if arch in ("roberta", "xlm-roberta"):
        # Position ids start after the padding index: max_len + 2 embeddings, pad id 1.
        return cls(**enc, max_position_embeddings=max_positions + 2, type_vocab_size=1,
                   pad_token_id=1, bos_token_id=0, eos_token_id=2, **common)  # fmt: skip
    if arch == "deberta-v2":
        # As DeBERTa-v3: relative attention with log buckets, no absolute positions.
        return cls(**enc, max_position_embeddings=max_positions, relative_attention=True,
                   position_buckets=16, max_relative_positions=-1, position_biased_input=False,
                   pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True,
                   pooler_hidden_size=32, type_vocab_size=0,
                   pad_token_id=tokenizer.pad_token_id, **common)  # fmt: skip
    if arch == "modernbert":
        # Alternating global / local (sliding window 16) layers, mean pooling: both must
        # ignore the padding.
        return cls(**enc, max_position_embeddings=max_positions, local_attention=16,
                   layer_types=["full_attention", "sliding_attention"],
                   classifier_pooling="mean", pad_token_id=tokenizer.pad_token_id,
                   cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                   bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                   **common)  # fmt: skip
    if arch == "llama":
        return cls(**dec, pad_token_id=None, **common)
    if arch == "qwen2":
        return cls(**dec, pad_token_id=tokenizer.pad_token_id, **common)
    if arch == "qwen3":
        # No pad token in the config: the server pads with eos.
        return cls(**dec, head_dim=16, pad_token_id=None, **common)
    if arch == "mistral":
        return cls(**dec, sliding_window=None, pad_token_id=None, **common)
    if arch == "gemma2":
        # Sliding window 16 on every other layer, shorter than most test texts.
        return cls(**dec, head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
                   pad_token_id=tokenizer.pad_token_id, **common)  # fmt: skip
    if arch == "jamba":
        # Attention on layer 1, Mamba on layers 0 and 2, a 2-expert MoE on layer 1. The CUDA
        # Mamba kernels are asked for, as real checkpoints do; on CPU the slow path runs.
        return cls(**{**dec, "num_hidden_layers": 3}, attn_layer_period=2, attn_layer_offset=1,
                   expert_layer_period=2, expert_layer_offset=1, num_experts=2,
                   num_experts_per_tok=1, mamba_d_state=8, mamba_d_conv=4, mamba_expand=2,
                   mamba_dt_rank=8, use_mamba_kernels=True,
                   pad_token_id=tokenizer.pad_token_id, **common)  # fmt: skip
    if arch == "gemma":
        return cls(**dec, head_dim=16, pad_token_id=tokenizer.pad_token_id, **common)
    if arch == "gpt2":
        return cls(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_inner=64,
                   n_positions=max_positions, bos_token_id=tokenizer.bos_token_id,
                   eos_token_id=tokenizer.eos_token_id, pad_token_id=None, **common)  # fmt: skip
    raise ValueError(f"unknown arch {arch}")


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
    initializer_range: float = 0.5,
) -> Path:
    """Save a tiny seeded `arch` (one of ARCHS) sequence classifier and its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch}")
    if arch in missing_archs():
        raise ValueError(missing_archs()[arch])
    tokenizer = _tokenizer_for(arch)
    id2label = {i: name for i, name in enumerate(labels)} if labels else None
    # A wide init (transformers' default is 0.02) so outputs differ clearly between inputs:
    # at 0.02 every text gets the same probabilities to 1e-5, and exactness checks prove nothing.
    common: dict[str, Any] = {
        "num_labels": num_labels,
        "problem_type": problem_type,
        "initializer_range": initializer_range,
    }
    if id2label:
        common["id2label"] = id2label
        common["label2id"] = {v: k for k, v in id2label.items()}
    max_positions = max_positions or tokenizer.model_max_length
    config = _config(arch, tokenizer, max_positions, common)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(out)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(out)
    return out


def build_causal_lm(out: Path, arch: str = "llama", *, seed: int = 0) -> Path:
    """Save a tiny seeded `arch` *ForCausalLM (a decoder of DECODERS) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    if arch not in DECODERS:
        raise ValueError(f"{arch} is not a decoder")
    if arch == "llama":
        # As the llama classifier's, but larger and with "no" and "yes" as single tokens, the
        # usual labels of `--convert classify`.
        tokenizer = _trained_tokenizer(
            "bytelevel", ["<|endoftext|>"], vocab_size=512, model_max_length=512,
            extra_corpus=("no", "yes") * 50, eos_token="<|endoftext|>",
        )  # fmt: skip
    else:
        tokenizer = _tokenizer_for(arch)
    config = _config(arch, tokenizer, tokenizer.model_max_length, {"initializer_range": 0.5})
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# -- causal LMs served as rerankers (vLLM's classifier_from_token conversions) ---------------

RERANKER_LMS = ("qwen3", "qwen2", "gemma")


def build_reranker_lm(
    out: Path, arch: str, label_tokens: tuple[str, ...], *, seed: int = 0
) -> Path:
    """A tiny seeded *ForCausalLM (qwen3, qwen2 or gemma) whose vocabulary holds each label
    token as an entry of its own (what vLLM looks the tokens up as), and whose tokenizer
    knows the prompt templates' special tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    # Glued to a letter, so the trainer learns the bare token, not only "▁Yes"/"Ġyes".
    glued = tuple(f"{c}{t}" for t in label_tokens for c in "abcdefghij") * 20
    if arch in ("qwen3", "qwen2"):
        tokenizer = _trained_tokenizer(
            "bytelevel", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], vocab_size=600,
            model_max_length=512, extra_corpus=(*label_tokens * 50, *glued),
            eos_token="<|im_end|>", pad_token="<|endoftext|>",
        )  # fmt: skip
    elif arch == "gemma":
        tokenizer = _trained_tokenizer(
            "metaspace", ["<pad>", "<eos>", "<bos>", "<unk>"], vocab_size=600,
            template=("<bos> $A", "<bos> $A <bos> $B"), model_max_length=512,
            extra_corpus=glued, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
            unk_token="<unk>",
        )  # fmt: skip
    else:
        raise ValueError(f"{arch} is not a reranker LM")
    vocab = tokenizer.get_vocab()
    assert all(t in vocab for t in label_tokens), [t for t in label_tokens if t not in vocab]
    config = _config(arch, tokenizer, 512, {"initializer_range": 0.5})
    if arch == "qwen2":
        config.tie_word_embeddings = True  # as the small Qwen2s: the head is the embedding
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# -- a model whose code ships in its directory (--trust-remote-code) -------------------------

_REMOTE_CONFIG = """
from transformers import PretrainedConfig


class NewConfig(PretrainedConfig):
    model_type = "new"

    def __init__(self, vocab_size=100, hidden_size=32, max_position_embeddings=128, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)
"""

_REMOTE_MODEL = """
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_new import NewConfig


class NewPreTrainedModel(PreTrainedModel):
    config_class = NewConfig
    base_model_prefix = "new"


class NewForSequenceClassification(NewPreTrainedModel):
    # Mean of tanh(embedding + position) over the real tokens, then a linear head: what a
    # padded batch gets wrong unless the mask is honoured.
    def __init__(self, config):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = torch.tanh(self.embeddings(input_ids) + self.positions(positions))
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return SequenceClassifierOutput(logits=self.classifier(pooled))
"""


def build_remote_code_model(out: Path, *, num_labels: int = 1, seed: int = 0) -> Path:
    """A tiny `NewForSequenceClassification` (gte-multilingual-reranker's class name) whose
    code lives in the directory, named by `auto_map` in config.json."""
    import json

    import torch

    tokenizer = _wordpiece_tokenizer()
    out.mkdir(parents=True, exist_ok=True)
    (out / "configuration_new.py").write_text(_REMOTE_CONFIG)
    (out / "modeling_new.py").write_text(_REMOTE_MODEL)
    config = {
        "architectures": ["NewForSequenceClassification"],
        "model_type": "new",
        "auto_map": {
            "AutoConfig": "configuration_new.NewConfig",
            "AutoModelForSequenceClassification": "modeling_new.NewForSequenceClassification",
        },
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "max_position_embeddings": 128,
        "num_labels": num_labels,
        "pad_token_id": tokenizer.pad_token_id,
    }
    (out / "config.json").write_text(json.dumps(config))
    from transformers import AutoConfig, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    loaded = AutoConfig.from_pretrained(out, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_config(loaded, trust_remote_code=True)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_cross_encoder(out: Path, seed: int = 3) -> Path:
    """A one-label BERT whose tokenizer returns segment ids, as every real BERT tokenizer does,
    so `tokenizer(a, b)` feeds the model the token_type_ids a pair-aware server sends."""
    from transformers import AutoTokenizer

    build_model(out, "bert", num_labels=1, seed=seed)
    names = ["input_ids", "token_type_ids", "attention_mask"]
    AutoTokenizer.from_pretrained(out, model_input_names=names).save_pretrained(out)
    return out
