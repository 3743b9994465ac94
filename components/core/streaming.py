"""Merging engine event streams for the UI: each stream runs in its own task, batches come out.

A slow stream never holds back a fast one (each has its own task feeding one queue), and the
consumer takes everything that arrived since its last look, so a slow page update coalesces
tokens instead of falling behind. Closing the merged iterator cancels every task underneath,
which closes each engine stream (and so the HTTP connection or the generating thread).

Updates are also paced: at most one batch per `min_interval_s` (PLAYGROUND_STREAM_INTERVAL_MS,
default 50 ms, i.e. 20 page updates per second). Every update costs Gradio work and re-sends the
whole answer so far, so pacing keeps a fast model (or 64 visitors) from spending the server's CPU
on updates nobody can see; the first token is never delayed, and neither is the end of a stream.
Under load the pace adapts: with more than STREAMS_PER_STEP streams running in the process the
interval grows in proportion, up to PLAYGROUND_STREAM_MAX_INTERVAL_MS (default 250 ms): 64 visitors
get an update every 250 ms each, so the work per token falls as the load rises.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Hashable, Mapping
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)

_DONE = object()


def default_interval_s() -> float:
    """PLAYGROUND_STREAM_INTERVAL_MS (0 = an update per arrival), default 50 ms."""
    raw = os.environ.get("PLAYGROUND_STREAM_INTERVAL_MS", "").strip()
    try:
        value = float(raw) if raw else 50.0
    except ValueError:
        value = 50.0
    return min(max(value, 0.0), 1000.0) / 1000.0


#: merged streams running at once in this process (one event loop serves them all)
_active = 0
#: up to this many streams run at the base interval; beyond, the interval grows in proportion
STREAMS_PER_STEP = 8


def active_streams() -> int:
    return _active


def max_interval_s() -> float:
    """PLAYGROUND_STREAM_MAX_INTERVAL_MS: the longest pause between updates under load (default 250 ms)."""
    raw = os.environ.get("PLAYGROUND_STREAM_MAX_INTERVAL_MS", "").strip()
    try:
        value = float(raw) if raw else 250.0
    except ValueError:
        value = 250.0
    return min(max(value, 0.0), 2000.0) / 1000.0


def paced_interval(base_s: float, active: int, ceiling_s: float | None = None) -> float:
    """The pause between updates with `active` streams running: `base_s` up to STREAMS_PER_STEP, then more."""
    ceiling = max_interval_s() if ceiling_s is None else ceiling_s
    if active <= STREAMS_PER_STEP or ceiling <= base_s:
        return base_s
    return min(ceiling, base_s * active / STREAMS_PER_STEP)


async def merge_streams(
    streams: Mapping[K, AsyncIterator[Any]], min_interval_s: float | None = None
) -> AsyncIterator[list[tuple[K, Any]]]:
    """Yields lists of (key, event) in arrival order until every stream has ended.

    Batches come at most every `min_interval_s` seconds (None: default_interval_s()); what arrives
    meanwhile joins the next batch. The first batch is yielded as soon as it arrives.
    """
    global _active
    base = default_interval_s() if min_interval_s is None else max(0.0, min_interval_s)
    ceiling = max_interval_s()
    loop = asyncio.get_running_loop()
    last_yield = -float("inf")
    queue: asyncio.Queue[tuple[K, Any]] = asyncio.Queue()
    ended = asyncio.Event()  # set when a stream ends: its last events go out without waiting

    async def pump(key: K, stream: AsyncIterator[Any]) -> None:
        try:
            async for event in stream:
                queue.put_nowait((key, event))
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
            queue.put_nowait((key, _DONE))
            ended.set()

    tasks = [asyncio.create_task(pump(key, stream)) for key, stream in streams.items()]
    remaining = len(tasks)
    _active += len(tasks)
    running = len(tasks)
    try:
        while remaining:
            batch = [await queue.get()]
            wait = last_yield + paced_interval(base, _active, ceiling) - loop.time()
            if wait > 0 and batch[0][1] is not _DONE and not ended.is_set():  # an ending stream: nothing to hold
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await ended.wait()
            ended.clear()
            while not queue.empty():
                batch.append(queue.get_nowait())
            events = []
            for key, event in batch:
                if event is _DONE:
                    remaining -= 1
                    running -= 1
                    _active -= 1
                else:
                    events.append((key, event))
            if events:
                last_yield = loop.time()
                yield events
    finally:
        _active -= running
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def batched(stream: AsyncIterator[Any], min_interval_s: float | None = None) -> AsyncIterator[list[Any]]:
    """One stream, coalesced: lists of the events that arrived since the last look."""
    async for batch in merge_streams({0: stream}, min_interval_s):
        yield [event for _, event in batch]
