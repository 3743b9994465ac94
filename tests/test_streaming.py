"""merge_streams: each stream at its own pace, batches coalesce, closing cancels every stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from components.streaming import batched, merge_streams


async def ticker(name: str, n: int, delay: float, log: list[str] | None = None) -> AsyncIterator[str]:
    try:
        for i in range(n):
            await asyncio.sleep(delay)
            yield f"{name}{i}"
    finally:
        if log is not None:
            log.append(f"{name} closed")


async def test_fast_stream_is_not_held_back_by_slow_one() -> None:
    order: list[str] = []
    async for batch in merge_streams({"fast": ticker("f", 5, 0.01), "slow": ticker("s", 3, 0.1)}):
        order.extend(event for _, event in batch)
    assert order.index("f4") < order.index("s0")
    assert sorted(order) == sorted([f"f{i}" for i in range(5)] + [f"s{i}" for i in range(3)])


async def test_batches_coalesce_when_consumer_is_slow() -> None:
    sizes = []
    async for batch in batched(ticker("t", 20, 0.001)):
        sizes.append(len(batch))
        await asyncio.sleep(0.02)
    assert sum(sizes) == 20 and max(sizes) > 1


async def test_failing_stream_does_not_break_the_other() -> None:
    async def broken() -> AsyncIterator[str]:
        yield "b0"
        raise RuntimeError("boom")

    seen: list[str] = []
    merged = merge_streams({"ok": ticker("o", 3, 0.01), "bad": broken()})
    try:
        async for batch in merged:
            seen.extend(event for _, event in batch)
    except RuntimeError:
        raise AssertionError("an engine error must arrive as an event, not kill the merge") from None
    assert {"o0", "o1", "o2", "b0"} <= set(seen)


async def test_closing_cancels_every_stream() -> None:
    log: list[str] = []
    merged = merge_streams({"a": ticker("a", 100, 0.01, log), "b": ticker("b", 100, 0.01, log)})
    async for _ in merged:
        break
    await merged.aclose()
    assert sorted(log) == ["a closed", "b closed"]
