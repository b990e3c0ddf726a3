"""Packed (unpadded) forwards for BERT-family encoders: no dense layer computes a pad token.

A padded forward runs every Linear, activation and layer norm on len(batch) × longest
tokens, several times the real tokens for texts of mixed lengths in arrival order. Only
attention needs rows; everything else is per token. So this forward concatenates the
tokens of every row into one [tokens, hidden] tensor for the dense parts, and hands
attention rows of similar length in a few groups, each padded to its own longest row (or not
at all when their lengths are equal) for one scaled_dot_product_attention call.

The head reads one token per row (the first), so the last layer computes only those: keys and
values from every token, everything else from one per row (`_Layer.pooled`).

It calls the model's own modules in the order the transformers forward does, so results
match it to float rounding (tests/engine/test_packed.py checks 1e-5 against the padded
forward). `PackedEncoder.of(model)` returns None for anything it does not recognise, and the
runner then uses the model's own forward.

The forward is TorchScript-compiled when it can be: a scripted module runs without the GIL
from its first op to its last, where eager Python takes the GIL back between every two ops,
and two workers and the event loop queue for it. If scripting fails
(an activation TorchScript cannot compile), the same module runs eagerly.

Supported: BERT (MiniLM, cross-encoders), RoBERTa / XLM-RoBERTa, ELECTRA, DistilBERT, with
absolute position embeddings. This module imports torch: the runner imports it lazily.
(No `from __future__ import annotations`: TorchScript reads the annotations themselves.)
"""

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger("classifyd.packed")

# Attention groups: rows stay in one group while the group's padded attention (rows ×
# longest²) is within (1 + ATTENTION_SLACK) × the rows' own (Σ length²). Each group costs a
# few small ops per layer, so fewer, looser groups trade padding for overhead; 0.3 ran
# fastest on both short and long-tail batches.
ATTENTION_SLACK = 0.3

# model_type → the attribute holding the base model.
_FAMILIES = {
    "bert": "bert",
    "electra": "electra",
    "roberta": "roberta",
    "xlm-roberta": "roberta",
    "distilbert": "distilbert",
}
# Families whose position ids count real tokens after the padding index.
_AFTER_PADDING = {"roberta", "xlm-roberta"}


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


def _padded(x: Tensor, index: Tensor | None, size: int) -> Tensor:
    """`x` ([tokens, hidden]) laid out as padded rows ([size, hidden]). Pads are zeros, so
    a masked key or value can never carry a NaN into the softmax or the weighted sum."""
    if index is None:
        return x
    out = x.new_zeros((size, x.shape[1]))
    out.index_copy_(0, index, x)
    return out


class _Layer(nn.Module):
    """One transformer layer over packed tokens, from the model's own modules."""

    heads: int
    head_dim: int
    scale: float

    def __init__(self, modules: dict[str, nn.Module], heads: int, head_dim: int) -> None:
        super().__init__()
        self.query = modules["query"]
        self.key = modules["key"]
        self.value = modules["value"]
        self.attn_out = modules["attn_out"]
        self.attn_norm = modules["attn_norm"]
        self.ffn_in = modules["ffn_in"]
        self.act = modules["act"]
        self.ffn_out = modules["ffn_out"]
        self.ffn_norm = modules["ffn_norm"]
        self.heads = heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5

    def forward(
        self,
        hidden: Tensor,
        groups: list[list[int]],
        indexes: list[Tensor | None],
        masks: list[Tensor | None],
    ) -> Tensor:
        q, k, v = self.query(hidden), self.key(hidden), self.value(hidden)
        outs: list[Tensor] = []
        for g in range(len(groups)):
            rows, width, start, end = groups[g][0], groups[g][1], groups[g][2], groups[g][3]
            index = indexes[g]
            qg = self._heads(q[start:end], index, rows, width)
            kg = self._heads(k[start:end], index, rows, width)
            vg = self._heads(v[start:end], index, rows, width)
            out = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=masks[g], scale=self.scale)
            out = out.transpose(1, 2).reshape(rows * width, self.heads * self.head_dim)
            if index is not None:
                out = out.index_select(0, index)
            outs.append(out)
        attended = outs[0] if len(outs) == 1 else torch.cat(outs)
        return self._dense(attended, hidden)

    def pooled(
        self,
        hidden: Tensor,
        firsts: Tensor,
        groups: list[list[int]],
        indexes: list[Tensor | None],
        masks: list[Tensor | None],
    ) -> Tensor:
        """The layer's output for each row's first token only ([rows, hidden]): all the
        head reads of the last layer. Keys and values still come from every token, but the
        query, the attention output, both feed-forward Linears and the norms run on one
        token per row, which spares most of the last layer's dense work."""
        k, v = self.key(hidden), self.value(hidden)
        first = hidden.index_select(0, firsts)
        q = self.query(first)
        outs: list[Tensor] = []
        for g in range(len(groups)):
            rows, width, start, end, row = (
                groups[g][0], groups[g][1], groups[g][2], groups[g][3], groups[g][4],
            )  # fmt: skip
            index = indexes[g]
            qg = q[row : row + rows].view([rows, 1, self.heads, self.head_dim]).transpose(1, 2)
            kg = self._heads(k[start:end], index, rows, width)
            vg = self._heads(v[start:end], index, rows, width)
            out = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=masks[g], scale=self.scale)
            outs.append(out.transpose(1, 2).reshape(rows, self.heads * self.head_dim))
        attended = outs[0] if len(outs) == 1 else torch.cat(outs)
        return self._dense(attended, first)

    def _heads(self, x: Tensor, index: Tensor | None, rows: int, width: int) -> Tensor:
        """A group's packed tokens ([tokens, hidden]) as [rows, heads, width, head_dim]."""
        shape = [rows, width, self.heads, self.head_dim]
        return _padded(x, index, rows * width).view(shape).transpose(1, 2)

    def _dense(self, attended: Tensor, hidden: Tensor) -> Tensor:
        """Attention output, residual and norm, then the feed-forward block."""
        hidden = self.attn_norm(self.attn_out(attended) + hidden)
        return self.ffn_norm(self.ffn_out(self.act(self.ffn_in(hidden))) + hidden)


class _Encoder(nn.Module):
    """Embeddings, layers and the classification head over packed tokens.

    Everything from the flat ids on happens in here, the positions, the attention groups'
    layouts and masks included, so that a scripted encoder takes the GIL once per batch:
    each torch call made from Python releases and retakes it, and retaking it waits for
    whichever thread holds it (the event loop, mid-request) to let go.
    """

    # RoBERTa's padding index (positions count real tokens after it); -1: from 0.
    after_padding: int

    def __init__(
        self,
        embeddings: tuple[nn.Module, nn.Module, nn.Module | None, nn.Module, nn.Module | None],
        layers: list[_Layer],
        head: tuple[nn.Module, nn.Module, nn.Module],
        after_padding: int,
    ) -> None:
        super().__init__()
        # Words, positions, token types, layer norm, projection. None (DistilBERT has no
        # token types; ELECTRA's projection is optional): TorchScript takes a None attribute
        # as a constant and drops its branch.
        self.words, self.positions, self.token_types, self.norm, self.project = embeddings
        # The last layer runs apart: only its first tokens reach the head (_Layer.pooled).
        self.layers = nn.ModuleList(layers[:-1])
        self.last = layers[-1]
        # Every supported head is out(act(dense(first token))): BERT's pooler and
        # classifier, RoBERTa's and ELECTRA's classification head, DistilBERT's
        # pre_classifier, ReLU and classifier.
        self.dense, self.act, self.out = head
        self.after_padding = after_padding

    def forward(
        self,
        ids: Tensor,
        types: Tensor | None,
        lengths: list[int],
        ends: list[int],
        order: list[int],
    ) -> Tensor:
        """ids: every row's tokens, rows longest first (`lengths`); `ends`: where each
        attention group's rows end; `order`: the given row each sorted row is."""
        firsts: list[int] = []
        parts: list[Tensor] = []
        start = 0
        for n in lengths:
            firsts.append(start)
            if self.after_padding < 0:
                parts.append(torch.arange(n))
            else:
                # As transformers derives them: a pad id inside a prompt keeps position
                # padding_idx and does not advance the count.
                real = (ids[start : start + n] != self.after_padding).long()
                parts.append(torch.cumsum(real, 0) * real + self.after_padding)
            start += n
        positions = parts[0] if len(parts) == 1 else torch.cat(parts)

        groups: list[list[int]] = []
        indexes: list[Tensor | None] = []
        masks: list[Tensor | None] = []
        row = token = 0
        for end in ends:
            group = lengths[row:end]
            width, tokens = group[0], sum(group)
            index: Tensor | None = None
            mask: Tensor | None = None
            if group[-1] != width:  # rows are sorted: the last is the shortest
                keep = torch.arange(width)[None, :] < torch.tensor(group)[:, None]
                index = keep.reshape(-1).nonzero().squeeze(1)
                mask = keep[:, None, None, :]
            groups.append([end - row, width, token, token + tokens, row])
            indexes.append(index)
            masks.append(mask)
            row, token = end, token + tokens

        # The additions in the order transformers makes them: words + types, + positions.
        hidden = self.words(ids)
        token_types = self.token_types
        if token_types is not None and types is not None:
            hidden = hidden + token_types(types)
        hidden = self.norm(hidden + self.positions(positions))
        project = self.project
        if project is not None:
            hidden = project(hidden)
        for layer in self.layers:
            hidden = layer(hidden, groups, indexes, masks)
        first = self.last.pooled(hidden, torch.tensor(firsts), groups, indexes, masks)
        logits = self.out(self.act(self.dense(first)))
        # order is a permutation: its argsort is the inverse, sorted place of each given row.
        return logits.index_select(0, torch.tensor(order).argsort())


class PackedEncoder:
    """The packed forward of one loaded encoder classifier (see the module docstring)."""

    def __init__(self, encoder: _Encoder, *, script: bool) -> None:
        self._has_types = encoder.token_types is not None
        self.scripted = False
        self._forward: Any = encoder
        if not script:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit is deprecated; it still runs
                self._forward = torch.jit.script(encoder)
            self.scripted = True
        except Exception as exc:  # any scripting failure: the same module, eagerly
            logger.info("packed forward runs eagerly (TorchScript: %s)", str(exc)[:200])

    @classmethod
    def of(cls, model: Any, *, script: bool = True) -> "PackedEncoder | None":
        """The packed forward of `model`, or None when it is not a family this knows.
        script=False: run it eagerly (tests check both ways)."""
        config = model.config
        model_type = str(config.model_type)
        base = getattr(model, _FAMILIES.get(model_type, ""), None)
        if base is None or model.training:
            return None
        if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
            return None
        if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
            return None
        try:
            if model_type == "distilbert":
                encoder = _distilbert(model, base)
            else:
                encoder = _bert_like(model, base, model_type)
        except AttributeError:
            return None  # a variant whose modules are laid out otherwise
        if encoder is None:
            return None
        return cls(encoder, script=script)

    def __call__(
        self, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None
    ) -> Any:
        """Logits for `ids` (rows in their given order); call under torch.inference_mode()."""
        # Longest rows first, so that each attention group is a contiguous run of rows and
        # of tokens. Plain Python until the two torch calls: no GIL handover before them.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        lengths = [len(ids[i]) for i in order]
        flat = torch.tensor([t for i in order for t in ids[i]])
        types = None
        if self._has_types and type_ids is not None:
            types = torch.tensor([t for i in order for t in type_ids[i]])
        elif self._has_types:
            types = torch.zeros_like(flat)
        return self._forward(flat, types, lengths, attention_groups(lengths), order)


def _layer(modules: dict[str, Any], heads: int, head_dim: int) -> _Layer | None:
    if not isinstance(modules["act"], nn.Module):
        return None  # a plain function as hidden_act: not a module to hold or script
    return _Layer(modules, heads, head_dim)


def _bert_like(model: Any, base: Any, model_type: str) -> _Encoder | None:
    emb = base.embeddings
    layers = []
    for layer in base.encoder.layer:
        attn = layer.attention.self
        modules = {
            "query": attn.query,
            "key": attn.key,
            "value": attn.value,
            "attn_out": layer.attention.output.dense,
            "attn_norm": layer.attention.output.LayerNorm,
            "ffn_in": layer.intermediate.dense,
            "act": layer.intermediate.intermediate_act_fn,
            "ffn_out": layer.output.dense,
            "ffn_norm": layer.output.LayerNorm,
        }
        layer_ = _layer(modules, attn.num_attention_heads, attn.attention_head_size)
        if layer_ is None:
            return None
        layers.append(layer_)
    head: tuple[nn.Module, nn.Module, nn.Module]
    if model_type == "bert":
        if base.pooler is None:
            return None
        head = (base.pooler.dense, base.pooler.activation, model.classifier)
    elif model_type == "electra":
        head = (model.classifier.dense, model.classifier.activation, model.classifier.out_proj)
    else:  # RoBERTa's head applies torch.tanh
        head = (model.classifier.dense, nn.Tanh(), model.classifier.out_proj)
    embeddings = (
        emb.word_embeddings,
        emb.position_embeddings,
        emb.token_type_embeddings,
        emb.LayerNorm,
        getattr(base, "embeddings_project", None),
    )
    after_padding = int(emb.padding_idx) if model_type in _AFTER_PADDING else -1
    return _Encoder(embeddings, layers, head, after_padding) if layers else None


def _distilbert(model: Any, base: Any) -> _Encoder | None:
    emb = base.embeddings
    layers = []
    for layer in base.transformer.layer:
        attn = layer.attention
        modules = {
            "query": attn.q_lin,
            "key": attn.k_lin,
            "value": attn.v_lin,
            "attn_out": attn.out_lin,
            "attn_norm": layer.sa_layer_norm,
            "ffn_in": layer.ffn.lin1,
            "act": layer.ffn.activation,
            "ffn_out": layer.ffn.lin2,
            "ffn_norm": layer.output_layer_norm,
        }
        layer_ = _layer(modules, attn.n_heads, attn.attention_head_size)
        if layer_ is None:
            return None
        layers.append(layer_)
    embeddings = (emb.word_embeddings, emb.position_embeddings, None, emb.LayerNorm, None)
    head = (model.pre_classifier, nn.ReLU(), model.classifier)
    return _Encoder(embeddings, layers, head, -1) if layers else None
