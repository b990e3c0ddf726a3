"""Tokenization off the event loop: one fast-tokenizer job per request, on a thread pool.

Requests are encoded by the Rust tokenizer itself (`encode` per text, or `encode_batch`
beside a GPU), set up the way the Hugging Face wrapper sets it up for `tokenizer(texts,
truncation=…, max_length=…)` — the same ids, without the wrapper's Python per call, which
is a visible share of a one-text request. Truncation is state on the Rust object, so each
pool thread owns its own copy.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from engine.errors import InvalidInput, InvalidPrompt, ModelLoadError
from engine.model.loading import first_line
from engine.score_template import pair_messages, resolve_template

Side = Literal["left", "right"]

# Requests up to this many characters are tokenized on the event loop itself (see encode()).
INLINE_CHARS = 2048


@dataclass(frozen=True)
class Encoded:
    ids: list[list[int]]
    # Segment ids, only for text pairs (single texts let the model use its all-zero default).
    type_ids: list[list[int]] | None = None


class Tokenizer:
    def __init__(self, path: str, workers: int, chat_template: str | None = None) -> None:
        from transformers import AutoTokenizer

        try:
            base = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, TypeError) as exc:
            message = f"Cannot load the tokenizer in {path!r}: {first_line(exc)}"
            raise ModelLoadError(message) from exc
        if not getattr(base, "is_fast", False):
            raise ModelLoadError(
                f"The tokenizer in {path!r} has no fast (Rust) version; classifyd needs one "
                "(a tokenizer.json file)."
            )
        self._base: Any = base
        # --chat-template replaces the tokenizer's own for chats, and is the only template
        # pairs are rendered with: many tokenizers inherit a chat template unfit for scoring.
        self.score_template: str | None = None
        if chat_template is not None:
            self.score_template = resolve_template(chat_template)
            base.chat_template = self.score_template
        self.default_side: Side = "left" if base.truncation_side == "left" else "right"
        self.model_max_length: int | None = (
            int(base.model_max_length) if base.model_max_length < 1_000_000 else None
        )
        # Segment ids only where the tokenizer itself would return them (BERT-style).
        self._pairs_have_type_ids = "token_type_ids" in base.model_input_names
        # encode_batch spreads a request over the Rust thread pool (rayon, one thread per
        # core). Serving on CPU every core already runs a forward, which those threads would
        # preempt, so texts are encoded one by one on the pool thread, and the pool
        # (`workers`) spreads requests instead. The engine turns it on for a GPU, whose host
        # cores are otherwise idle.
        self.parallel = False
        self._local = threading.local()
        # The pool's threads start lazily; this lock guards the deep copies they make.
        self._copy_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="classifyd-tokenizer",
            initializer=self._init_thread,
        )

    def _init_thread(self) -> None:
        with self._copy_lock:
            rust = copy.deepcopy(self._base.backend_tokenizer)
        # Padding happens per batch in the runner; a tokenizer.json may ship either setting.
        rust.no_padding()
        rust.no_truncation()
        rust.encode_special_tokens = bool(getattr(self._base, "split_special_tokens", False))
        self._local.rust = rust
        self._local.truncation = None

    async def encode(
        self,
        texts: Sequence[str],
        second: Sequence[str] | None = None,
        *,
        add_special_tokens: bool,
        max_length: int | None,
        side: Side | None,
    ) -> Encoded:
        """Token ids of single texts, or of (texts[i], second[i]) encoded as pairs."""
        size = sum(map(len, texts)) + (sum(map(len, second)) if second is not None else 0)
        if size <= INLINE_CHARS:
            # A few sentences take tens of µs in Rust: less than the hop to a pool thread
            # and back, which also queues behind bigger requests.
            if not hasattr(self._local, "rust"):
                self._init_thread()
            return self._encode(
                list(texts),
                None if second is None else list(second),
                add_special_tokens,
                max_length,
                side,
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool,
            self._encode,
            list(texts),
            None if second is None else list(second),
            add_special_tokens,
            max_length,
            side,
        )

    def _encode(
        self,
        texts: list[str],
        second: list[str] | None,
        add_special_tokens: bool,
        max_length: int | None,
        side: Side | None,
    ) -> Encoded:
        local = self._local
        rust = local.rust
        truncation = None if max_length is None else (max_length, side or self.default_side)
        if truncation != local.truncation:
            if truncation is None:
                rust.no_truncation()
            else:
                # What the wrapper asks for with truncation=True: longest_first, no stride.
                rust.enable_truncation(truncation[0], direction=truncation[1])
            local.truncation = truncation
        if self.parallel:
            batch: list[Any] = texts if second is None else list(zip(texts, second, strict=True))
            encodings = rust.encode_batch(batch, add_special_tokens=add_special_tokens)
        elif second is None:
            encodings = [rust.encode(t, add_special_tokens=add_special_tokens) for t in texts]
        else:
            encodings = [
                rust.encode(a, b, add_special_tokens=add_special_tokens)
                for a, b in zip(texts, second, strict=True)
            ]
        ids = [e.ids for e in encodings]
        # Pairs carry segment ids where `tokenizer(a, b)` would give them to the model.
        if second is not None and self._pairs_have_type_ids:
            return Encoded(ids=ids, type_ids=[e.type_ids for e in encodings])
        return Encoded(ids=ids)

    async def heads(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Each text cut where its `max_tokens`-th token ends (no special tokens counted);
        shorter texts unchanged. Cutting the text, not the ids, keeps pairs encodable as pairs."""
        if sum(map(len, texts)) <= INLINE_CHARS:
            if not hasattr(self._local, "rust"):
                self._init_thread()
            return self._heads(list(texts), max_tokens)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._heads, list(texts), max_tokens)

    def _heads(self, texts: list[str], max_tokens: int) -> list[str]:
        local = self._local
        rust = local.rust
        # Truncation would hide how long a text is; `_encode` restores its own setting.
        if local.truncation is not None:
            rust.no_truncation()
            local.truncation = None
        out = []
        for text in texts:
            offsets = rust.encode(text, add_special_tokens=False).offsets
            if len(offsets) <= max_tokens:
                out.append(text)
            else:
                # Character offsets (the Python binding's); a token may end before an earlier one.
                out.append(text[: max(end for _, end in offsets[:max_tokens])])
        return out

    async def render_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool,
        continue_final_message: bool,
        kwargs: dict[str, Any],
    ) -> str:
        """The conversation as text, through the tokenizer's own chat template."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool,
            self._render_chat,
            messages,
            add_generation_prompt,
            continue_final_message,
            kwargs,
        )

    def _render_chat(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool,
        continue_final_message: bool,
        kwargs: dict[str, Any],
    ) -> str:
        # Rendering to text reads the wrapper and never changes it: one object serves all threads.
        tok = self._base
        if not getattr(tok, "chat_template", None):
            raise InvalidInput(
                "This model's tokenizer has no chat template; send `input` instead of `messages`.",
                param="messages",
            )
        try:
            text = tok.apply_chat_template(
                messages,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message,
                **kwargs,
            )
        except Exception as exc:  # jinja2 and the template itself raise anything
            message = f"The chat template failed on `messages`: {exc}"
            raise InvalidInput(message, param="messages") from exc
        return str(text)

    async def render_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        """Each (query, document) pair as one prompt, rendered with --chat-template."""
        if sum(len(a) + len(b) for a, b in pairs) <= INLINE_CHARS:
            return self._render_pairs(list(pairs))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._render_pairs, list(pairs))

    def _render_pairs(self, pairs: list[tuple[str, str]]) -> list[str]:
        out = []
        for index, (query, document) in enumerate(pairs):
            try:
                text = self._base.apply_chat_template(
                    pair_messages(query, document),
                    chat_template=self.score_template,
                    tokenize=False,
                    query=query,
                    document=document,
                )
            except Exception as exc:  # jinja2 and the template itself raise anything
                reason = f"cannot be rendered by the chat template: {exc}"
                raise InvalidPrompt(index, reason) from exc
            out.append(str(text))
        return out

    async def tokenize(self, text: str, *, add_special_tokens: bool) -> list[int]:
        encoded = await self.encode(
            [text], add_special_tokens=add_special_tokens, max_length=None, side=None
        )
        return encoded.ids[0]

    def token_strings(self, ids: list[int]) -> list[str]:
        """Each id's vocabulary entry (`convert_ids_to_tokens`); ids are already checked."""
        return [str(t) for t in self._base.convert_ids_to_tokens(ids)]

    async def detokenize(self, ids: list[int]) -> str:
        """The text of `ids`, as the wrapper's `decode` gives it (special tokens kept)."""
        self._check_vocab(ids)
        if len(ids) <= INLINE_CHARS // 4:
            return str(self._base.decode(ids))
        loop = asyncio.get_running_loop()
        return str(await loop.run_in_executor(self._pool, self._base.decode, ids))

    def _check_vocab(self, ids: list[int]) -> None:
        size = len(self._base)
        for index, token in enumerate(ids):
            if not 0 <= token < size:
                raise InvalidInput(
                    f"Token id {token} (tokens[{index}]) is out of vocabulary [0, {size}).",
                    param="tokens",
                )

    def config(self) -> dict[str, Any]:
        """The tokenizer's configuration as tokenizer_config.json holds it, JSON-ready, with
        its class name; file paths are left out."""
        kwargs = dict(getattr(self._base, "init_kwargs", None) or {})
        for name in ("vocab_file", "merges_file", "tokenizer_file", "name_or_path"):
            kwargs.pop(name, None)
        config: dict[str, Any] = _json_ready(kwargs)
        config["tokenizer_class"] = type(self._base).__name__
        return config

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _json_ready(value: Any) -> Any:
    # Added tokens come as AddedToken objects: as tokenizer_config.json writes them (content,
    # special, ...) in `added_tokens_decoder`, which vLLM's clients read; their text elsewhere.
    if isinstance(value, dict) and value and all(hasattr(v, "content") for v in value.values()):
        return {str(k): _added_token(v) for k, v in value.items()}
    if hasattr(value, "content"):
        return value.content
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _added_token(token: Any) -> dict[str, Any]:
    state = token.__getstate__() if hasattr(token, "__getstate__") else None
    if isinstance(state, dict) and "content" in state:
        return {k: v for k, v in state.items() if isinstance(v, str | bool)}
    return {"content": token.content, "special": bool(getattr(token, "special", False))}
