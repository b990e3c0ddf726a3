"""engine/tokenizer.py against the Hugging Face tokenizer call it replaces.

The engine encodes with the Rust tokenizer directly, inline for small requests and on its
pool for large ones, text by text (CPU) or as one batch (`parallel`, beside a GPU); every
path must give exactly what `tokenizer(texts, …)` gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.tokenizer import INLINE_CHARS, Tokenizer
from tests.builders import sentences

SMALL = sentences(3, seed=5)
LARGE = sentences(200, seed=6, max_words=60)


@pytest.fixture(params=["bert", "llama"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    path: Path = request.getfixturevalue(f"{request.param}_dir")
    return path


def _reference(model: Path, texts: list[str], second: list[str] | None, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    side = kwargs.pop("side", "right")
    tok = AutoTokenizer.from_pretrained(model, truncation_side=side)
    return tok(texts, second, return_attention_mask=False, **kwargs)


@pytest.mark.parametrize("texts", [SMALL, LARGE], ids=["inline", "pool"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("max_length", [None, 7])
@pytest.mark.parametrize("parallel", [False, True], ids=["one-by-one", "batch"])
async def test_ids_equal_the_transformers_call(
    model_dir: Path, texts: list[str], side: Any, max_length: int | None, parallel: bool
) -> None:
    assert (sum(map(len, texts)) <= INLINE_CHARS) == (texts is SMALL)
    tokenizer = Tokenizer(str(model_dir), workers=1)
    tokenizer.parallel = parallel
    try:
        got = await tokenizer.encode(
            texts, add_special_tokens=True, max_length=max_length, side=side
        )
        want = _reference(
            model_dir, texts, None, side=side, truncation=max_length is not None,
            max_length=max_length,
        )  # fmt: skip
        assert got.ids == want["input_ids"]
        assert got.type_ids is None
        # A different limit right after on the same thread: truncation state is reset.
        plain = await tokenizer.encode(texts, add_special_tokens=False, max_length=None, side=None)
        assert (
            plain.ids == _reference(model_dir, texts, None, add_special_tokens=False)["input_ids"]
        )
    finally:
        tokenizer.close()


@pytest.mark.parametrize("texts", [SMALL, LARGE], ids=["inline", "pool"])
@pytest.mark.parametrize("parallel", [False, True], ids=["one-by-one", "batch"])
async def test_pairs_carry_segment_ids_like_transformers(
    bert_dir: Path, texts: list[str], parallel: bool
) -> None:
    second = list(reversed(texts))
    tokenizer = Tokenizer(str(bert_dir), workers=1)
    tokenizer.parallel = parallel
    try:
        got = await tokenizer.encode(
            texts, second, add_special_tokens=True, max_length=20, side=None
        )
    finally:
        tokenizer.close()
    want = _reference(
        bert_dir, texts, second, truncation=True, max_length=20, return_token_type_ids=True
    )
    assert got.ids == want["input_ids"]
    from transformers import AutoTokenizer

    # Segment ids only where the tokenizer would hand them to the model itself.
    if "token_type_ids" in AutoTokenizer.from_pretrained(bert_dir).model_input_names:
        assert got.type_ids == want["token_type_ids"]
    else:
        assert got.type_ids is None


@pytest.mark.parametrize("ids_of", ["small", "large"])
async def test_token_strings_detokenize_and_config_equal_transformers(
    model_dir: Path, ids_of: str
) -> None:
    """vLLM's /tokenize token_strs, /detokenize and /tokenizer_info read these; large id
    lists are decoded on the pool."""
    from transformers import AutoTokenizer

    from engine.errors import InvalidInput

    ref = AutoTokenizer.from_pretrained(model_dir)
    text = " ".join(SMALL if ids_of == "small" else LARGE)
    ids = ref(text)["input_ids"]
    assert (len(ids) > INLINE_CHARS // 4) == (ids_of == "large")
    tokenizer = Tokenizer(str(model_dir), workers=1)
    try:
        assert tokenizer.token_strings(ids) == ref.convert_ids_to_tokens(ids)
        assert await tokenizer.detokenize(ids) == ref.decode(ids)
        with pytest.raises(InvalidInput, match=r"tokens\[1\]") as raised:
            await tokenizer.detokenize([ids[0], len(ref)])
        assert raised.value.param == "tokens"
        config = tokenizer.config()
        assert config["tokenizer_class"] == type(ref).__name__
        assert "vocab_file" not in config
    finally:
        tokenizer.close()
