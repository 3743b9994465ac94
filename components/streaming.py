"""Merging engine event streams for the UI: each stream runs in its own task, batches come out.

A slow stream never holds back a fast one (each has its own task feeding one queue), and the
consumer takes everything that arrived since its last look, so a slow page update coalesces
tokens instead of falling behind. Closing the merged iterator cancels every task underneath,
which closes each engine stream (and so the HTTP connection or the generating thread).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable, Mapping
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)

_DONE = object()


async def merge_streams(streams: Mapping[K, AsyncIterator[Any]]) -> AsyncIterator[list[tuple[K, Any]]]:
    """Yields lists of (key, event) in arrival order until every stream has ended."""
    queue: asyncio.Queue[tuple[K, Any]] = asyncio.Queue()

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

    tasks = [asyncio.create_task(pump(key, stream)) for key, stream in streams.items()]
    remaining = len(tasks)
    try:
        while remaining:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            events = []
            for key, event in batch:
                if event is _DONE:
                    remaining -= 1
                else:
                    events.append((key, event))
            if events:
                yield events
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def batched(stream: AsyncIterator[Any]) -> AsyncIterator[list[Any]]:
    """One stream, coalesced: lists of the events that arrived since the last look."""
    async for batch in merge_streams({0: stream}):
        yield [event for _, event in batch]
