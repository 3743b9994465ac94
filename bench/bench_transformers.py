"""Transformers engine speed: engine vs plain model.generate() on CPU, and decode vs memory bandwidth on a GPU.

Run from the project root:
    python bench/bench_transformers.py [--tokens 128] [--runs 3] [--record]
    python bench/bench_transformers.py --gpu [--bandwidth-gbs 3350] [--record]   # needs CUDA (+ bitsandbytes)
    python bench/bench_transformers.py --batching [--visitors 1,4,16] [--record]  # CPU, tiny model
    python bench/bench_transformers.py --gpu-batching [--visitors 1,8,32] [--record]  # CUDA, 7B-shaped fp16
The batching parts send 1, 4, 16 (GPU: 1, 8, 32) visitors at once to one loaded model, through transformers'
continuous batching and through today's path (one request after another), alternating, in one run.
`--record` writes the figures into bench/RESULTS.md under "## transformers engine" (other sections stay).
All models are random weights built from a config: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.engines.model_cache import ModelCache  # noqa: E402
from components.engines.transformers_engine import TransformersEngine, unload_model  # noqa: E402
from components.vocabulary.generation import Finished, GenerationRequest, TextDelta  # noqa: E402
from components.vocabulary.settings import SamplingSettings  # noqa: E402
from tests.tiny_models import IM_END, build_tiny_llama, chatml, local_model_ref, make_readable  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "transformers engine"
PROMPT = chatml(
    "Du bist ein hilfreicher Assistent.",
    "Ein Buch hat 500 Seiten. Jede Seite enthält 300 Wörter. Wie viele Wörter sind im gesamten Buch enthalten?",
)
TARGET_RATIO = 0.95


def greedy(tokens: int) -> SamplingSettings:
    return SamplingSettings(temperature=0.0, max_new_tokens=tokens, repetition_penalty=1.0)


async def engine_run(engine: TransformersEngine, ref: Any, tokens: int) -> dict[str, float]:
    """One greedy answer through Engine.stream: wall time, tokens, the engine's own decode rate."""
    request = GenerationRequest(model=ref, prompt=PROMPT, messages=[], settings=greedy(tokens))
    start = time.perf_counter()
    stats = None
    async for event in engine.stream(request):
        if isinstance(event, Finished):
            stats = event.stats
        elif not isinstance(event, TextDelta) and hasattr(event, "key") and event.key.startswith("err"):
            raise RuntimeError(f"engine failed: {event}")
    wall = time.perf_counter() - start
    assert stats is not None, "no Finished event"
    return {"wall_s": wall, "tokens": stats.completion_tokens, "decode_tps": stats.tokens_per_s or 0.0}


def direct_run(model: Any, tokenizer: Any, tokens: int) -> dict[str, float]:
    """The same answer with plain model.generate(): the baseline without streaming, queue or stop checks."""
    import torch

    ids = tokenizer(PROMPT, return_tensors="pt").input_ids.to(model.device)
    sync = torch.cuda.synchronize if ids.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=tokens,
            do_sample=False,
            repetition_penalty=1.0,
            pad_token_id=tokenizer.pad_token_id,
        )
    sync()
    wall = time.perf_counter() - start
    return {"wall_s": wall, "tokens": out.shape[1] - ids.shape[1]}


def feed_cost_us(loaded: Any, tokens: int, repeats: int = 20) -> float:
    """The engine's own work per token without the model: decoding, stop-string check, stop decision, and
    handing the text to an event loop thread. Microseconds per token; steady even on a busy machine."""
    import torch

    from components.engines.transformers_engine import TokenFeed

    tokenizer = loaded.tokenizer
    prompt = tokenizer(PROMPT)["input_ids"]
    answer = (tokenizer(PROMPT * 4, add_special_tokens=False)["input_ids"] * 2)[:tokens]
    loop = asyncio.new_event_loop()
    try:
        start = time.perf_counter()
        for _ in range(repeats):
            feed = TokenFeed(
                tokenizer,
                prompt,
                loaded.eos_ids,
                ("<|im_end|>", "USER:"),
                emit=lambda text, n: loop.call_soon_threadsafe(len, text),
                should_stop=lambda: False,
            )
            ids = torch.tensor([prompt + answer])
            for i in range(len(prompt) + 1, len(prompt) + len(answer) + 1):
                feed(ids[:, :i], None)
                feed.put(ids[:, i - 1 : i])
        elapsed = time.perf_counter() - start
    finally:
        loop.close()
    return 1e6 * elapsed / (repeats * len(answer))


def rate(runs: list[dict[str, float]]) -> float:
    """Median tokens per second over whole answers (prefill included, as a user waits for it)."""
    return statistics.median(r["tokens"] / r["wall_s"] for r in runs)


async def compare(engine: TransformersEngine, ref: Any, tokens: int, runs: int) -> dict[str, Any]:
    """Alternates engine and direct runs on one loaded model so that both see the same machine state."""
    loaded = await engine.loaded(ref)
    # The baseline also runs in a worker thread, as the engine's generate() does: on this 2-core machine
    # generate() in the main thread measured 3-7x slower than in a worker thread (glibc main-arena trimming
    # under load, most likely), which would flatter the engine.
    await engine_run(engine, ref, 8)  # warm-up: first calls allocate and pick kernels
    await asyncio.to_thread(direct_run, loaded.model, loaded.tokenizer, 8)
    engine_runs, direct_runs = [], []
    for _ in range(runs):
        engine_runs.append(await engine_run(engine, ref, tokens))
        direct_runs.append(await asyncio.to_thread(direct_run, loaded.model, loaded.tokenizer, tokens))
    for run in engine_runs + direct_runs:
        assert run["tokens"] == tokens, f"expected {tokens} tokens, got {run['tokens']} (EOS?)"
    engine_tps, direct_tps = rate(engine_runs), rate(direct_runs)
    # Each engine run is paired with the direct run right after it: on shared cores the load drifts, and a
    # pair sees about the same load, so the median of pair ratios is steadier than a ratio of medians.
    pairs = [d["wall_s"] / e["wall_s"] for e, d in zip(engine_runs, direct_runs, strict=True)]
    return {
        "engine_tps": engine_tps,
        "direct_tps": direct_tps,
        "ratio": statistics.median(pairs),
        "feed_us": feed_cost_us(loaded, tokens),
        "engine_decode_tps": statistics.median(r["decode_tps"] for r in engine_runs),
        "params_m": sum(p.numel() for p in loaded.model.parameters()) / 1e6,
        "loaded": loaded,
    }


# ---- CPU ------------------------------------------------------------------------------------------
async def cpu_part(tokens: int, runs: int) -> str:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        # ~50 M parameters: big enough that a token costs real matmul time, small enough for 2 cores.
        folder = build_tiny_llama(
            Path(tmp), hidden_size=512, layers=14, heads=8, intermediate_size=1536, max_positions=2048
        )
        ref = local_model_ref(str(folder), context_length=2048, params_b=0.05, model_id="bench-cpu")
        engine = TransformersEngine(device="cpu")
        result = await compare(engine, ref, tokens, runs)
    verdict = "within" if result["ratio"] >= TARGET_RATIO else "NOT within"
    print(
        f"CPU: {result['params_m']:.0f} M params, {tokens} tokens, greedy, median of {runs}: engine "
        f"{result['engine_tps']:.1f} tok/s, model.generate {result['direct_tps']:.1f} tok/s, ratio "
        f"{result['ratio']:.3f} ({verdict} the 5 % target); engine decode rate "
        f"{result['engine_decode_tps']:.1f} tok/s; engine work per token without the model {result['feed_us']:.0f} µs"
    )
    return "\n".join(
        [
            "### CPU: engine overhead",
            "",
            f"Random-weight Llama, {result['params_m']:.0f} M parameters, fp32, {torch.get_num_threads()} torch "
            f"threads; {tokens} new tokens, greedy, whole answers (prefill included), median of {runs} runs, "
            "engine and plain `model.generate()` alternating on the same loaded model.",
            "",
            "| path | tokens/s |",
            "|---|---|",
            f"| `TransformersEngine.stream` | {result['engine_tps']:.1f} |",
            f"| `model.generate()` | {result['direct_tps']:.1f} |",
            f"| ratio, median of run pairs (target ≥ {TARGET_RATIO}) | {result['ratio']:.3f} ({verdict} 5 %) |",
            "",
            f"The engine's own work per token (decode, stop strings, stop check, hand-over to the event loop), "
            f"timed without the model: {result['feed_us']:.0f} µs, against {1000 / result['direct_tps']:.1f} ms "
            f"per token of `generate()` here ({100 * result['feed_us'] / 1e3 * result['direct_tps'] / 1e3:.2f} %).",
            "",
            f"Engine decode rate after the first token: {result['engine_decode_tps']:.1f} tokens/s. "
            f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end (shared cores: "
            "absolute figures are noisy, the alternating ratio is the figure to read).",
        ]
    )


# ---- GPU ------------------------------------------------------------------------------------------
def seven_b_config(tokenizer: Any) -> Any:
    from transformers import LlamaConfig

    # Llama-2-7B / EM German 7B shapes; vocab of the test tokenizer (the 32 k embedding is read one row
    # per token and would not change decode speed).
    return LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
    )


def bytes_per_token(model: Any) -> int:
    """Bytes a decode step must read: all weights except the input embedding, of which it reads one row."""
    total = int(model.get_memory_footprint(return_buffers=False))
    embed = model.get_input_embeddings().weight
    return total - embed.numel() * embed.element_size()


async def gpu_part(
    tokens: int, runs: int, bandwidth_gbs: float, device: str = "cuda", config_fn: Any = None
) -> str | None:
    """`device` and `config_fn` exist so that this path can be dry-run on a CPU with a small config."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        print("GPU part NOT RUN: CUDA is not available on this machine (torch sees no GPU).")
        return None
    from transformers import AutoTokenizer, LlamaForCausalLM

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"dry run on {device}"
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows: list[str] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        build_tiny_llama(folder / "tok")  # only for its tokenizer
        tokenizer = AutoTokenizer.from_pretrained(folder / "tok")
        tokenizer.save_pretrained(folder / "7b")
        config = (config_fn or seven_b_config)(tokenizer)
        print("building a 7B-shaped Llama with random weights on the GPU ...")
        with torch.device(device):
            net = LlamaForCausalLM._from_config(config, dtype=torch.float16)
        make_readable(net, tokenizer)  # random weights that never pick EOS: every run makes `tokens` tokens
        net.generation_config.eos_token_id = config.eos_token_id
        net.generation_config.pad_token_id = config.pad_token_id
        net.save_pretrained(folder / "7b")
        del net
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        for kind in ("fp16", "int4"):
            cache: ModelCache[Any] = ModelCache(budget_gb=1000.0, unload=unload_model)
            engine = TransformersEngine(cache=cache, device=None if device == "cuda" else device)
            ref = local_model_ref(
                str(folder / "7b"), kind=kind, params_b=6.7, context_length=4096, model_id=f"bench-7b-{kind}"
            )
            try:
                result = await compare(engine, ref, tokens, runs)
            except Exception as exc:  # bitsandbytes missing or failing: report, do not hide fp16
                print(f"GPU {kind}: failed: {exc}")
                rows.append(f"| {kind} | failed: {str(exc)[:80]} | | | | |")
                continue
            per_token = bytes_per_token(result["loaded"].model)
            limit = bandwidth_gbs * 1e9 / per_token
            decode = result["engine_decode_tps"]
            print(
                f"GPU {kind}: engine {result['engine_tps']:.1f} tok/s (decode {decode:.1f}), model.generate "
                f"{result['direct_tps']:.1f} tok/s, ratio {result['ratio']:.3f}; {per_token / 1e9:.2f} GB/token "
                f"-> bandwidth limit {limit:.0f} tok/s, decode at {100 * decode / limit:.0f} % of it"
            )
            rows.append(
                f"| {kind} | {result['engine_tps']:.1f} | {decode:.1f} | {result['direct_tps']:.1f} | "
                f"{per_token / 1e9:.2f} GB → {limit:.0f} | {100 * decode / limit:.0f} % |"
            )
            cache.clear()
            sync()
    return "\n".join(
        [
            "### GPU: 7B-shaped Llama vs memory bandwidth",
            "",
            f"{gpu}; random weights from a 7B Llama config, loaded through the engine (fp16; 4-bit NF4 via "
            f"bitsandbytes, bf16 compute); {tokens} new tokens, greedy, median of {runs}. Bandwidth limit = "
            f"{bandwidth_gbs:.0f} GB/s ÷ bytes read per token (weights without the input embedding).",
            "",
            "| build | engine tok/s | engine decode tok/s | `generate()` tok/s | bytes/token → limit tok/s | "
            "decode / limit |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )


# ---- RESULTS.md -----------------------------------------------------------------------------------
def machine() -> str:
    import torch

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}, torch {torch.__version__}"


def _subsections(body: list[str]) -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {}
    current = ""
    for line in body:
        if line.startswith("### "):
            current = line
        parts.setdefault(current, []).append(line)
    return parts


#: Subsections of "## transformers engine", in order, with what stands there before a first measurement.
SUBSECTIONS: tuple[tuple[str, str], ...] = (
    ("### CPU: engine overhead", "### CPU: engine overhead\n\nNot measured yet."),
    (
        "### GPU: 7B",
        "### GPU\n\nNot measured yet: run `python bench/bench_transformers.py --gpu --record` on a CUDA machine.",
    ),
    ("### CPU: continuous batching", ""),
    (
        "### GPU: continuous batching",
        "### GPU: continuous batching\n\nNot measured: no GPU was lent to the task that built the batching path "
        "(2026-12-01). Run `python bench/bench_transformers.py --gpu-batching --record` on a CUDA machine; the "
        "default on CUDA stays off until it shows batching faster.",
    ),
)


def record(
    cpu: str | None,
    gpu: str | None,
    path: Path = RESULTS,
    batch_cpu: str | None = None,
    batch_gpu: str | None = None,
) -> None:
    """Replaces `## transformers engine` in RESULTS.md; a part not measured now keeps its earlier text."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == f"## {HEADING}"), None)
    end = start
    old: dict[str, list[str]] = {}
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        old = _subsections(lines[start + 1 : end])

    def keep(prefix: str) -> str | None:
        for title, block in old.items():
            if title.startswith(prefix) or (prefix == "### GPU: 7B" and title.strip() == "### GPU"):
                return "\n".join(block).strip("\n")
        return None

    new = dict(zip((prefix for prefix, _ in SUBSECTIONS), (cpu, gpu, batch_cpu, batch_gpu), strict=True))
    body = [
        f"## {HEADING}",
        "",
        "`python bench/bench_transformers.py [--gpu] [--batching] [--gpu-batching] --record` (random weights, "
        "nothing downloaded).",
        "",
    ]
    for prefix, placeholder in SUBSECTIONS:
        part = new[prefix] or keep(prefix) or placeholder
        if part:
            body += [*part.splitlines(), ""]
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", *body]
    else:
        lines[start:end] = body
    path.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")


# ---- continuous batching: many visitors at once -----------------------------------------------------
def visitors_request(ref: Any, tokens: int, index: int) -> GenerationRequest:
    """Visitor `index`'s greedy question (different prompts, as different visitors ask different things)."""
    prompt = chatml(
        "Du bist ein hilfreicher Assistent.", f"Frage {index}: Wie viele Wörter hat ein Buch mit 500 Seiten?"
    )
    return GenerationRequest(model=ref, prompt=prompt, messages=[], settings=greedy(tokens))


async def visitors_round(engine: TransformersEngine, ref: Any, visitors: int, tokens: int) -> dict[str, float]:
    """`visitors` requests at once; aggregate tokens/s over the round, and each visitor's time to its answer."""
    times: list[float] = []
    counts: list[int] = []

    async def one(index: int) -> None:
        start = time.perf_counter()
        stats = None
        async for event in engine.stream(visitors_request(ref, tokens, index)):
            if isinstance(event, Finished):
                stats = event.stats
            elif hasattr(event, "key") and str(event.key).startswith("err"):
                raise RuntimeError(f"engine failed: {event}")
        assert stats is not None and stats.completion_tokens == tokens, stats
        times.append(time.perf_counter() - start)
        counts.append(stats.completion_tokens)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(visitors)))
    wall = time.perf_counter() - start
    return {"tps": sum(counts) / wall, "visitor_s": statistics.median(times), "max_s": max(times), "wall_s": wall}


async def batching_compare(
    net: Any, tokenizer: Any, ref: Any, visitors: list[int], tokens: int, runs: int
) -> list[dict[str, Any]]:
    """The same loaded weights served by two engines: batching forced on, and today's path (=0). For each
    number of visitors the two alternate `runs` times; the ratio is the median of the pairs' ratios."""
    from components.engines.transformers_batching import ENV

    engines: dict[str, TransformersEngine] = {}
    for name, setting in (("batching", "1"), ("single", "0")):
        os.environ[ENV] = setting  # read when the model is registered
        engine = TransformersEngine(cache=ModelCache(budget_gb=1000.0, unload=lambda loaded: None))
        loaded = await engine.adopt(ref, net, tokenizer)
        assert (loaded.batcher is not None) == (name == "batching"), loaded.path
        engines[name] = engine
    os.environ.pop(ENV, None)
    for engine in engines.values():  # warm-up (and the batching loop's start)
        await visitors_round(engine, ref, 2, 8)
    rows = []
    for count in visitors:
        runs_by: dict[str, list[dict[str, float]]] = {"batching": [], "single": []}
        for _ in range(runs):
            for name in ("batching", "single"):
                runs_by[name].append(await visitors_round(engines[name], ref, count, tokens))
        pairs = [b["tps"] / s["tps"] for b, s in zip(runs_by["batching"], runs_by["single"], strict=True)]
        row = {"visitors": count, "ratio": statistics.median(pairs)}
        for name, measured in runs_by.items():
            row[f"{name}_tps"] = statistics.median(r["tps"] for r in measured)
            row[f"{name}_visitor_s"] = statistics.median(r["visitor_s"] for r in measured)
            row[f"{name}_max_s"] = statistics.median(r["max_s"] for r in measured)
        print(
            f"{count:>3} visitors: batching {row['batching_tps']:.1f} tok/s "
            f"(visitor {row['batching_visitor_s']:.2f} s, last {row['batching_max_s']:.2f} s) | "
            f"today's path {row['single_tps']:.1f} tok/s (visitor "
            f"{row['single_visitor_s']:.2f} s, last {row['single_max_s']:.2f} s) | ratio {row['ratio']:.2f}"
        )
        rows.append(row)
    for engine in engines.values():
        for key in engine.cache.keys():  # noqa: SIM118 - ModelCache is not a dict
            item = engine.cache._items[key]
            if item.value.batcher is not None:
                item.value.batcher.close()
    return rows


def batching_table(rows: list[dict[str, Any]], extra: str = "") -> list[str]:
    head = [
        "| visitors | batching tok/s | today's path tok/s | ratio (median of pairs) | time per visitor, batching "
        "(median / last) | time per visitor, today's path (median / last) |" + (" " + extra + " |" if extra else ""),
        "|---|---|---|---|---|---|" + ("---|" if extra else ""),
    ]
    body = []
    for row in rows:
        line = (
            f"| {row['visitors']} | {row['batching_tps']:.1f} | {row['single_tps']:.1f} | {row['ratio']:.2f} | "
            f"{row['batching_visitor_s']:.2f} s / {row['batching_max_s']:.2f} s | "
            f"{row['single_visitor_s']:.2f} s / {row['single_max_s']:.2f} s |"
        )
        if extra:
            line += f" {row.get('extra', '')} |"
        body.append(line)
    return head + body


#: CPU models for the batching part: the issue's tiny one, and the 50 M one of the overhead part (compute-bound).
CPU_BATCH_MODELS: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 256, "layers": 4, "heads": 4, "intermediate_size": 688},
    "50m": {"hidden_size": 512, "layers": 14, "heads": 8, "intermediate_size": 1536},
}


def verdict_line(rows: list[dict[str, Any]]) -> str:
    """Where batching won and lost in this run, in words (ratio > 1: batching gave more tokens/s)."""
    won = [f"{r['visitors']} ({r['ratio']:.2f}x)" for r in rows if r["ratio"] > 1.0]
    lost = [f"{r['visitors']} ({r['ratio']:.2f}x)" for r in rows if r["ratio"] <= 1.0]
    parts = []
    if won:
        parts.append("batching gave more tokens/s at " + ", ".join(won) + " visitors")
    if lost:
        parts.append("fewer at " + ", ".join(lost))
    return ("In this run " + "; ".join(parts) + ".") if parts else ""


async def batching_cpu_part(visitors: list[int], tokens: int, runs: int, models: list[str]) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lines = [
        "### CPU: continuous batching",
        "",
        f"`python bench/bench_transformers.py --batching --visitors {','.join(map(str, visitors))} --batch-tokens "
        f"{tokens} --batch-runs {runs} --batch-models {','.join(models)} --record`. Random-weight Llamas, fp32, "
        f"{torch.get_num_threads()} torch threads; each visitor asks a different question, {tokens} new tokens, "
        "greedy. The same loaded weights behind two engines: `PLAYGROUND_TRANSFORMERS_BATCHING=1` (transformers' "
        "ContinuousBatchingManager) and `=0` (today's path: one request after another, the others queue); the two "
        f"alternate, median of {runs} rounds each. Tokens/s = all visitors' tokens over the round's wall time.",
    ]
    for name in models:
        dims = CPU_BATCH_MODELS[name]
        with tempfile.TemporaryDirectory() as tmp:
            folder = build_tiny_llama(Path(tmp), max_positions=1024, **dims)
            tokenizer = AutoTokenizer.from_pretrained(folder)
            net = AutoModelForCausalLM.from_pretrained(folder).eval()
            ref = local_model_ref(str(folder), context_length=1024, params_b=0.05, model_id=f"bench-batching-{name}")
            print(f"CPU model {name}:")
            rows = await batching_compare(net, tokenizer, ref, visitors, tokens, runs)
            params = sum(p.numel() for p in net.parameters()) / 1e6
        lines += [
            "",
            f"{dims['layers']} layers, hidden {dims['hidden_size']} ({params:.1f} M parameters):",
            "",
            *batching_table(rows),
            "",
            verdict_line(rows),
        ]
    lines += [
        "",
        f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end — shared with other work (six "
        "other sessions on the same 2 cores), so absolute figures are noisy; the ratio of alternating rounds is "
        "the figure to read.",
    ]
    return "\n".join(lines)


async def batching_gpu_part(
    visitors: list[int], tokens: int, runs: int, bandwidth_gbs: float, device: str = "cuda", config_fn: Any = None
) -> str | None:
    """7B-shaped random Llama in fp16, 1/8/32 visitors, batching vs today's path, against the bandwidth limit
    of one stream (a decode step reads all weights once, whatever the batch: batching can pass that limit)."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        print("GPU batching part NOT RUN: CUDA is not available on this machine (torch sees no GPU).")
        return None
    from transformers import AutoTokenizer, LlamaForCausalLM

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"dry run on {device}"
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        build_tiny_llama(Path(tmp) / "tok")  # only for its tokenizer
        tokenizer = AutoTokenizer.from_pretrained(Path(tmp) / "tok")
        config = (config_fn or seven_b_config)(tokenizer)
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        with torch.device(device):
            net = LlamaForCausalLM._from_config(config, dtype=dtype)
        make_readable(net, tokenizer)
        net.generation_config.eos_token_id = config.eos_token_id
        net.generation_config.pad_token_id = config.pad_token_id
        net.eval()
        kind = "fp16" if device.startswith("cuda") else "fp32"  # the engine refuses fp16 without CUDA
        ref = local_model_ref(tmp, kind=kind, params_b=6.7, context_length=4096, model_id="bench-7b-batching")
        rows = await batching_compare(net, tokenizer, ref, visitors, tokens, runs)
        per_token = bytes_per_token(net)
    limit = bandwidth_gbs * 1e9 / per_token
    one = next((row for row in rows if row["visitors"] == 1), None)
    for row in rows:
        vs_one = f", {row['batching_tps'] / one['batching_tps']:.1f}x one visitor" if one else ""
        row["extra"] = f"{row['batching_tps'] / limit:.2f}x{vs_one}"
    eight = next((row for row in rows if row["visitors"] == 8), None)
    verdict = ""
    if one and eight:
        factor = eight["batching_tps"] / one["batching_tps"]
        met = "met" if factor >= 4 else "NOT met"
        verdict = f"8 visitors: {factor:.1f}x the aggregate tokens/s of one (target ≥ 4x: {met})."
        print(verdict)
    return "\n".join(
        [
            "### GPU: continuous batching",
            "",
            f"`python bench/bench_transformers.py --gpu-batching --visitors {','.join(map(str, visitors))} "
            f"--gpu-tokens {tokens} --batch-runs {runs} --record`. "
            f"{gpu}; random weights from a 7B Llama config in fp16; {tokens} new tokens per visitor, greedy, median "
            f"of {runs} alternating rounds. One stream's limit = {bandwidth_gbs:.0f} GB/s ÷ {per_token / 1e9:.2f} GB "
            f"read per token = {limit:.0f} tokens/s.",
            "",
            *batching_table(rows, extra="batching tok/s vs one stream's limit"),
            "",
            verdict,
        ]
    )


async def main_async(args: argparse.Namespace) -> int:
    visitors = [int(v) for v in args.visitors.split(",")] if args.visitors else None
    cpu = gpu = batch_cpu = batch_gpu = None
    if args.batching:
        models = [m.strip() for m in args.batch_models.split(",") if m.strip()]
        batch_cpu = await batching_cpu_part(visitors or [1, 4, 16], args.batch_tokens, args.batch_runs, models)
    elif args.gpu_batching:
        batch_gpu = await batching_gpu_part(
            visitors or [1, 8, 32], args.gpu_tokens, args.batch_runs, args.bandwidth_gbs
        )
    elif args.gpu:
        gpu = await gpu_part(args.gpu_tokens, args.runs, args.bandwidth_gbs)
    else:
        cpu = await cpu_part(args.tokens, args.runs)
    measured = cpu or gpu or batch_cpu or batch_gpu
    if args.record and measured:
        record(cpu, gpu, batch_cpu=batch_cpu, batch_gpu=batch_gpu)
        print(f"recorded in {RESULTS.relative_to(ROOT)}")
    return 0 if measured else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per CPU answer (default 128)")
    parser.add_argument("--gpu-tokens", type=int, default=256, help="new tokens per GPU answer (default 256)")
    parser.add_argument("--runs", type=int, default=5, help="answers per path (default 5)")
    parser.add_argument("--gpu", action="store_true", help="run the GPU part instead of the CPU part")
    parser.add_argument("--batching", action="store_true", help="CPU: many visitors, batching vs today's path")
    parser.add_argument("--gpu-batching", action="store_true", help="GPU: 7B-shaped fp16, batching vs today's path")
    parser.add_argument("--visitors", default="", help="visitors at once, comma-separated (1,4,16; GPU 1,8,32)")
    parser.add_argument("--batch-tokens", type=int, default=64, help="new tokens per visitor on the CPU (default 64)")
    parser.add_argument(
        "--batch-models", default="tiny,50m", help=f"CPU models for --batching: {','.join(CPU_BATCH_MODELS)}"
    )
    parser.add_argument("--batch-runs", type=int, default=3, help="alternating rounds per visitor count (default 3)")
    parser.add_argument(
        "--bandwidth-gbs", type=float, default=3350.0, help="GPU memory bandwidth in GB/s (default 3350, H100 SXM)"
    )
    parser.add_argument("--record", action="store_true", help="write the figures into bench/RESULTS.md")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
