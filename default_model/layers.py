"""The BERT classifier's forward, split where the recipe freezes it.

The build runs the frozen part (embeddings and the lowest encoder layers) once over the
training set and trains the rest from those cached hidden states. These functions compute the
same thing as `BertForSequenceClassification`'s own forward, with the model's own modules, in
two halves; the last layer only computes the first ([CLS]) position, the only one the pooler
reads, which makes it several times cheaper than a whole layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def layer_forward(
    layer: Any, hidden: torch.Tensor, mask: torch.Tensor, *, first_only: bool = False
) -> torch.Tensor:
    """One `BertLayer` over right-padded `hidden` (batch, length, width) with `mask` (batch,
    length; 1 = token). With `first_only` only position 0 is computed: (batch, 1, width)."""
    import torch
    import torch.nn.functional as F

    attention = layer.attention.self
    batch, length, width = hidden.shape
    heads, head_size = attention.num_attention_heads, attention.attention_head_size
    queries_in = hidden[:, :1] if first_only else hidden
    rows = queries_in.shape[1]
    query = attention.query(queries_in).view(batch, rows, heads, head_size).transpose(1, 2)
    key = attention.key(hidden).view(batch, length, heads, head_size).transpose(1, 2)
    value = attention.value(hidden).view(batch, length, heads, head_size).transpose(1, 2)
    keep = mask[:, None, None, :].to(dtype=torch.bool)
    context = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=keep,
        dropout_p=attention.dropout.p if layer.training else 0.0,
        scale=attention.scaling,
    )
    context = context.transpose(1, 2).reshape(batch, rows, width)
    attended = layer.attention.output(context, queries_in)
    result: torch.Tensor = layer.output(layer.intermediate(attended), attended)
    return result


def embed(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """The embedding block's output (token type 0, positions from 0), as BERT computes it."""
    out: torch.Tensor = model.bert.embeddings(input_ids=ids)
    return out


def frozen_forward(model: Any, ids: torch.Tensor, mask: torch.Tensor, frozen: int) -> torch.Tensor:
    """Hidden states after the embeddings and the lowest `frozen` encoder layers."""
    hidden = embed(model, ids)
    for layer in model.bert.encoder.layer[:frozen]:
        hidden = layer_forward(layer, hidden, mask)
    return hidden


def top_forward(model: Any, hidden: torch.Tensor, mask: torch.Tensor, frozen: int) -> torch.Tensor:
    """Logits from the hidden states after `frozen` layers: the remaining layers (the last one
    at the first position only), the pooler, dropout and the classifier."""
    layers = model.bert.encoder.layer
    for layer in layers[frozen:-1]:
        hidden = layer_forward(layer, hidden, mask)
    if frozen < len(layers):
        hidden = layer_forward(layers[-1], hidden, mask, first_only=True)
    pooled = model.bert.pooler(hidden)
    logits: torch.Tensor = model.classifier(model.dropout(pooled))
    return logits
