"""llama.cpp engine on the real offline GGUF: streaming, Stop within a token, queue, cache, context, JSON."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from components.engines.base import EngineError, Failed, Finished, Status, TextDelta
from components.engines.llama_cpp import LlamaCppEngine, packaged_gguf
from components.engines.model_cache import ModelCache
from components.service import EngineRegistry, Playground

OFFLINE = "smollm2-135m-instruct/gguf-q4_1"
QUESTION = "Ein Buch hat 500 Seiten. Jede Seite enthält 300 Wörter. Wie viele Wörter sind im gesamten Buch enthalten?"


@pytest.fixture(scope="module")
def engine() -> LlamaCppEngine:
    return LlamaCppEngine()


@pytest.fixture()
def playground(catalog, engine) -> Playground:
    return Playground(catalog, EngineRegistry(catalog, overrides={"llama_cpp": engine}))


async def collect(playground: Playground, prepared) -> tuple[list, str]:
    events = [e async for e in playground.stream(prepared)]
    return events, "".join(e.text for e in events if isinstance(e, TextDelta))


def test_offline_file_is_found_without_importing_the_plugin(catalog) -> None:
    path = packaged_gguf(catalog.default.quant)
    assert path is not None and path.stat().st_size > 50_000_000


async def test_streams_tokens_with_stats(playground) -> None:
    prepared = playground.prepare(OFFLINE, QUESTION, temperature=0, max_new_tokens=24)
    events, text = await collect(playground, prepared)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) >= 5 and text.strip()
    final = events[-1]
    assert isinstance(final, Finished)
    stats = final.stats
    assert stats.finish_reason in {"length", "stop"}
    assert stats.prompt_tokens and stats.prompt_tokens > 30
    assert 0 < stats.completion_tokens <= 24
    assert stats.ttft_s is not None and stats.tokens_per_s and stats.tokens_per_s > 5


async def test_greedy_with_seed_is_reproducible(playground) -> None:
    prepared = playground.prepare(OFFLINE, "Nenne eine Farbe.", temperature=0, max_new_tokens=12, seed=1)
    _, first = await collect(playground, prepared)
    _, second = await collect(
        playground, playground.prepare(OFFLINE, "Nenne eine Farbe.", temperature=0, max_new_tokens=12, seed=1)
    )
    assert first == second


async def test_stop_ends_generation_within_a_token(playground) -> None:
    prepared = playground.prepare(OFFLINE, "Schreibe eine lange Geschichte über Hamburg.", max_new_tokens=400)
    deltas = 0
    final = None
    async for event in playground.stream(prepared):
        if isinstance(event, TextDelta):
            deltas += 1
            if deltas == 3:
                prepared.request.cancel.set()
        elif isinstance(event, Finished):
            final = event
    assert final is not None and final.stats.finish_reason == "stopped"
    # at most one more token after the flag
    assert final.stats.completion_tokens <= 4
    assert not any(t.name == "llama-generate" and t.is_alive() for t in threading.enumerate())


async def test_closing_the_stream_stops_the_thread(playground) -> None:
    prepared = playground.prepare(OFFLINE, "Erzähl mir alles über Berlin.", max_new_tokens=400)
    stream = playground.stream(prepared)
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()
    for _ in range(50):
        if not any(t.name == "llama-generate" and t.is_alive() for t in threading.enumerate()):
            break
        await asyncio.sleep(0.05)
    assert prepared.request.cancel.is_set()
    assert not any(t.name == "llama-generate" and t.is_alive() for t in threading.enumerate())


async def test_second_caller_waits_with_queue_position(playground) -> None:
    a = playground.prepare(OFFLINE, "Zähle bis zwanzig.", temperature=0, max_new_tokens=30)
    b = playground.prepare(OFFLINE, "Zähle bis zehn.", temperature=0, max_new_tokens=5)
    first, second = await asyncio.gather(collect(playground, a), collect(playground, b))
    statuses = [e for e in first[0] + second[0] if isinstance(e, Status) and e.key == "status_queued"]
    assert statuses and statuses[0].params["position"] == 1
    assert isinstance(first[0][-1], Finished) and isinstance(second[0][-1], Finished)


async def test_prompt_longer_than_context_is_refused_in_tokens(playground) -> None:
    prepared = playground.prepare(OFFLINE, "Wort " * 3000, max_new_tokens=100)
    events, text = await collect(playground, prepared)
    assert text == ""
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.key == "err_context"
    assert failed.params["context"] == 2048 and failed.params["prompt_tokens"] > 2048


async def test_json_schema_gives_valid_json(playground) -> None:
    schema = {
        "type": "object",
        "properties": {"jahr": {"type": "integer"}, "name": {"type": "string"}, "ort": {"type": "string"}},
        "required": ["jahr", "name", "ort"],
    }
    prepared = playground.prepare(
        OFFLINE,
        "Max ging im Jahr, als die Corona-Krise startete, in die Stadt mit dem Eiffelturm. Antworte als JSON.",
        json_schema=schema,
        temperature=0,
        max_new_tokens=80,
    )
    _, text = await collect(playground, prepared)
    data = json.loads(text)
    assert set(data) == {"jahr", "name", "ort"} and isinstance(data["jahr"], int)


async def test_cache_evicts_least_recently_used() -> None:
    unloaded: list[str] = []
    cache: ModelCache[str] = ModelCache(budget_gb=1.0, unload=unloaded.append)

    def loader(name: str):
        async def load() -> str:
            return name

        return load

    await cache.get("a", 0.4, loader("a"))
    await cache.get("b", 0.4, loader("b"))
    await cache.get("a", 0.4, loader("a"))  # a is now the most recently used
    await cache.get("c", 0.4, loader("c"))
    assert unloaded == ["b"] and set(cache.keys()) == {"a", "c"}
    with pytest.raises(EngineError) as err:
        await cache.get("huge", 2.0, loader("huge"), label="70B")
    assert err.value.key == "err_memory"


async def test_concurrent_loads_share_one_load() -> None:
    calls = 0
    cache: ModelCache[int] = ModelCache(budget_gb=1.0)

    async def load() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 7

    results = await asyncio.gather(*(cache.get("m", 0.1, load) for _ in range(5)))
    assert calls == 1 and {r.value for r in results} == {7}


async def test_switching_back_is_instant(engine, catalog) -> None:
    ref = catalog.default
    first = await engine.loaded(ref)
    loop = asyncio.get_running_loop()
    start = loop.time()
    again = await engine.loaded(ref)
    assert again is first and loop.time() - start < 0.01
