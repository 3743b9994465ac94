"""Loaded local models kept under a memory budget, evicting the least recently used."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from components.vocabulary.generation import EngineError

log = logging.getLogger(__name__)

T = TypeVar("T")


def total_memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        return 16.0


def default_budget_gb() -> float:
    """PLAYGROUND_MEMORY_BUDGET_GB, or 70 % of the machine's memory."""
    raw = os.environ.get("PLAYGROUND_MEMORY_BUDGET_GB", "").strip()
    if raw:
        try:
            return max(0.1, float(raw))
        except ValueError:
            log.warning("PLAYGROUND_MEMORY_BUDGET_GB=%r is not a number; using the default", raw)
    return round(total_memory_gb() * 0.7, 1)


async def progress_while(task: asyncio.Future[Any], queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    """What `queue` receives while `task` (a model's load, which may download) runs, as it arrives. Closed early
    (use contextlib.aclosing), it cancels the task. The caller takes the task's result and what is still queued."""
    try:
        while not task.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
            else:
                getter.cancel()
    finally:
        if not task.done():
            task.cancel()


@dataclass
class Loaded(Generic[T]):
    """A loaded model with its size and a lock so that one caller at a time runs it."""

    key: str
    value: T
    size_gb: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0
    in_use: int = 0


class ModelCache(Generic[T]):
    """LRU cache of loaded models. Loading happens once per key even with concurrent callers."""

    def __init__(self, budget_gb: float | None = None, unload: Callable[[T], None] | None = None) -> None:
        self.budget_gb = default_budget_gb() if budget_gb is None else budget_gb
        self._items: OrderedDict[str, Loaded[T]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Loaded[T]]] = {}
        self._unload = unload

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[Loaded[T]]:
        """The loaded models, least recently used first."""
        return list(self._items.values())

    @property
    def used_gb(self) -> float:
        return sum(item.size_gb for item in self._items.values())

    async def get(
        self,
        key: str,
        size_gb: float,
        load: Callable[[], Awaitable[T]],
        label: str = "",
    ) -> Loaded[T]:
        """The loaded model for `key`, loading it (after evicting others) if needed."""
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            return item
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        if size_gb > self.budget_gb:
            raise EngineError("err_memory", model=label or key, need=size_gb, budget=self.budget_gb)
        future: asyncio.Future[Loaded[T]] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            self._evict_for(size_gb)
            value = await load()
            item = Loaded(key=key, value=value, size_gb=size_gb)
            self._items[key] = item
            future.set_result(item)
            return item
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: other waiters get it, nobody logs it twice
            raise
        finally:
            self._loading.pop(key, None)

    def _evict_for(self, size_gb: float) -> None:
        for key in list(self._items):
            if self.used_gb + size_gb <= self.budget_gb:
                break
            item = self._items[key]
            if item.in_use or item.waiting or item.lock.locked():
                continue
            self.evict(key)

    def evict(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is None:
            return
        log.info("evicting %s (%.2f GB) from the model cache", key, item.size_gb)
        if self._unload is not None:
            try:
                self._unload(item.value)
            except Exception:  # unloading must never take the app down
                log.exception("unloading %s failed", key)
        del item
        gc.collect()

    def clear(self) -> None:
        for key in list(self._items):
            self.evict(key)
