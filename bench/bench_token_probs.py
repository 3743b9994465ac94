"""Benchmark: decode speed with token probabilities (top_tokens=5) against without, per local engine.

llama.cpp: the offline SmolLM2-135M (Q4_1) through LlamaCppEngine (llama.cpp's C++ server in this process,
`n_probs` 5 on /completion). transformers: the same family's prompt on a random-weight tiny Llama
(tests/tiny_models.py; its forward pass is cheap, so the per-token softmax, top-k and five decodes weigh more
than on any real model: an upper bound of the cost). Greedy, the same prompt and token budget on both sides;
the sides run in pairs, back to back, so that a shared machine's drifts hit both alike. Decode speed is the engine's
own (tokens after the first over their time, GenerationStats.tokens_per_s); the figure is the median.
Remote engines (TGI, vLLM) compute the probabilities on their server; their cost is the server's and is not
measured here.

    PLAYGROUND_LLAMA_THREADS=1 python bench/bench_token_probs.py --runs 15 --tokens 128 --record

(one llama.cpp thread: on a machine shared with other work two threads collapse, README "Many users").
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Token probabilities"
QUESTION = "Write the numbers from 1 to 500, separated by commas."  # greedy, it counts on until the budget


async def rate_of(engine: Any, request: Any) -> float:
    """One answer's decode speed (tokens/s) as the engine's stats give it."""
    from components.vocabulary.generation import Finished

    rate = 0.0
    async for event in engine.stream(request):
        if isinstance(event, Finished):
            rate = event.stats.tokens_per_s or 0.0
    return rate


async def side_by_side(engine: Any, make: Any, runs: int) -> dict[str, float]:
    """`runs` pairs of answers without and with top_tokens=5, back to back (the order alternating), after one
    warm-up each: the medians of each side's speed and the median of the pairs' ratios (a shared machine's load
    drifts between pairs more than within one)."""
    speeds: dict[int, list[float]] = {0: [], 5: []}
    ratios: list[float] = []
    for k in (0, 5):
        await rate_of(engine, make(k))
    for i in range(runs):
        pair = {}
        for k in (0, 5) if i % 2 == 0 else (5, 0):
            pair[k] = await rate_of(engine, make(k))
            speeds[k].append(pair[k])
        if pair[0]:
            ratios.append(pair[5] / pair[0])
    return {
        "off": statistics.median(speeds[0]),
        "on": statistics.median(speeds[5]),
        "ratio": statistics.median(ratios) if ratios else 0.0,
    }


async def llama_part(tokens: int, runs: int) -> dict[str, float]:
    from components.core.service import EngineRegistry, Playground
    from components.engines.llama_cpp import LlamaCppEngine
    from components.vocabulary.catalog import load_catalog

    catalog = load_catalog()
    engine = LlamaCppEngine()
    playground = Playground(catalog, EngineRegistry(catalog, overrides={"llama_cpp": engine}))

    def make(k: int) -> Any:
        prepared = playground.prepare(
            catalog.default.id, QUESTION, temperature=0, max_new_tokens=tokens, top_tokens=k, repetition_penalty=1.0
        )
        return prepared.request

    return await side_by_side(engine, make, runs)


async def transformers_part(tokens: int, runs: int) -> dict[str, float]:
    from components.engines.transformers_engine import TransformersEngine
    from components.vocabulary.generation import GenerationRequest
    from components.vocabulary.settings import SamplingSettings
    from tests.tiny_models import build_tiny_llama, chatml, tiny_model_ref

    folder = build_tiny_llama(Path(tempfile.mkdtemp(prefix="bench-probs-")))
    ref = tiny_model_ref(folder)
    engine = TransformersEngine()
    prompt = chatml("Du bist ein hilfreicher Assistent.", QUESTION)

    def make(k: int) -> Any:
        settings = SamplingSettings.model_construct(
            **(SamplingSettings().model_dump() | {"temperature": 0.0, "max_new_tokens": tokens, "top_tokens": k})
        )
        return GenerationRequest(model=ref, prompt=prompt, messages=[], settings=settings)

    return await side_by_side(engine, make, runs)


def record(rows: list[tuple[str, dict[str, float]]], command: str, load: str) -> None:
    """Writes (replaces) this benchmark's section of bench/RESULTS.md."""
    lines = [
        SECTION,
        "",
        f"`{command}` (greedy; medians, the ratio over back-to-back pairs).",
        "",
        "| engine | decode without (tokens/s) | with top_tokens=5 (tokens/s) | with ÷ without (median of pairs) |",
        "|---|---|---|---|",
        *(f"| {name} | {r['off']:.1f} | {r['on']:.1f} | {r['ratio']:.2f}x |" for name, r in rows),
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.node()}: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load} at the start and the end (shared cores).",
        "",
    ]
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n"
    if SECTION in text:
        head, _, rest = text.partition(SECTION)
        at = rest.find("\n## ")
        text = head + "\n".join(lines) + ("\n" + rest[at + 1 :] if at >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    RESULTS.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per answer (default 128)")
    parser.add_argument("--runs", type=int, default=7, help="answers per side and engine (default 7)")
    parser.add_argument("--only", choices=["llama_cpp", "transformers"], help="one engine only")
    parser.add_argument("--record", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args()
    start_load = f"{os.getloadavg()[0]:.1f}"
    rows: list[tuple[str, dict[str, float]]] = []
    if args.only in (None, "llama_cpp"):
        rows.append(("llama.cpp, offline SmolLM2-135M Q4_1", asyncio.run(llama_part(args.tokens, args.runs))))
    if args.only in (None, "transformers"):
        rows.append(("transformers, random-weight tiny Llama", asyncio.run(transformers_part(args.tokens, args.runs))))
    load = f"{start_load} / {os.getloadavg()[0]:.1f}"
    for name, r in rows:
        print(f"{name}: without {r['off']:.1f} tok/s, with top_tokens=5 {r['on']:.1f} tok/s, {r['ratio']:.2f}x")
    print(f"load average {load}")
    if args.record:
        threads = os.environ.get("PLAYGROUND_LLAMA_THREADS")
        env = f"PLAYGROUND_LLAMA_THREADS={threads} " if threads else ""
        command = env + "python bench/bench_token_probs.py " + " ".join(sys.argv[1:])
        record(rows, command.strip(), load)
    ok = all(r["ratio"] >= 0.8 for name, r in rows if name.startswith("llama.cpp"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
