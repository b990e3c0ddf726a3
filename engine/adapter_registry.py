"""The LoRA adapters served now, by name: those of --lora-modules, and those loaded and
unloaded at run time (/v1/load_lora_adapter, /v1/unload_lora_adapter, as vLLM).

Each adapter has an index that is never reused, so a request admitted for one adapter can
never run on another loaded later under the same name. A request pins its adapter's index
from admission to its answer; an unload first stops naming the adapter (new requests for it
are refused), then waits for the pinned requests to be answered, and only then drops its
weights. A load adds weights under a fresh index before any request can name it, so the
forwards already running are untouched (engine/model/lora.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NoReturn, Protocol, runtime_checkable

from engine.adapter_hub import local_adapter
from engine.adapters import AdapterInfo, AdapterSpec
from engine.config import EngineConfig
from engine.errors import AdapterConflict, AdapterNotFound, InvalidInput
from engine.metrics import EngineMetrics

logger = logging.getLogger("classifyd.adapters")


@runtime_checkable
class AdapterRunner(Protocol):
    """A runner that takes adapters at run time (engine/model/runner.py); called off-loop."""

    def load_adapter(self, spec: AdapterSpec, index: int) -> AdapterInfo: ...

    def unload_adapter(self, index: int) -> None: ...


@dataclass(frozen=True)
class Resident:
    """A served adapter: its info, its index in the model, and how /v1/models shows it."""

    info: AdapterInfo
    index: int
    # The path or Hub id as given (a Hub id stays an id), and the base it names, if any.
    root: str
    parent: str | None


class AdapterRegistry:
    def __init__(
        self,
        config: EngineConfig,
        metrics: EngineMetrics,
        changed: Callable[[tuple[AdapterInfo, ...]], None],
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._changed = changed
        self._by_name: dict[str, Resident] = {}
        self._pinned: dict[int, int] = {}
        self._drained: dict[int, asyncio.Event] = {}
        self._next = 1
        self._lock = asyncio.Lock()

    def start(self, infos: tuple[AdapterInfo, ...]) -> None:
        """The --lora-modules adapters the runner loaded (adapter i + 1 is spec i)."""
        specs = self._config.adapters if self._config.enable_lora else ()
        for index, (spec, info) in enumerate(zip(specs, infos, strict=True), 1):
            self._by_name[info.name] = Resident(info, index, spec.path, spec.base_model_name)
        self._next = len(infos) + 1
        self._metrics.lora_loaded.set(len(self._by_name))

    @property
    def residents(self) -> tuple[Resident, ...]:
        return tuple(self._by_name.values())

    @property
    def infos(self) -> tuple[AdapterInfo, ...]:
        return tuple(r.info for r in self._by_name.values())

    def get(self, name: str) -> AdapterInfo:
        return self._by_name[name].info if name in self._by_name else self._missing(name)

    def index(self, name: str | None) -> int:
        """The model's index of adapter `name` (0: the base); InvalidInput if not served."""
        if name is None:
            return 0
        resident = self._by_name.get(name)
        return self._missing(name) if resident is None else resident.index

    def _missing(self, name: str) -> NoReturn:
        raise InvalidInput(f"There is no LoRA adapter named {name!r}.", param="adapter")

    def pin(self, name: str | None) -> int:
        """The index a request runs on, held until `unpin`: no unload drops it before."""
        index = self.index(name)
        if index:
            self._pinned[index] = self._pinned.get(index, 0) + 1
        return index

    def unpin(self, index: int) -> None:
        if not index:
            return
        left = self._pinned[index] - 1
        if left:
            self._pinned[index] = left
            return
        del self._pinned[index]
        drained = self._drained.pop(index, None)
        if drained is not None:
            drained.set()

    async def load(self, runner: object, spec: AdapterSpec, *, inplace: bool = False) -> None:
        """Add (or with `inplace`, replace) adapter `spec.name`; AdapterConflict when its name
        is taken or --max-loras adapters are loaded, ModelLoadError when it cannot load."""
        try:
            await self._load(runner, spec, inplace)
        except Exception:
            self._metrics.lora_updates.labels("load", "refused").inc()
            raise
        self._metrics.lora_updates.labels("load", "ok").inc()

    async def _load(self, given: object, spec: AdapterSpec, inplace: bool) -> None:
        cfg = self._config
        if not cfg.enable_lora:
            raise InvalidInput("LoRA adapters are not enabled; start with --enable-lora.")
        runner = _runner(given)
        if spec.name in cfg.names:
            raise AdapterConflict(f"The name {spec.name!r} is the base model's, not an adapter's.")
        async with self._lock:
            old = self._by_name.get(spec.name)
            if old is not None and not inplace:
                raise AdapterConflict(f"The lora adapter '{spec.name}' has already been loaded.")
            limit = cfg.max_loras
            if old is None and limit is not None and len(self._by_name) >= limit:
                raise AdapterConflict(
                    f"The lora adapter '{spec.name}' cannot be loaded: {limit} adapters are "
                    "loaded, as many as --max-loras allows; unload one first."
                )
            local = await asyncio.to_thread(local_adapter, spec, cfg.download_dir)
            index = self._next
            self._next += 1
            info = await asyncio.to_thread(runner.load_adapter, replace(spec, path=local), index)
            if old is not None and (info.labels, info.problem_type) != (
                old.info.labels,
                old.info.problem_type,
            ):
                # A request routed before the swap reads the old labels; its logits must fit.
                await asyncio.to_thread(runner.unload_adapter, index)
                raise AdapterConflict(
                    f"The lora adapter '{spec.name}' cannot be replaced in place by one with "
                    "other labels or activation; unload it and load the new one."
                )
            self._by_name[spec.name] = Resident(info, index, spec.path, None)
            self._publish()
        logger.info("loaded LoRA adapter %r from %s (index %d)", spec.name, spec.path, index)
        if old is not None:
            await asyncio.shield(self._retire(runner, old))

    async def unload(self, runner: object, name: str) -> None:
        """Stop serving adapter `name`: refused for new requests at once, its weights dropped
        once the requests already admitted for it are answered. AdapterNotFound if unknown."""
        async with self._lock:
            old = self._by_name.pop(name, None)
            if old is None:
                self._metrics.lora_updates.labels("unload", "refused").inc()
                raise AdapterNotFound(f"The lora adapter '{name}' cannot be found.")
            self._publish()
        # Shielded: a client that stops waiting must not leave the weights behind.
        await asyncio.shield(self._retire(_runner(runner), old))
        self._metrics.lora_updates.labels("unload", "ok").inc()
        logger.info("unloaded LoRA adapter %r", name)

    async def _retire(self, runner: AdapterRunner, old: Resident) -> None:
        if self._pinned.get(old.index):
            drained = self._drained.setdefault(old.index, asyncio.Event())
            await drained.wait()
        await asyncio.to_thread(runner.unload_adapter, old.index)

    def _publish(self) -> None:
        self._metrics.lora_loaded.set(len(self._by_name))
        self._changed(self.infos)


def _runner(runner: object) -> AdapterRunner:
    if not isinstance(runner, AdapterRunner):
        raise InvalidInput("This model runner cannot load LoRA adapters at run time.")
    return runner
