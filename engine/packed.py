"""Packed (unpadded) forwards for BERT-family encoders: no dense layer computes a pad token.

A padded forward runs every Linear, activation and layer norm on len(batch) × longest
tokens, which is three times the real tokens for a batch of 32 texts in arrival order, and
still 1.14 × for the ~12 similar-length texts the scheduler groups at saturation (bench/).
Only attention needs rows; everything else is per token. So this forward concatenates the
tokens of every row into one [tokens, hidden] tensor for the dense parts, and hands
attention rows of similar length in a few groups, each padded to its own longest row (or not
at all when their lengths are equal) for one scaled_dot_product_attention call.

It calls the model's own modules (quantized Linear layers included) in the order the
transformers forward does, so results match it to float rounding (tests/engine/test_packed.py
checks to 1e-5 against the padded forward). `PackedEncoder.of(model)` returns None for
anything it does not recognise, and the runner then uses the model's own forward.

Supported: BERT (MiniLM, cross-encoders), RoBERTa / XLM-RoBERTa, ELECTRA, DistilBERT, with
absolute position embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# Attention groups: rows stay in one group while the group's padded attention (rows ×
# longest²) is within (1 + ATTENTION_SLACK) × the rows' own (Σ length²). Each group costs a
# few small ops per layer, so near lengths share one.
ATTENTION_SLACK = 0.3

# model_type → (attribute of the base model, how positions count).
_FAMILIES = {
    "bert": ("bert", "absolute"),
    "electra": ("electra", "absolute"),
    "roberta": ("roberta", "after_padding"),
    "xlm-roberta": ("roberta", "after_padding"),
    "distilbert": ("distilbert", "absolute"),
}


@dataclass(frozen=True)
class _Block:
    """One transformer layer's modules, whatever the family calls them."""

    query: Any
    key: Any
    value: Any
    heads: int
    head_dim: int
    scale: float
    attn_out: Any
    attn_norm: Any
    ffn_in: Any
    act: Callable[[Any], Any]
    ffn_out: Any
    ffn_norm: Any


def attention_groups(lengths: Sequence[int], slack: float = ATTENTION_SLACK) -> list[int]:
    """Split rows sorted by length, longest first, into groups; returns each group's end.

    A group starts at its longest row and takes the next (shorter) rows while its padded
    attention cost, rows × longest², stays within (1 + slack) × the sum of the rows' own
    length².
    """
    ends: list[int] = []
    start = 0
    while start < len(lengths):
        longest = lengths[start]
        own = longest * longest
        end = start + 1
        while end < len(lengths):
            nxt = lengths[end] * lengths[end]
            if (end - start + 1) * longest * longest > (1 + slack) * (own + nxt):
                break
            own += nxt
            end += 1
        ends.append(end)
        start = end
    return ends


class PackedEncoder:
    """The unpadded forward of one loaded encoder classifier (see the module docstring)."""

    def __init__(
        self,
        *,
        words: Any,
        positions: Any,
        token_types: Any | None,
        norm: Any,
        project: Any | None,
        blocks: list[_Block],
        head: Callable[[Any], Any],
        position_mode: str,
        padding_idx: int,
    ) -> None:
        self._words = words
        self._positions = positions
        self._token_types = token_types
        self._norm = norm
        self._project = project
        self._blocks = blocks
        self._head = head
        self._position_mode = position_mode
        self._padding_idx = padding_idx

    @classmethod
    def of(cls, model: Any) -> PackedEncoder | None:
        """The packed forward of `model`, or None when it is not a family this knows."""
        config = model.config
        family = _FAMILIES.get(str(config.model_type))
        if family is None or model.training:
            return None
        if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
            return None
        if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
            return None
        base = getattr(model, family[0], None)
        if base is None:
            return None
        try:
            if config.model_type == "distilbert":
                return cls._distilbert(model, base)
            return cls._bert_like(model, base, family[1])
        except AttributeError:
            return None  # a variant whose modules are laid out otherwise

    @classmethod
    def _bert_like(cls, model: Any, base: Any, position_mode: str) -> PackedEncoder | None:
        emb = base.embeddings
        blocks = []
        for layer in base.encoder.layer:
            attn = layer.attention.self
            blocks.append(
                _Block(
                    query=attn.query,
                    key=attn.key,
                    value=attn.value,
                    heads=attn.num_attention_heads,
                    head_dim=attn.attention_head_size,
                    scale=attn.attention_head_size**-0.5,
                    attn_out=layer.attention.output.dense,
                    attn_norm=layer.attention.output.LayerNorm,
                    ffn_in=layer.intermediate.dense,
                    act=layer.intermediate.intermediate_act_fn,
                    ffn_out=layer.output.dense,
                    ffn_norm=layer.output.LayerNorm,
                )
            )
        head: Callable[[Any], Any]
        if model.config.model_type == "bert":
            pooler = base.pooler
            if pooler is None:
                return None
            classifier = model.classifier

            def head(first: Any) -> Any:
                return classifier(pooler(first))

        else:
            # RoBERTa's and ELECTRA's heads read features[:, 0] themselves.
            head = model.classifier
        return cls(
            words=emb.word_embeddings,
            positions=emb.position_embeddings,
            token_types=emb.token_type_embeddings,
            norm=emb.LayerNorm,
            project=getattr(base, "embeddings_project", None),
            blocks=blocks,
            head=head,
            position_mode=position_mode,
            padding_idx=int(getattr(emb, "padding_idx", None) or 0),
        )

    @classmethod
    def _distilbert(cls, model: Any, base: Any) -> PackedEncoder:
        import torch

        emb = base.embeddings
        blocks = []
        for layer in base.transformer.layer:
            attn = layer.attention
            blocks.append(
                _Block(
                    query=attn.q_lin,
                    key=attn.k_lin,
                    value=attn.v_lin,
                    heads=attn.n_heads,
                    head_dim=attn.attention_head_size,
                    scale=attn.attention_head_size**-0.5,
                    attn_out=attn.out_lin,
                    attn_norm=layer.sa_layer_norm,
                    ffn_in=layer.ffn.lin1,
                    act=layer.ffn.activation,
                    ffn_out=layer.ffn.lin2,
                    ffn_norm=layer.output_layer_norm,
                )
            )
        pre, classifier = model.pre_classifier, model.classifier

        def head(first: Any) -> Any:
            return classifier(torch.relu(pre(first[:, 0])))

        return cls(
            words=emb.word_embeddings,
            positions=emb.position_embeddings,
            token_types=None,
            norm=emb.LayerNorm,
            project=None,
            blocks=blocks,
            head=head,
            position_mode="absolute",
            padding_idx=0,
        )

    def __call__(
        self, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None
    ) -> Any:
        """Logits for `ids` (rows in their given order); call under torch.inference_mode()."""
        import torch
        import torch.nn.functional as F

        # Longest rows first, so that each attention group is a contiguous run of rows and
        # of tokens; `order` maps back at the end.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        lengths = [len(ids[i]) for i in order]
        flat = [t for i in order for t in ids[i]]
        input_ids = torch.tensor(flat)
        hidden = self._words(input_ids)
        if self._token_types is not None:
            if type_ids is None:
                types = torch.zeros_like(input_ids)
            else:
                types = torch.tensor([t for i in order for t in type_ids[i]])
            hidden = hidden + self._token_types(types)
        hidden = hidden + self._positions(torch.tensor(self._position_ids(ids, order)))
        hidden = self._norm(hidden)
        if self._project is not None:
            hidden = self._project(hidden)

        groups = self._groups(torch, lengths)
        for block in self._blocks:
            q, k, v = block.query(hidden), block.key(hidden), block.value(hidden)
            outs = []
            for rows, width, start, end, index, mask in groups:
                shape = (rows, width, block.heads, block.head_dim)
                qg, kg, vg = (
                    _rows(x[start:end], index, rows * width).view(shape).transpose(1, 2)
                    for x in (q, k, v)
                )
                out = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=mask, scale=block.scale)
                out = out.transpose(1, 2).reshape(rows * width, block.heads * block.head_dim)
                outs.append(out if index is None else out.index_select(0, index))
            attended = outs[0] if len(outs) == 1 else torch.cat(outs)
            hidden = block.attn_norm(block.attn_out(attended) + hidden)
            hidden = block.ffn_norm(block.ffn_out(block.act(block.ffn_in(hidden))) + hidden)

        starts = [0]
        for length in lengths[:-1]:
            starts.append(starts[-1] + length)
        first = hidden.index_select(0, torch.tensor(starts)).unsqueeze(1)
        logits = self._head(first)
        back = torch.empty(len(order), dtype=torch.long)
        back[torch.tensor(order)] = torch.arange(len(order))
        return logits.index_select(0, back)

    def _position_ids(self, ids: Sequence[Sequence[int]], order: list[int]) -> list[int]:
        if self._position_mode == "absolute":
            return [p for i in order for p in range(len(ids[i]))]
        # RoBERTa: positions count real (non-pad) tokens after padding_idx; a pad id inside
        # a prompt keeps position padding_idx and does not advance the count.
        pad = self._padding_idx
        out: list[int] = []
        for i in order:
            count = 0
            for t in ids[i]:
                if t == pad:
                    out.append(pad)
                else:
                    count += 1
                    out.append(pad + count)
        return out

    @staticmethod
    def _groups(torch: Any, lengths: list[int]) -> list[tuple[int, int, int, int, Any, Any]]:
        """Per attention group: rows, padded width, token range, the real tokens' places
        in the padded [rows × width] layout (None: no padding) and the key mask."""
        groups = []
        start_row = start_token = 0
        for end_row in attention_groups(lengths):
            group = lengths[start_row:end_row]
            rows, width = len(group), group[0]
            tokens = sum(group)
            index = mask = None
            if any(n != width for n in group):
                keep = torch.arange(width)[None, :] < torch.tensor(group)[:, None]
                index = keep.reshape(-1).nonzero().squeeze(1)
                mask = keep[:, None, None, :]
            groups.append((rows, width, start_token, start_token + tokens, index, mask))
            start_row, start_token = end_row, start_token + tokens
        return groups


def _rows(x: Any, index: Any, size: int) -> Any:
    """`x` ([tokens, hidden]) laid out as padded rows ([size, hidden]); pads are zeros, so a
    masked key or value can never carry a NaN into the softmax or the weighted sum."""
    if index is None:
        return x
    out = x.new_zeros((size, x.shape[1]))
    out.index_copy_(0, index, x)
    return out
