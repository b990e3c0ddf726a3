"""Engine: admission, tokenization and the futures a request waits on.

    async with Engine(config) as engine:
        result = await engine.classify(["great movie", "dull"], ClassifyOptions())

The engine speaks in prompts and logits; the HTTP layer maps them to the wire.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, cast

from engine.adapter_hub import fetch_adapters
from engine.adapter_registry import AdapterRegistry
from engine.adapters import AdapterInfo, AdapterSpec
from engine.config import EngineConfig, resolve_max_model_len
from engine.entry import Entry
from engine.errors import (
    EmptyPrompt,
    EngineUnavailable,
    InputTooLong,
    InvalidInput,
    InvalidPrompt,
    Overloaded,
    RequestTimeout,
)
from engine.hub import fetch_model, named_as_given
from engine.metrics import EngineMetrics
from engine.model.runner import ModelInfo, ModelRunner, TransformersRunner
from engine.scheduler import Scheduler
from engine.tokenizer import Tokenizer
from engine.worker import Worker

logger = logging.getLogger("classifyd.engine")

# Texts, token id lists, or (text, text) pairs that the tokenizer encodes as pairs.
Prompts = Sequence[str] | Sequence[Sequence[int]] | Sequence[tuple[str, str]]


@dataclass(frozen=True)
class ClassifyOptions:
    # Keep at most this many tokens (-1: the model's maximum length); None: no truncation.
    truncate_prompt_tokens: int | None = None
    truncation_side: Literal["left", "right"] | None = None
    add_special_tokens: bool = True
    priority: int = 0
    # A LoRA adapter's name (--lora-modules); None: the base model.
    adapter: str | None = None


@dataclass(frozen=True)
class ClassifyResult:
    logits: list[list[float]]
    prompt_tokens: list[int]
    tokenize_s: float
    queue_s: float
    inference_s: float
    total_s: float


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        runner_factory: Callable[[EngineConfig], ModelRunner] | None = None,
    ) -> None:
        self.config = config
        self.metrics = EngineMetrics(config.names[0])
        self._runner_factory = runner_factory or TransformersRunner
        self._tokenizer: Tokenizer | None = None
        self._workers: list[Worker] = []
        self._scheduler = Scheduler(config, self.metrics)
        self._info: ModelInfo | None = None
        self._max_model_len = 0
        self._admitted = 0
        self._accepting = False
        self._draining = False
        self._dead: BaseException | None = None
        self._abandoned = False
        # Set whenever no admitted prompt is left unanswered (drain waits on it).
        self._idle = asyncio.Event()
        self._idle.set()
        self.adapters = AdapterRegistry(config, self.metrics, self._adapters_changed)
        self.metrics.bind(
            waiting=lambda: self._scheduler.waiting_count,
            waiting_tokens=lambda: self._scheduler.waiting_tokens,
            running=lambda: self._scheduler.running,
            admitted=lambda: self._admitted,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        # A Hub id is downloaded here, before any worker starts; `local` names directories,
        # while self.config keeps the names as given (the id is what /info and logs show).
        local = await asyncio.to_thread(fetch_model, cfg)
        local = await asyncio.to_thread(fetch_adapters, local)
        with named_as_given(cfg, local):
            self._tokenizer = await asyncio.to_thread(
                Tokenizer, local.tokenizer or local.model, cfg.tokenizer_workers, cfg.chat_template
            )
        primary = Worker(
            lambda: self._runner_factory(local),
            loop,
            self._scheduler.complete,
            self._worker_died,
            cfg.fault_hook,
        )
        self._workers = [primary]
        # Shielded: a start cancelled mid-load (Ctrl-C) must not cancel the future the worker
        # thread still resolves when its load ends (it would raise InvalidStateError there).
        with named_as_given(cfg, local):
            self._info = await asyncio.shield(asyncio.wrap_future(primary.start()))
        self.adapters.start(self._info.adapters)
        self._max_model_len = resolve_max_model_len(
            cfg, self._info.max_position_len, self._tokenizer.model_max_length
        )
        self.metrics.size_prompts(self._max_model_len)
        on_gpu = self._info.device.startswith("cuda")
        self._tokenizer.parallel = on_gpu
        count = self._worker_count(on_gpu)
        for index in range(1, count):
            worker = primary.sharing(f"classifyd-worker-{index}")
            self._workers.append(worker)
            await asyncio.shield(asyncio.wrap_future(worker.start()))
        inflight = cfg.max_inflight_batches or (2 if on_gpu else count)
        threads = (cfg.num_threads, max(1, cfg.num_threads // count))
        self._scheduler.start(self._workers, inflight, threads, packed=self._info.packed)
        self._accepting = True
        logger.info(
            "engine ready: %s (%s, %s%s%s on %s, %d worker%s), max_model_len=%d, labels=%s",
            cfg.model, self._info.architecture, self._info.dtype,
            " + int8" if self._info.quantization == "int8" else "",
            ", packed" if self._info.packed else "", self._info.device,
            count, "" if count == 1 else "s", self._max_model_len, list(self._info.labels),
        )  # fmt: skip

    def _worker_count(self, on_gpu: bool) -> int:
        asked = self.config.workers
        if on_gpu:
            if asked is not None and asked > 1:
                # One stream pair already keeps the device busy (2 batches in flight).
                logger.warning("workers=%d is for CPU; a GPU runs one worker", asked)
            return 1
        if asked is not None:
            return asked
        return 2 if self.config.num_threads >= 2 else 1

    async def stop(self) -> None:
        self._accepting = False
        await self._scheduler.stop()
        # After abandon() a forward may still be running; its answers are already given, so
        # do not hold the process for it (the threads are daemons). The first worker closes
        # the runner the others share, so it stops last.
        for worker in reversed(self._workers):
            await asyncio.to_thread(worker.stop, 1.0 if self._abandoned else 30.0)
        if self._tokenizer is not None:
            self._tokenizer.close()

    # -- state -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Accepting work: started, not draining, worker alive."""
        return self.alive and not self._draining

    @property
    def alive(self) -> bool:
        """Able to answer what it has accepted (liveness): started and the worker alive."""
        return (
            self._accepting
            and self._dead is None
            and bool(self._workers)
            and all(w.alive for w in self._workers)
        )

    def begin_drain(self) -> None:
        """Refuse new work from now on (503); what was accepted still runs."""
        self._draining = True

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every admitted prompt is answered; False if `timeout` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def abandon(self) -> None:
        """A drain ran out of time: answer everything queued and running now, with 503
        (retry elsewhere), instead of leaving those requests to be cut off without an answer."""
        self._abandoned = True
        self._scheduler.fail_all(
            EngineUnavailable(
                "The server is shutting down and this request did not finish in time; "
                "retry on another replica."
            )
        )

    def _worker_died(self, exc: BaseException) -> None:
        self._dead = exc
        self.metrics.rejected.labels("worker_dead").inc()
        self._scheduler.fail_all(
            EngineUnavailable("The model worker died; the server must be restarted.")
        )

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise EngineUnavailable("The engine has not started.")
        return self._info

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    def adapter_index(self, name: str | None) -> int:
        """The entries' index of a LoRA adapter (0: the base); InvalidInput if not served."""
        return self.adapters.index(name)

    async def load_adapter(self, spec: AdapterSpec, *, inplace: bool = False) -> None:
        """A LoRA adapter loaded at run time (engine/adapter_registry.py)."""
        await self.adapters.load(self._workers[0].runner if self._workers else None, spec,
                                 inplace=inplace)  # fmt: skip

    async def unload_adapter(self, name: str) -> None:
        await self.adapters.unload(self._workers[0].runner if self._workers else None, name)

    def _adapters_changed(self, adapters: tuple[AdapterInfo, ...]) -> None:
        if self._info is not None:
            self._info = dataclasses.replace(self._info, adapters=adapters)

    # -- requests ----------------------------------------------------------------------

    async def classify(self, prompts: Prompts, options: ClassifyOptions) -> ClassifyResult:
        """Classify texts, text pairs or token id lists; one logits row per prompt, in order.
        A prompt the model cannot take fails the call with an InvalidPrompt naming its index."""
        if not self.ready:
            reason = "draining" if self._draining else "unavailable"
            self.metrics.rejected.labels(reason).inc()
            if self._draining:
                raise EngineUnavailable("The server is shutting down; retry on another replica.")
            raise EngineUnavailable("The engine is not ready.")
        count = len(prompts)
        if count == 0:
            raise InvalidInput("There are no prompts to classify.", param="prompts")
        limit = self.config.max_concurrent_requests
        if count > limit:
            # Could never be admitted: a 429 would have the client retry forever.
            raise InvalidInput(
                f"This request has {count} inputs; the server admits at most {limit} at once "
                "(--max-concurrent-requests). Split it.",
                param="prompts",
            )
        _check_not_empty(prompts)
        self.adapter_index(options.adapter)  # an unknown adapter before a full server
        # Try-acquire only: a full server answers at once instead of queueing unboundedly.
        if self._admitted + count > limit:
            self.metrics.rejected.labels("overloaded").inc()
            raise Overloaded(count, self._admitted, limit)
        adapter = self.adapters.pin(options.adapter)
        self._admitted += count
        self._idle.clear()
        try:
            return await self._classify(prompts, options, adapter)
        finally:
            self.adapters.unpin(adapter)
            self._admitted -= count
            if self._admitted == 0:
                self._idle.set()

    async def _classify(
        self, prompts: Prompts, options: ClassifyOptions, adapter: int
    ) -> ClassifyResult:
        start = time.perf_counter()
        ids, type_ids = await self._encode(prompts, options)
        tokenized = time.perf_counter()
        bound = self.config.max_waiting_tokens
        waiting_tokens = self._scheduler.waiting_tokens
        if bound is not None and sum(map(len, ids)) > bound:
            raise InvalidInput(
                f"This request has {sum(map(len, ids))} tokens; the queue holds at most {bound} "
                "(--max-waiting-tokens). Split it.",
                param="prompts",
            )
        if bound is not None and waiting_tokens + sum(map(len, ids)) > bound:
            self.metrics.rejected.labels("queue_full").inc()
            raise Overloaded.queue_full(sum(map(len, ids)), waiting_tokens, bound)
        loop = asyncio.get_running_loop()
        entries = [
            Entry(row, loop.create_future(), options.priority,
                  type_ids=None if type_ids is None else type_ids[i], adapter=adapter)
            for i, row in enumerate(ids)
        ]  # fmt: skip
        for entry in entries:
            entry.siblings = entries
        self._scheduler.enqueue(entries)
        timeout = self.config.request_timeout
        try:
            # One prompt (most requests): its own future, without gather's wrapper.
            waiting: asyncio.Future[Any] = (
                entries[0].future
                if len(entries) == 1
                else asyncio.gather(*(e.future for e in entries))
            )
            if timeout is None:
                logits = await waiting
            else:
                left = max(0.0, timeout - (time.perf_counter() - start))
                try:
                    logits = await asyncio.wait_for(waiting, left)
                except TimeoutError:
                    self.metrics.rejected.labels("timeout").inc()
                    raise RequestTimeout(
                        f"The request was not answered within {timeout:g} s "
                        "(--request-timeout); its queued work was dropped."
                    ) from None
        except BaseException:
            # One prompt failed or the caller gave up: the rest must not reach the model.
            self._scheduler.cancel(entries)
            raise
        finally:
            for entry in entries:
                entry.siblings = None  # break the cycle so refcounting frees the request
        end = time.perf_counter()
        if len(entries) == 1:
            logits = [logits]
        lengths = [e.length for e in entries]
        queue_s = max(e.started_at - e.enqueued_at for e in entries)
        inference_s = max(e.finished_at - e.started_at for e in entries)
        result = ClassifyResult(
            logits=list(logits),
            prompt_tokens=lengths,
            tokenize_s=tokenized - start,
            queue_s=queue_s,
            inference_s=inference_s,
            total_s=end - start,
        )
        self.metrics.observe_request(
            lengths, result.tokenize_s, queue_s, inference_s, result.total_s
        )
        if options.adapter is not None:
            self.metrics.lora_requests.labels(options.adapter).inc()
        return result

    async def _encode(
        self, prompts: Prompts, options: ClassifyOptions
    ) -> tuple[list[list[int]], list[list[int]] | None]:
        assert self._tokenizer is not None
        limit = self._max_model_len
        keep = options.truncate_prompt_tokens
        if keep is not None:
            if keep == -1:
                keep = limit
            elif keep > limit:
                raise InvalidInput(
                    f"truncate_prompt_tokens ({keep}) is more than the model's maximum length "
                    f"({limit}).",
                    param="truncate_prompt_tokens",
                )
            elif keep < 1:
                raise InvalidInput(
                    "truncate_prompt_tokens must be -1 or at least 1.",
                    param="truncate_prompt_tokens",
                )
        type_ids = None
        if prompts and isinstance(prompts[0], str | tuple):
            pairs = isinstance(prompts[0], tuple)
            texts = cast("Sequence[str]", prompts)
            if pairs:
                texts = cast("Sequence[str]", await self._pairs_as_texts(prompts))
                pairs = isinstance(texts[0], tuple)
            encoded = await self._tokenizer.encode(
                [str(p[0]) for p in prompts] if pairs else texts,
                [str(p[1]) for p in prompts] if pairs else None,
                add_special_tokens=options.add_special_tokens,
                max_length=keep,
                side=options.truncation_side,
            )
            ids, type_ids = encoded.ids, encoded.type_ids
        else:
            ids = [self._check_ids(i, list(row)) for i, row in enumerate(prompts)]  # type: ignore[arg-type]
            if keep is not None:
                side = options.truncation_side or self._tokenizer.default_side
                ids = [row if len(row) <= keep else _truncate(row, keep, side) for row in ids]
        for index, row in enumerate(ids):
            if len(row) > limit:
                raise InputTooLong(index, len(row), limit)
            if not row:
                raise InvalidPrompt(index, "has no tokens")
        return ids, type_ids

    async def _pairs_as_texts(self, prompts: Prompts) -> Prompts:
        """Pairs as the model scores them: one prompt each, rendered with --chat-template or,
        for a converted LLM reranker, query + document (vLLM's ways); else left as pairs."""
        assert self._tokenizer is not None
        pairs = [(str(p[0]), str(p[1])) for p in prompts]
        if self._tokenizer.score_template is not None:
            return await self._tokenizer.render_pairs(pairs)
        if self.info.pairs_as_text:
            return [a + b for a, b in pairs]
        return prompts

    async def render_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> str:
        """A chat conversation rendered to one prompt with the model's chat template."""
        if add_generation_prompt and continue_final_message:
            raise InvalidInput(
                "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
                param="continue_final_message",
            )
        assert self._tokenizer is not None
        return await self._tokenizer.render_chat(
            messages,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            kwargs=chat_template_kwargs or {},
        )

    async def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        if self._tokenizer is None:
            raise EngineUnavailable("The engine has not started.")
        return await self._tokenizer.tokenize(text, add_special_tokens=add_special_tokens)

    async def heads(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Each text cut to its first `max_tokens` tokens, as text (vLLM's
        `max_tokens_per_doc`: documents are cut before they are paired with the query)."""
        if self._tokenizer is None:
            raise EngineUnavailable("The engine has not started.")
        return await self._tokenizer.heads(texts, max_tokens)

    def token_strings(self, ids: list[int]) -> list[str]:
        """The vocabulary entry of each id (ids from `tokenize`)."""
        if self._tokenizer is None:
            raise EngineUnavailable("The engine has not started.")
        return self._tokenizer.token_strings(ids)

    async def detokenize(self, tokens: list[int]) -> str:
        """The text of token ids; an id outside the tokenizer's vocabulary is InvalidInput."""
        if self._tokenizer is None:
            raise EngineUnavailable("The engine has not started.")
        return await self._tokenizer.detokenize(tokens)

    def tokenizer_config(self) -> dict[str, Any]:
        """The tokenizer's configuration (tokenizer_config.json's fields, JSON-ready)."""
        if self._tokenizer is None:
            raise EngineUnavailable("The engine has not started.")
        return self._tokenizer.config()

    def _check_ids(self, index: int, row: list[int]) -> list[int]:
        vocab = self.info.vocab_size
        for token in row:
            if not 0 <= token < vocab:
                raise InvalidPrompt(
                    index, f"has token id {token}, outside the vocabulary [0, {vocab})"
                )
        return row


def _check_not_empty(prompts: Prompts) -> None:
    # Before admission: an empty prompt is refused alike offline and online, whatever the load.
    for index, prompt in enumerate(prompts):
        if isinstance(prompt, tuple):
            for part, text in enumerate(prompt):
                if not text:
                    raise EmptyPrompt(index, part=part)
        elif not prompt:
            raise EmptyPrompt(index, token_ids=not isinstance(prompt, str))


def _truncate(row: list[int], keep: int, side: str) -> list[int]:
    return row[-keep:] if side == "left" else row[:keep]
