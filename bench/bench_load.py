"""Many visitors at once: N concurrent /chat streams through the app against the same N streams sent straight
to the TGI stand-in, in one run.

Each visitor streams 100 tokens at 50 tokens/s from the stand-in (tests/tgi_standin.py, in its own process).
The direct baseline sends the same N requests (the exact prompt and parameters the app sends) straight to
the stand-in's /generate_stream, one HTTP connection per visitor; then the same N visitors ask through the
real app's `/chat` API (`python app.py`, in its own process) over Gradio's queue protocol, one session and
connection pool each. Both sides are read by the same lean asyncio client in this process. Targets: 64
visitors through the app take at most 1.3x the direct time (first request to last answer); 256 visitors
are all served without an error.

Run from the project root:  python bench/bench_load.py [--users 64,256] [--rounds 3] [--record] [--profile]
`--rounds` alternates direct and app runs that many times per visitor count (the cores are shared: the
spread of the ratios is part of the result). `--record` writes the figures into bench/RESULTS.md under
"## Many users (load)"; `--profile` samples the app process with py-spy during the app runs of the first
visitor count and prints where its time goes. With BENCH_DUMP=file.json the raw per-visitor results are
written there.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(1, str(ROOT))

from bench_startup import app_env, free_port, machine, record_section  # noqa: E402

MODEL = "em-german-leo-mistral/tgi"
TOKENS = 100
TOKENS_PER_S = 50.0
TARGET_RATIO = 1.3
PROMPT_MESSAGE = "Erzähl mir etwas."
FINDINGS = """What changed for this figure (issue 12), and what the runs showed. The table above was measured on a quiet
machine (load average 0.6–0.9, nothing else running); the figures of the earlier runs came from the same
2 cores shared with six other sessions (load average 2.6–18), which decided most of their spread:

| code | 64 visitors, app / direct, per round | load average |
|---|---|---|
| before (commit ff1c196) | 1.51, 1.88 | 7.1–7.4 |
| before (commit ff1c196) | 2.41, 2.95, 2.84 | 10.8–11.0 |
| branch i12b: own TGI stream parsing, no /tokenize for short prompts, adaptive pacing | 1.27, 1.27, 1.62 | 4.8–5.9 |
| same | 1.49, 1.29 | 2.6–3.2 |
| same, pacing step 8 streams | 1.65, 1.48, 1.52 | 2.9–4.0 |
| merged (huggingface_hub's client, adaptive pacing, /tokenize per answer), quiet machine | 1.22, 1.24 | 0.7–0.8 |
| merged + no /tokenize for prompts that surely fit (the table above), quiet machine | 1.17, 1.17, 1.24 | 0.6–0.7 |
| same, with `--profile` | 1.21, 1.19 | 0.9 |

So on a machine of its own the app meets the target (≤ 1.3) in every round; with other work on its 2 cores it
does not reliably (the stand-in, the app and the load generator then compete for what is left). 256 visitors
were all served, without an error, in every run (2.3–2.7x the direct time on the quiet machine: their joins
queue behind each other on the app's one event loop, the median first token comes 5.5 s after the request).

The TGI engine stays on huggingface_hub's AsyncInferenceClient, as the product asks: a reader of its own
(branch i12b: one `json.loads` per event, the events of one read as one TextDelta) saved the typed parsing
(`parse_obj_as_instance`, 22–34 % of the app's busy time under load before pacing), but was not merged. What the
app does now, per change:

1. `/tokenize` is skipped when the prompt fits the server's limits even at one token per UTF-8 byte (plus
   8): byte-level and byte-fallback tokenizers never make more; the server's own count comes back in the
   last event. A long prompt is still counted before it is sent. (1.23 → 1.17–1.21 at 64 visitors.)
2. Adaptive pacing (components/core/streaming.py): beyond 8 streams in the process the pause between a
   stream's updates grows with their number, up to 250 ms; the first token and the end of a stream are
   never held back. 64 visitors get 9 updates per 100-token answer instead of 32.
3. Lean sessions (components/serving/launch.py): a new session costs 14 KB and 0.03 ms instead of 425 KB and
   40 ms (Gradio copies every component's config per session); this is a cost of arriving, so the bench's
   warm sessions do not show it.

With `--profile` (py-spy, 64 visitors, quiet machine) the app's event loop is idle (`run`, waiting) 46 % of
the time; no frame of the app's own code or of huggingface_hub takes more than 1.2 %. Tried and dropped
earlier: pausing the engine's reads until just before the next update (more tokens per read) — no
measurable CPU saving, and it held back each stream's end."""
HISTORY = """Earlier work, measured against one visitor's time through the app (not yet the direct baseline):
what got 64 visitors from 2.3–2.9x (2026-11-22) to 1.22–1.37x one visitor's time (2026-11-25); each step
measured with this script, 2–3 runs each, same machine:

| change | ratio | first token (median) |
|---|---|---|
| before (Gradio's 40 job slots, default client) | 2.33–2.90 | 3.7 s |
| `launch(max_threads=256)`, matplotlib miss cached, updates paced | 1.69–1.90 | 3.1–3.5 s |
| the load generator's own bottleneck removed (one HTTP pool per visitor, as browsers have) | 1.75–1.78 | 3.2–3.5 s |
| `gc.freeze()` after start (collections stop walking Gradio's heap) | 1.62–1.69 | 3.2 s |
| uvloop + httptools (uvicorn picks them up) | 1.46–1.62 | 2.8–3.0 s |
| `queue(status_update_rate=10)` | 1.31–1.55 | 0.7–1.2 s |
| updates paced to 50 ms instead of 40 ms (default now) | 1.22–1.37 | 0.55–0.85 s |

Where the time went:

1. **Gradio runs at most `max_threads` events at once (40 by default), async ones included**, even
   with `concurrency_limit=None`: 24 of 64 users waited for a whole answer. Fix: `max_threads=256`.
2. **Queue estimates.** With `status_update_rate="auto"` Gradio sends every queued event an estimate
   whenever one starts: 64 visitors arriving together received 1 059–1 120 estimation messages, 17 per
   session, each delivered in its own turns of the busy event loop ahead of `process_starts`; the
   app's handler had its first text at 0.76 s (timestamps from the app) while clients read it at
   1.5–3.4 s. With `status_update_rate=10` each session gets 1 estimate; the first token arrives at
   0.6–1.2 s. Nothing is lost: no event waits in Gradio's queue (no concurrency limit), and a local
   model's own queue position comes from the engine.
3. **CPU per token in the app's one event loop**: the app uses a full core for the whole run (app CPU
   ≈ wall time). huggingface_hub's stream parsing (42 µs per event, `_format_text_generation_stream_output`)
   plus httpx2's line splitting ≈ 20–25 %, Gradio's per-update work and SSE ≈ 20 %, asyncio itself the
   rest; `typing.get_type_hints` on string annotations, evaluated by Gradio for every call and every
   generator step, was 6–13 % (now resolved once at build: `resolve_annotations`). uvloop + httptools
   and `gc.freeze()` each took 0.3–0.5 CPU-seconds off a run.
4. **The load generator**: 64 sessions sharing one httpx pool spent half the client's time in
   httpcore's pool bookkeeping (O(connections) per request); the client opened its SSE streams late
   and the app looked slower than it was. Each session now has its own pool.

The stand-in, the app and the clients share 2 cores, so every figure includes the others' CPU."""
T = TypeVar("T")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], ready_url: str) -> Any:
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(ready_url, proc)
            yield proc
        except Exception:
            log.seek(0)
            sys.stderr.write(log.read().decode("utf-8", "replace")[-3000:])
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)


def one_stream(client: Any, start_gate: threading.Barrier | None) -> dict[str, float]:
    """One user's /chat request; times the first token and the end, as the caller sees them."""
    if start_gate is not None:
        start_gate.wait(120)
    start = time.monotonic()
    job = client.submit(message="Erzähl mir etwas.", model=MODEL, max_new_tokens=TOKENS, api_name="/chat")
    first = None
    updates = 0
    for text, _info in job:
        updates += 1
        if first is None and text:
            first = time.monotonic()
    text, info = job.result()
    end = time.monotonic()
    if info.get("error"):
        raise RuntimeError(info["error"])
    tokens = info["stats"]["completion_tokens"]
    if tokens != TOKENS:
        raise RuntimeError(f"expected {TOKENS} tokens, got {tokens}")
    return {"start": start, "ttft": (first or end) - start, "total": end - start, "updates": updates, "end": end}


# ---- a lean load generator: Gradio's queue protocol over one asyncio loop ---------------------------
class RawChat:
    """`/chat` through Gradio's own queue protocol (POST queue/join, SSE queue/data), one loop, no threads.

    gradio_client runs a thread per session, a new HTTP connection per call and a deep copy per
    streamed update; 64 of those in one process on 2 cores cost more CPU than the app serving them.
    This client costs little, so the figure measures the app, not the load generator.
    """

    def __init__(self, url: str, users: int, fn_config: dict[str, Any] | None = None) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(120.0),
            limits=httpx.Limits(max_connections=4 * users + 8, max_keepalive_connections=4 * users),
        )
        config = fn_config if fn_config is not None else httpx.get(self.url + "/config", timeout=30).json()
        self.config = config
        self.fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")
        from components.vocabulary.settings import SETTING_NAMES

        # /chat's parameters in order (components/api/chat_models.py, with_settings): the settings' order is theirs
        self.params = ["message", "model", "system_prompt", "history", *SETTING_NAMES, "lang"]

    async def chat(self, session: str, **kwargs: Any) -> dict[str, float]:
        from gradio_client.utils import apply_diff

        data = [kwargs.get(name) for name in self.params]
        data[self.params.index("lang")] = kwargs.get("lang", "de")
        start = time.monotonic()
        join = await self.http.post(
            self.url + "/gradio_api/queue/join",
            json={"data": data, "fn_index": self.fn_index, "session_hash": session, "trigger_id": None},
        )
        join.raise_for_status()
        if os.environ.get("BENCH_DUMP"):
            self.kinds = getattr(self, "kinds", [])
            self.kinds.append((session, "joined", time.monotonic()))
        event_id = join.json()["event_id"]
        output: list[Any] | None = None
        first = last = None
        text = ""
        updates = 0
        async with self.http.stream(
            "GET", self.url + "/gradio_api/queue/data", params={"session_hash": session}
        ) as response:
            if os.environ.get("BENCH_DUMP"):
                self.kinds = getattr(self, "kinds", [])
                self.kinds.append((session, "sse_open", time.monotonic()))
            buffer = ""
            chunks = response.aiter_text()
            try:
                async for chunk in chunks:
                    buffer += chunk
                    while "\n\n" in buffer:
                        line, buffer = buffer.split("\n\n", 1)
                        if not line.startswith("data:"):
                            continue
                        msg = json.loads(line[5:])
                        if msg.get("event_id") not in (None, event_id):
                            continue
                        kind = msg.get("msg")
                        if os.environ.get("BENCH_DUMP"):
                            self.kinds = getattr(self, "kinds", [])
                            self.kinds.append((session, kind, time.monotonic()))
                        if kind == "process_generating":
                            updates += 1
                            new = msg["output"]["data"]
                            output = (
                                new if output is None else [apply_diff(o, d) for o, d in zip(output, new, strict=True)]
                            )
                            if output and output[0][0] and output[0][0] != text:  # one output: (text, info)
                                last, text = time.monotonic(), output[0][0]
                                first = first or last
                        elif kind == "process_completed":
                            if not msg.get("success", True):
                                raise RuntimeError(msg.get("output", {}).get("error") or "the request failed")
                            output = msg["output"]["data"]
                            end = time.monotonic()
                            _text, info = output[0]
                            if info.get("error"):
                                raise RuntimeError(info["error"])
                            tokens = info["stats"]["completion_tokens"]
                            if tokens != kwargs["max_new_tokens"]:
                                raise RuntimeError(f"expected {kwargs['max_new_tokens']} tokens, got {tokens}")
                            return {"start": start, "ttft": (first or end) - start, "total": end - start,
                                    "updates": updates, "end": end, "first_abs": first or end,
                                    "last_abs": last or end, "tokens": tokens,
                                    "server_ttft": info["stats"].get("ttft_s") or 0.0}  # fmt: skip
            finally:
                await chunks.aclose()  # leaving early must not leave the generator to the GC
        raise RuntimeError("the stream ended without process_completed")

    async def aclose(self) -> None:
        await self.http.aclose()


def warm_up(client: Any) -> None:
    client.predict(message="Hi", model=MODEL, max_new_tokens=1, api_name="/chat")


def stats(results: list[Any]) -> dict[str, Any]:
    """Wall time (first request to last answer) and per-visitor figures of one all-at-once run."""
    ok = [r for r in results if isinstance(r, dict)]
    errors = [r for r in results if not isinstance(r, dict)]
    if not ok:
        first_error = repr(errors[0])[:300] if errors else ""
        return {"wall_s": float("nan"), "p50_s": 0.0, "max_s": 0.0, "ttft_p50_s": 0.0, "ttft_max_s": 0.0,
                "updates_p50": 0, "errors": len(errors), "first_error": first_error}  # fmt: skip
    return {
        "wall_s": max(r["end"] for r in ok) - min(r["start"] for r in ok),
        "p50_s": statistics.median(r["total"] for r in ok),
        "max_s": max(r["total"] for r in ok),
        "ttft_p50_s": statistics.median(r["ttft"] for r in ok),
        "ttft_max_s": max(r["ttft"] for r in ok),
        "updates_p50": statistics.median(r["updates"] for r in ok),
        "errors": len(errors),
        "first_error": repr(errors[0])[:300] if errors else "",
    }


def run(
    users_list: list[int],
    rounds: int,
    profile: bool,
    warm: bool = True,
    client_kind: str = "raw",
    replicas: int = 1,
) -> dict[str, Any]:
    """`replicas` stand-ins serving the same model (TGI_URL lists them all: one build, its replicas); the direct
    baseline spreads its streams over them evenly."""
    tgi_ports, app_port = [free_port() for _ in range(replicas)], free_port()
    most = max(users_list)
    tgi_urls = [f"http://127.0.0.1:{port}" for port in tgi_ports]
    env = app_env(app_port, {"TGI_URL": ",".join(tgi_urls), "PLAYGROUND_LOG_LEVEL": "WARNING"})
    tgi_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out: dict[str, Any] = {"client": client_kind, "warm": warm, "rounds": rounds, "by_users": {}, "replicas": replicas}
    with contextlib.ExitStack() as servers:
        tgi_procs = [
            servers.enter_context(
                process(
                    [
                        sys.executable,
                        "tests/tgi_standin.py",
                        "--port",
                        str(port),
                        "--tokens-per-s",
                        str(TOKENS_PER_S),
                        "--endless",
                        "--max-concurrent",
                        str(4 * most),
                    ],
                    tgi_env,
                    f"{tgi_url}/health",
                )
            )
            for port, tgi_url in zip(tgi_ports, tgi_urls, strict=True)
        ]
        app_proc = servers.enter_context(process([sys.executable, "app.py"], env, f"http://127.0.0.1:{app_port}/"))
        url = f"http://127.0.0.1:{app_port}"
        load = RawLoad(url, most) if client_kind == "raw" else ClientLoad(url, most)
        loop = getattr(load, "loop", None) or asyncio.new_event_loop()
        direct = DirectLoad(loop, tgi_urls, most)
        try:
            load.single()  # warm-up: first-request costs (imports, /info) are not load
            singles = [load.single() for _ in range(3)]
            if warm:
                # every visitor has the page open already (a session made on its first request)
                load.warm()
            app_ps, me = psutil.Process(app_proc.pid), psutil.Process()
            tgi_ps = [psutil.Process(p.pid) for p in tgi_procs]
            out["load_before"] = os.getloadavg()[0]
            dumps: dict[str, Any] = {}
            for i, users in enumerate(users_list):
                spy = start_profiler(app_proc.pid) if profile and i == 0 else None
                rows = []
                for r in range(rounds):
                    subset = DirectSubset(direct, users)
                    d = stats(subset.all_at_once())
                    cpu_before = [sum(p.cpu_times()[:2]) for p in (app_ps, *tgi_ps, me)]
                    load_at = os.getloadavg()[0]
                    results = load.all_at_once(users)
                    used = [sum(p.cpu_times()[:2]) - b for p, b in zip((app_ps, *tgi_ps, me), cpu_before, strict=True)]
                    cpu = [used[0], sum(used[1:-1]), used[-1]]
                    a = stats(results)
                    rows.append({"direct": d, "app": a, "ratio": a["wall_s"] / d["wall_s"], "load": load_at,
                                 "cpu_app_s": cpu[0], "cpu_standin_s": cpu[1], "cpu_clients_s": cpu[2]})  # fmt: skip
                    dumps[f"{users}-{r}"] = [x if isinstance(x, dict) else repr(x) for x in results]
                    print(f"  {users} visitors, round {r + 1}: direct {d['wall_s']:.2f} s, app {a['wall_s']:.2f} s "
                          f"-> {a['wall_s'] / d['wall_s']:.2f}x; errors direct {d['errors']}, app {a['errors']}; "
                          f"load {load_at:.1f}; CPU s app {cpu[0]:.1f}, stand-in {cpu[1]:.1f}, "
                          f"client {cpu[2]:.1f}", flush=True)  # fmt: skip
                if spy is not None:
                    spy.send_signal(2)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        spy.wait(30)
                out["by_users"][users] = rows
            if os.environ.get("BENCH_DUMP"):
                kinds = [k for c in getattr(load, "chats", []) for k in getattr(c, "kinds", [])]
                Path(os.environ["BENCH_DUMP"]).write_text(json.dumps({"results": dumps, "kinds": kinds}))
        finally:
            direct.close()
            load.close()
    out["single_s"] = statistics.median(s["total"] for s in singles)
    out["single_ttft_s"] = statistics.median(s["ttft"] for s in singles)
    return out


class DirectSubset:
    """The first `users` of a DirectLoad."""

    def __init__(self, direct: DirectLoad, users: int) -> None:
        self.direct = direct
        self.users = users

    def all_at_once(self) -> list[Any]:
        streams = self.direct.streams[: self.users]
        return self.direct.loop.run_until_complete(gather_all(s.generate() for s in streams))


def start_profiler(pid: int) -> subprocess.Popen[bytes] | None:
    if not shutil.which("py-spy"):
        print("py-spy is not installed (pip install py-spy): no profile")
        return None
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "1000",
         "--output", str(out / "load-profile.txt"), "--duration", "120", "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)
    return spy


async def gather(coros: Iterable[Awaitable[T]]) -> list[T]:
    return list(await asyncio.gather(*coros))


async def gather_all(coros: Iterable[Awaitable[T]]) -> list[T | BaseException]:
    """Every result, a failure as its exception: one visitor's error must not hide the others'."""
    return list(await asyncio.gather(*coros, return_exceptions=True))


class RawLoad:
    """The users as RawChat sessions on one event loop."""

    def __init__(self, url: str, users: int) -> None:
        self.users = users
        self.loop = asyncio.new_event_loop()
        # one HTTP client (connection pool) per visitor, as each browser has its own: a single pool shared
        # by 64 streams costs the client O(connections) per request in httpcore's pool bookkeeping, which
        # made the load generator, not the app, the bottleneck (first texts read seconds late)
        self.chat = RawChat(url, 2)
        self.chats = [RawChat(url, 2, self.chat.config) for _ in range(users)]
        self.sessions = [uuid.uuid4().hex[:11] for _ in range(users)]
        self.kwargs = {"message": PROMPT_MESSAGE, "model": MODEL, "max_new_tokens": TOKENS}

    def single(self) -> dict[str, float]:
        return self.loop.run_until_complete(self.chat.chat(self.sessions[0], **self.kwargs))

    def warm(self) -> None:
        hello = {"message": "Hi", "model": MODEL, "max_new_tokens": 1}
        self.loop.run_until_complete(gather(c.chat(s, **hello) for c, s in zip(self.chats, self.sessions, strict=True)))

    def all_at_once(self, users: int | None = None) -> list[Any]:
        """The first `users` visitors at once; a failed visitor is its exception in the list."""
        pairs = list(zip(self.chats, self.sessions, strict=True))[: users or len(self.chats)]
        return self.loop.run_until_complete(gather_all(c.chat(s, **self.kwargs) for c, s in pairs))

    def close(self) -> None:
        for chat in (self.chat, *self.chats):
            self.loop.run_until_complete(chat.aclose())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


class DirectStream:
    """One visitor's request straight to the stand-in's /generate_stream (TGI's SSE), on its own connection.

    The body is what the app's TGI engine sends for the same /chat call (prompt and parameters from
    Playground.prepare and tgi_parameters), so the baseline differs from the app only by the app."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        import httpx

        self.url = url.rstrip("/") + "/generate_stream"
        self.body = body
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=httpx.Limits(max_connections=4))

    async def generate(self, max_new_tokens: int | None = None) -> dict[str, float]:
        body = self.body
        if max_new_tokens is not None:
            body = {**body, "parameters": {**body["parameters"], "max_new_tokens": max_new_tokens}}
        expected = body["parameters"]["max_new_tokens"]
        start = time.monotonic()
        first = None
        tokens = 0
        async with self.http.stream("POST", self.url, json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if "error" in event:
                    raise RuntimeError(event["error"])
                tokens += 1
                if first is None and event.get("token", {}).get("text"):
                    first = time.monotonic()
                if event.get("details") is not None or event.get("generated_text") is not None:
                    break
        end = time.monotonic()
        if tokens != expected:
            raise RuntimeError(f"expected {expected} tokens, got {tokens}")
        return {"start": start, "ttft": (first or end) - start, "total": end - start, "end": end, "updates": tokens}

    async def aclose(self) -> None:
        await self.http.aclose()


def direct_body(message: str, max_new_tokens: int, url: str) -> dict[str, Any]:
    """The /generate_stream body the app's TGI engine sends for `/chat(message, MODEL, max_new_tokens)`."""
    from components.core.service import Playground
    from components.engines.tgi import tgi_parameters
    from components.serving.endpoints import register_env_endpoints
    from components.vocabulary.catalog import load_catalog

    os.environ["TGI_URL"] = url  # the stand-in says which model it serves: the catalog then has MODEL
    catalog = load_catalog()
    register_env_endpoints(catalog)
    prepared = Playground(catalog).prepare(MODEL, message, max_new_tokens=max_new_tokens)
    params = {k: v for k, v in tgi_parameters(prepared.request.settings, None).items() if v is not None}
    return {"inputs": prepared.raw_prompt, "parameters": {**params, "details": True}, "stream": True}


class DirectLoad:
    """The visitors as DirectStreams on `loop`: each makes one request first (a warm connection, as the app's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, urls: list[str], users: int) -> None:
        self.loop = loop
        body = direct_body(PROMPT_MESSAGE, TOKENS, urls[0])
        # visitor i straight to server i mod n: the same streams, spread evenly over the replicas
        self.streams = [DirectStream(urls[i % len(urls)], body) for i in range(users)]
        self.loop.run_until_complete(gather(s.generate(1) for s in self.streams))

    def all_at_once(self) -> list[Any]:
        return self.loop.run_until_complete(gather_all(s.generate() for s in self.streams))

    def close(self) -> None:
        for stream in self.streams:
            self.loop.run_until_complete(stream.aclose())


class ClientLoad:
    """The users as gradio_client sessions, a thread each (what most API callers use)."""

    def __init__(self, url: str, users: int) -> None:
        from gradio_client import Client

        # 60 s per HTTP call: the default (5 s) refuses a queue join that waits behind 63 others
        kwargs = {"verbose": False, "httpx_kwargs": {"timeout": 60}}
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            self.clients = list(pool.map(lambda _: Client(url, **kwargs), range(users)))

    def single(self) -> dict[str, float]:
        return one_stream(self.clients[0], None)

    def warm(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(warm_up, self.clients))

    def all_at_once(self, users: int | None = None) -> list[Any]:
        clients = self.clients[: users or len(self.clients)]
        gate = threading.Barrier(len(clients))

        def one(client: Any) -> Any:
            try:
                return one_stream(client, gate)
            except Exception as exc:  # counted, not raised: one failure must not hide the others
                return exc

        with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
            return list(pool.map(one, clients))

    def close(self) -> None:
        for c in self.clients:
            with contextlib.suppress(Exception):
                c.close()


def summarize_profile(path: Path, top: int = 25) -> str:
    """py-spy's raw (collapsed stacks) output -> the functions most often on top of the app's stacks."""
    if not path.exists():
        return "(no profile written)"
    self_counts: dict[str, int] = {}
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf = frames[-1] if frames else "?"
        self_counts[leaf] = self_counts.get(leaf, 0) + n
    rows = sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]
    return "\n".join(f"{100 * n / max(total, 1):5.1f} %  {frame}" for frame, n in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="64,256", help="visitor counts, comma-separated (default 64,256)")
    parser.add_argument("--rounds", type=int, default=3, help="direct/app pairs per visitor count (default 3)")
    parser.add_argument("--record", action="store_true", help="write the figures into bench/RESULTS.md")
    parser.add_argument("--profile", action="store_true", help="sample the app with py-spy during the first count")
    parser.add_argument("--cold", action="store_true", help="sessions make their first request in the timed run")
    parser.add_argument("--replicas", type=int, default=1, help="stand-ins serving the model (replicas of one build)")
    parser.add_argument(
        "--client",
        choices=("raw", "gradio_client"),
        default="raw",
        help="raw: Gradio's queue protocol on one asyncio loop (default); gradio_client: a thread per session",
    )
    args = parser.parse_args()
    users_list = [int(u) for u in str(args.users).split(",") if u.strip()]
    r = run(
        users_list,
        max(1, args.rounds),
        args.profile,
        warm=not args.cold,
        client_kind=args.client,
        replicas=args.replicas,
    )
    print(f"one visitor through the app: {r['single_s']:.2f} s for {TOKENS} tokens "
          f"(first token {r['single_ttft_s'] * 1000:.0f} ms)")  # fmt: skip
    verdicts = {}
    for users, rows in r["by_users"].items():
        ratios = [row["ratio"] for row in rows]
        errors = sum(row["app"]["errors"] + row["direct"]["errors"] for row in rows)
        median = statistics.median(ratios)
        verdicts[users] = (median <= TARGET_RATIO, errors == 0)
        print(f"{users} visitors: app / direct ratio median {median:.2f} (min {min(ratios):.2f}, "
              f"max {max(ratios):.2f}) over {len(rows)} rounds; errors {errors}")  # fmt: skip
        for row in rows:
            if row["app"]["errors"]:
                print(f"  first app error: {row['app']['first_error']}")
    if args.profile:
        print("\nwhere the app's time goes (self time, top frames):")
        print(summarize_profile(ROOT / "bench" / "out" / "load-profile.txt"))
    ok_64 = verdicts.get(64, (True, True))
    ok_256 = verdicts.get(256, (True, True))
    met = ok_64[0] and ok_64[1] and ok_256[1]
    if args.record:
        record(r)
        print(f"recorded in {(ROOT / 'bench' / 'RESULTS.md').relative_to(ROOT)}")
    return 0 if met else 1


def record(r: dict[str, Any]) -> None:
    lines = []
    for users, rows in r["by_users"].items():
        for i, row in enumerate(rows, 1):
            d, a = row["direct"], row["app"]
            cpu = f"{row['cpu_app_s']:.1f} / {row['cpu_standin_s']:.1f} / {row['cpu_clients_s']:.1f}"
            lines.append(
                f"| {users} | {i} | {d['wall_s']:.2f} s | {a['wall_s']:.2f} s | **{row['ratio']:.2f}** | "
                f"{a['ttft_p50_s'] * 1000:.0f} / {a['ttft_max_s'] * 1000:.0f} ms | {a['updates_p50']:.0f} | "
                f"{a['errors']} / {d['errors']} | {cpu} | {row['load']:.1f} |"
            )
    summary = []
    for users, rows in r["by_users"].items():
        ratios = [row["ratio"] for row in rows]
        errors = sum(row["app"]["errors"] for row in rows)
        target = f"target ≤ {TARGET_RATIO}" if users == 64 else "target: every visitor served"
        summary.append(
            f"- **{users} visitors**: app / direct median **{statistics.median(ratios):.2f}** "
            f"(spread {min(ratios):.2f}–{max(ratios):.2f}, {len(rows)} rounds), {errors} failed answers ({target})"
        )
    sessions = "warm (each had made one request before)" if r["warm"] else "cold (first request in the run)"
    counts = ",".join(str(u) for u in r["by_users"])
    header = (
        "| visitors | round | direct | app | app / direct | first token via app, median / max "
        "| updates per stream | failed app / direct | CPU s app / stand-in / client | load average |"
    )
    if r.get("replicas", 1) > 1:
        record_fleet(r, counts, sessions, summary, header, lines)
        return
    body = f"""Reproduce: `python bench/bench_load.py --users {counts} --rounds {r["rounds"]} --record`
({machine()}; the stand-in, the app and the load generator share these cores; sessions {sessions}; load
average before the run {r["load_before"]:.1f}).

Each round sends N requests straight to the stand-in (direct: the exact prompt and parameters the app's TGI
engine sends, one connection per visitor), then the same N visitors through the app's `/chat`; both are
read by the same asyncio client, {TOKENS} tokens each at {TOKENS_PER_S:.0f} tokens/s (ideal wall 2.0 s). One
visitor alone through the app: {r["single_s"]:.2f} s (first token {r["single_ttft_s"] * 1000:.0f} ms).

{chr(10).join(summary)}

{header}
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}

{FINDINGS}

{HISTORY}"""
    record_section("Many users (load)", body)


def record_fleet(
    r: dict[str, Any], counts: str, sessions: str, summary: list[str], header: str, lines: list[str]
) -> None:
    n = r["replicas"]
    body = f"""Reproduce: `python bench/bench_load.py --users {counts} --rounds {r["rounds"]} --replicas {n} --record`
({machine()}; {n} stand-ins, the app and the load generator share these cores; sessions {sessions}; load average
before the run {r["load_before"]:.1f}).

`TGI_URL` lists {n} TGI stand-ins that report the same model: one build (`{MODEL}`) with {n} replicas; each request
goes to the replica with the fewest open streams (components/engines/fleet.py). Each round sends N requests straight
to the stand-ins (direct: visitor i to stand-in i mod {n}, the exact prompt and parameters the app's TGI engine sends),
then the same N visitors through the app's `/chat`; {TOKENS} tokens each at {TOKENS_PER_S:.0f} tokens/s (ideal wall
2.0 s). One visitor alone through the app: {r["single_s"]:.2f} s (first token {r["single_ttft_s"] * 1000:.0f} ms).
The CPU column's stand-in figure is all stand-ins together.

{chr(10).join(summary)}

{header}
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}"""
    record_section(f"Fleet: {counts} visitors through {n} replicas (load)", body)


if __name__ == "__main__":
    raise SystemExit(main())
