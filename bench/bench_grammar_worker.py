"""What the grammar worker costs: a schema compiled in the app's process against the same compile in the worker.

Run from the project root:  python bench/bench_grammar_worker.py [--runs 20] [--record]
`--record` writes the figures into bench/RESULTS.md under "## Grammar worker" (other sections stay).

For each library (llama.cpp's converter through xllamacpp; xgrammar's grammar + compile against the worker's
small vocabulary) it measures, in one run: the compile in this process, the same compile through the worker
(a new schema each time, so nothing is cached), a repeated schema (the worker's cache), the worker's start-up
(including the library's import) and the worker's memory (RSS). The static checks of components/core/schema_guard.py
are timed on the card's schema too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_startup import replace_section  # noqa: E402

from components.core.schema_guard import check_schema_safety  # noqa: E402
from components.engines.grammar_worker import GrammarWorker, _compile  # noqa: E402
from components.features.structured import EXAMPLE_SCHEMA  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## Grammar worker"
LIBRARIES = ("llama.cpp", "xgrammar")


def schema_variant(i: int) -> str:
    """The card's schema with its property names made unique, so no cache answers."""
    props = {f"{name}_{i}": value for name, value in EXAMPLE_SCHEMA["properties"].items()}
    return json.dumps({**EXAMPLE_SCHEMA, "properties": props, "required": list(props)})


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.2f}"


def measure(library: str, runs: int) -> dict[str, Any]:
    state: dict[str, Any] = {}
    _compile(library, schema_variant(-1), state)  # import and warm up in this process
    in_process = []
    for i in range(runs):
        started = time.perf_counter()
        _compile(library, schema_variant(i), state)
        in_process.append(time.perf_counter() - started)
    worker = GrammarWorker()
    try:
        started = time.perf_counter()
        worker.compile(library, schema_variant(-2))  # starts the child and imports the library there
        start_s = time.perf_counter() - started
        through = []
        for i in range(runs):
            started = time.perf_counter()
            worker.compile(library, schema_variant(1000 + i))
            through.append(time.perf_counter() - started)
        cached = []
        for _ in range(runs):
            started = time.perf_counter()
            worker.compile(library, schema_variant(1000))
            cached.append(time.perf_counter() - started)
        rss_mb = psutil.Process(worker.pid).memory_info().rss / 1e6 if worker.pid else float("nan")
    finally:
        worker.close()
    return {"in": in_process, "worker": through, "cached": cached, "start_s": start_s, "rss_mb": rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--record", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args()
    guard = []
    for _ in range(args.runs):
        started = time.perf_counter()
        check_schema_safety(EXAMPLE_SCHEMA, 512)
        guard.append(time.perf_counter() - started)
    rows = []
    for library in LIBRARIES:
        got = measure(library, args.runs)
        rows.append(
            f"| {library} | {ms(got['in'])} | {ms(got['worker'])} | {ms(got['cached'])} | "
            f"{got['start_s']:.2f} s | {got['rss_mb']:.0f} MB |"
        )
    section = [
        HEADING,
        "",
        f"`python bench/bench_grammar_worker.py --runs {args.runs} --record` ({platform.machine()}, "
        f"{os.cpu_count()} cores, machine shared with other jobs; medians of {args.runs} compiles, the card's "
        "schema with fresh property names each time).",
        "",
        "| library | in the app's process (ms) | through the worker (ms) | repeated schema, cached (ms) | "
        "worker start + import | worker RSS |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"The static checks (components/core/schema_guard.py) on the card's schema: {ms(guard)} ms.",
        "The worker's cost is the round trip through a pipe (one JSON line each way) on top of the compile, once per",
        "schema; its start-up (xgrammar imports torch) is paid once, on the first schema, not at app start.",
    ]
    print("\n".join(section))
    if args.record:
        record(section)
        print(f"recorded in {RESULTS.relative_to(ROOT)}")


def record(section: list[str], path: Path = RESULTS) -> None:
    """Replaces `## Grammar worker` in RESULTS.md (or appends it); other sections stay as they are."""
    assert section[0].strip() == HEADING, section[0]
    replace_section(section, path)


if __name__ == "__main__":
    main()
