"""`POST /predict`: text-embeddings-inference's classification route.

TEI reads `inputs` as: a string; a pair `[a, b]` (exactly two strings); or a list whose items
are strings or pairs. Pairs go through the tokenizer as pairs (NLI models, cross-encoders).
"""

from __future__ import annotations

import asyncio
from typing import cast

from starlette.responses import Response

from engine import ClassifyOptions, ClassifyResult, Prompts
from engine.activation import Activation
from engine.errors import InvalidInput, InvalidPrompt
from protocol.codec import decode, predict_decoder
from protocol.tei import PredictInputs, Prediction
from server.classify import check_batch_size, classify_prompts, merged, timing_headers
from server.errors import WireNames, bad_request
from server.http import Call
from server.prompts import truncation
from server.responses import MsgspecResponse
from server.state import AppState

Item = str | tuple[str, str]


def _items(inputs: PredictInputs) -> tuple[bool, list[Item]]:
    """(is a batch, the texts and pairs), with 400s that name an item of the wrong shape."""
    if isinstance(inputs, str):
        items: list[Item] = [inputs]
        batch = False
    elif len(inputs) == 2 and all(isinstance(x, str) for x in inputs):
        items = [(str(inputs[0]), str(inputs[1]))]
        batch = False
    else:
        if not inputs:
            raise bad_request("`inputs` must not be an empty list.", "inputs")
        items = []
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                items.append(item)
            elif len(item) == 2:
                items.append((item[0], item[1]))
            else:
                raise bad_request(
                    f"`inputs[{i}]` must be a text or a pair of two texts.", f"inputs[{i}]"
                )
        batch = True
    return batch, items


def _names(batch: bool) -> WireNames:
    def path(index: int, part: int | None) -> str:
        # The JSON path of the item (or of one text of a pair), whatever shape `inputs` had.
        return "inputs" + (f"[{index}]" if batch else "") + ("" if part is None else f"[{part}]")

    return WireNames("inputs", path)


async def _run_group(
    state: AppState, items: list[Item], group: list[int], options: ClassifyOptions, kind: Activation
) -> tuple[list[list[float]], ClassifyResult]:
    """The items at `group`'s indexes as one engine call; a bad prompt is named by its index
    in the request, not in the group."""
    try:
        return await classify_prompts(
            state, cast("Prompts", [items[i] for i in group]), options, kind
        )
    except InvalidPrompt as exc:
        raise exc.at(group[exc.index]) from None


async def predict(body: bytes, state: AppState, call: Call) -> Response:
    req = decode(predict_decoder, body)
    batch, items = _items(req.inputs)
    check_batch_size(state, len(items), "inputs")
    kind = "none" if req.raw_scores else state.default_activation
    keep = -1 if req.truncate else truncation(None, state.config.auto_truncate)
    options = ClassifyOptions(
        truncate_prompt_tokens=keep,
        truncation_side="left" if req.truncation_direction.lower() == "left" else "right",
    )
    singles = [i for i, item in enumerate(items) if isinstance(item, str)]
    pairs = [i for i, item in enumerate(items) if isinstance(item, tuple)]
    # The engine takes texts or pairs per call; a mixed batch is two calls run together.
    groups = [g for g in (singles, pairs) if g]
    try:
        outcomes = await asyncio.gather(
            *(_run_group(state, items, g, options, kind) for g in groups)
        )
    except InvalidInput as exc:
        raise _names(batch).error(exc) from exc
    labels = state.engine.info.labels
    rows: list[list[Prediction]] = [[] for _ in items]
    for group, (probs, _) in zip(groups, outcomes, strict=True):
        for index, row in zip(group, probs, strict=True):
            ranked = sorted(zip(row, labels, strict=True), key=lambda p: -p[0])
            rows[index] = [Prediction(score=s, label=label) for s, label in ranked]
    headers = timing_headers(call, merged([result for _, result in outcomes]))
    return MsgspecResponse(rows if batch else rows[0], headers=headers)
