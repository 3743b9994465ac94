"""merge_streams: each stream at its own pace, batches coalesce, closing cancels every stream."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

from components.core.streaming import batched, default_interval_s, merge_streams


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


# ---- pacing --------------------------------------------------------------------------------------
async def test_first_batch_is_immediate_and_later_ones_are_paced() -> None:
    loop = asyncio.get_running_loop()
    stamps: list[float] = []
    sizes: list[int] = []
    async for batch in batched(ticker("t", 30, 0.02), min_interval_s=0.2):
        stamps.append(loop.time())
        sizes.append(len(batch))
    # the first token is never held back: had it waited out the interval, ~10 events would have piled up
    assert sizes[0] <= 2
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # at most one update per interval (timer slack allowed); the end of the stream is not held back
    assert min(gaps[:-1]) >= 0.18
    assert sum(sizes) == 30 and len(sizes) < 10  # nothing lost, far fewer updates than events


async def test_zero_interval_yields_per_arrival() -> None:
    sizes = [len(batch) async for batch in batched(ticker("t", 10, 0.01), min_interval_s=0)]
    assert sizes == [1] * 10


async def test_an_ending_stream_is_not_delayed() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    async for _ in batched(ticker("t", 1, 0.0), min_interval_s=0.5):
        pass
    assert loop.time() - start < 0.25  # the end of the stream does not wait out the interval


def test_interval_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("PLAYGROUND_STREAM_INTERVAL_MS", "120")
    assert default_interval_s() == 0.12
    monkeypatch.setenv("PLAYGROUND_STREAM_INTERVAL_MS", "nonsense")
    assert default_interval_s() == 0.05
    monkeypatch.setenv("PLAYGROUND_STREAM_INTERVAL_MS", "-5")
    assert default_interval_s() == 0.0
    monkeypatch.delenv("PLAYGROUND_STREAM_INTERVAL_MS")
    assert default_interval_s() == 0.05
