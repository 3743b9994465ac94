"""Grammar compiles in a separate worker process, with a time and a memory bound, so a crash stays there.

Before a local engine (llama.cpp, transformers + xgrammar) compiles a visitor's JSON schema in the app's own
process, the same library compiles it here first, in one long-lived child process (a fresh interpreter, not a fork:
no threads or model memory are inherited) under RLIMIT_AS (what a compile may add to the
imported libraries: PLAYGROUND_GRAMMAR_MEMORY_MB, default 1024) and a
deadline (PLAYGROUND_GRAMMAR_TIMEOUT_S, default 10). A native crash (SIGSEGV, SIGBUS, abort) or an
out-of-memory kills only the child: the schema is refused with a message and the next compile starts a new
child. A compile past its deadline kills the child too. Results are cached per (library, schema), so a schema
is compiled here once; bench/RESULTS.md ("Grammar worker") has what a compile costs with and without it.

Libraries:
- "llama.cpp": xllamacpp's `json_schema_to_grammar` (llama.cpp's converter; builds with llguidance wrap the
  schema for llguidance instead, which then compiles it lazily while sampling);
- "xgrammar": `Grammar.from_json_schema` and `GrammarCompiler.compile_grammar` against a small byte-level
  vocabulary (the structure of the compile, without needing the model's tokenizer in the child).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from components.logs.output_capture import MAX_LINE_BYTES, log_native_line

log = logging.getLogger(__name__)

#: Which library compiles schemas for which local engine kind; remote servers compile in their own process.
LIBRARY_FOR_ENGINE = {"llama_cpp": "llama.cpp", "transformers": "xgrammar"}
CACHE_SIZE = 256
_MODULES = {"llama.cpp": "xllamacpp", "xgrammar": "xgrammar"}
#: How long the worker may take to import its libraries when it starts.
STARTUP_TIMEOUT_S = 120.0


def timeout_s() -> float:
    try:
        return float(os.environ.get("PLAYGROUND_GRAMMAR_TIMEOUT_S", "10"))
    except ValueError:
        return 10.0


def memory_mb() -> int:
    try:
        return int(os.environ.get("PLAYGROUND_GRAMMAR_MEMORY_MB", "1024"))
    except ValueError:
        return 1024


class GrammarRefused(Exception):
    """The worker refused a schema: `key` is a message key (err_schema_compile_*) with its `params`."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(f"{key}: {params}")
        self.key = key
        self.params = params


# ---- the child --------------------------------------------------------------------------------------------
def _compile(library: str, schema_json: str, state: dict[str, Any]) -> None:
    if library == "llama.cpp":
        import xllamacpp

        xllamacpp.json_schema_to_grammar(schema_json)
    elif library == "xgrammar":
        import xgrammar as xgr

        compiler = state.get("xgrammar")
        if compiler is None:
            vocab = [bytes([i]).decode("latin-1") for i in range(256)] + ['"', "{", "}", '":', '","', "</s>"]
            info = xgr.TokenizerInfo(vocab, stop_token_ids=[len(vocab) - 1])
            compiler = state["xgrammar"] = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        grammar = xgr.Grammar.from_json_schema(schema_json, any_whitespace=False)
        compiler.compile_grammar(grammar)
    else:
        raise ValueError(f"unknown grammar library {library!r}")


def _address_space() -> int:
    """This process's virtual memory size in bytes (VmSize)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _serve(memory_limit_mb: int) -> None:
    """The child's loop: one JSON line {"library", "schema"} in, one JSON line {"status", "detail"} out."""
    import resource

    imported: set[str] = set()
    state: dict[str, Any] = {}
    # The answers get a descriptor of their own; fd 1 becomes stderr, which the parent logs line by line. A
    # library that prints to stdout (from C, or from a thread of its own) cannot corrupt the answers.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    out.write(json.dumps({"status": "ready"}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        module = _MODULES.get(request["library"])
        if module and module not in imported:
            # imported before the bound is set (xgrammar brings torch): the bound is on what a compile adds
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            with contextlib.suppress(ImportError):
                __import__(module)
            imported.add(module)
            if memory_limit_mb > 0:
                limit = _address_space() + memory_limit_mb * 1024 * 1024
                resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
        try:
            _compile(request["library"], request["schema"], state)
            answer = {"status": "ok", "detail": ""}
        except ImportError:  # the library is not installed: the engine says so itself
            answer = {"status": "missing", "detail": ""}
        except MemoryError:
            answer = {"status": "memory", "detail": ""}
        except Exception as exc:  # the library's own refusal: reported, the child goes on
            text = str(exc).strip().splitlines()
            detail = text[0][:300] if text else type(exc).__name__
            answer = {"status": "memory" if "bad_alloc" in detail else "error", "detail": detail}
        out.write(json.dumps(answer) + "\n")
        out.flush()


# ---- the parent -------------------------------------------------------------------------------------------
def _log_output(stream: Any) -> None:
    """Logs each line the child writes to stdout or stderr (see output_capture.native_record) until it ends."""
    with contextlib.suppress(OSError, ValueError), stream:  # ends (and closes) when the child has exited
        for line in iter(lambda: stream.readline(MAX_LINE_BYTES), b""):
            log_native_line(line, "grammar-worker")


class GrammarWorker:
    """One child process (`python -m components.engines.grammar_worker`), one compile at a time (callers wait
    on a lock), results cached."""

    def __init__(self, timeout: float | None = None, memory_limit_mb: int | None = None) -> None:
        self.timeout = timeout_s() if timeout is None else timeout
        self.memory_limit_mb = memory_mb() if memory_limit_mb is None else memory_limit_mb
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], tuple[str, dict[str, Any]] | None] = OrderedDict()
        self.compiles = 0
        self.starts = 0
        self._imported = set()

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def _start(self) -> subprocess.Popen[bytes]:
        root = Path(__file__).resolve().parents[2]
        process = subprocess.Popen(
            [sys.executable, "-m", "components.engines.grammar_worker", str(self.memory_limit_mb)],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])},
        )
        # what the child's libraries print (llguidance quotes the schema) becomes log records without the text
        threading.Thread(target=_log_output, args=(process.stderr,), name="grammar-worker-output", daemon=True).start()
        self.starts += 1
        self._imported: set[str] = set()
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT_S)
        if not ready or not process.stdout.readline():
            log.warning("grammar worker did not start", extra={"seconds": STARTUP_TIMEOUT_S})
        return process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._stop()  # died while idle (killed from outside): not the next schema's fault
            self._process = self._start()
        return self._process

    def ensure_started(self) -> int:
        """Starts the child if it is not running; its process id."""
        with self._lock:
            return int(self._running().pid)

    def close(self) -> None:
        with self._lock:
            self._stop()

    def compile(self, library: str, schema_json: str) -> None:
        """Compiles in the child; raises GrammarRefused on a crash, a time-out, memory or the library's error."""
        key = (library, schema_json)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                refused = self._cache[key]
            else:
                refused = self._compile_locked(library, schema_json)
                self._cache[key] = refused
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        if refused is not None:
            raise GrammarRefused(refused[0], **refused[1])

    def _compile_locked(self, library: str, schema_json: str) -> tuple[str, dict[str, Any]] | None:
        process = self._running()
        assert process.stdin is not None and process.stdout is not None
        self.compiles += 1
        started = time.monotonic()
        line = b""
        try:
            process.stdin.write(json.dumps({"library": library, "schema": schema_json}).encode() + b"\n")
            process.stdin.flush()
            # a library's first compile in this child includes its import (xgrammar brings torch: seconds)
            deadline = self.timeout + (0.0 if library in self._imported else STARTUP_TIMEOUT_S)
            ready, _, _ = select.select([process.stdout], [], [], deadline)
            if ready:
                line = process.stdout.readline()
        except (OSError, ValueError):
            line = b""
            ready = [process.stdout]
        elapsed = time.monotonic() - started
        if not ready:
            log.warning("grammar compile timed out", extra={"library": library, "seconds": round(elapsed, 3)})
            self._stop()
            return "err_schema_compile_timeout", self._bounds(library)
        if not line:  # the child died: a native crash, or the kernel ended it for memory
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(2)
            log.warning("grammar compiler crashed", extra={"library": library, "exitcode": process.returncode})
            self._stop()
            return "err_schema_compile_crashed", {"library": library}
        self._imported.add(library)
        answer = json.loads(line)
        status = answer.get("status")
        if status in ("ok", "missing"):
            return None
        if status == "memory":
            log.warning("grammar compile out of memory", extra={"library": library})
            self._stop()
            return "err_schema_compile_timeout", self._bounds(library)
        return "err_schema_compile_failed", {"library": library, "detail": answer.get("detail", "")}

    def _bounds(self, library: str) -> dict[str, Any]:
        return {"library": library, "seconds": f"{self.timeout:g}", "memory_mb": self.memory_limit_mb}


_worker: GrammarWorker | None = None
_worker_lock = threading.Lock()


def worker() -> GrammarWorker:
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = GrammarWorker()
        return _worker


#: Threads that wait for the worker: their own, so that compiles waiting in line never hold up the default
#: executor the rest of the app's checks run in.
_waiters = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="grammar-wait")


async def check_compiles(engine_kind: str, schema_json: str) -> None:
    """Compiles `schema_json` in the worker with the library `engine_kind` uses (off the event loop); nothing
    for engines that compile elsewhere. Raises GrammarRefused."""
    library = LIBRARY_FOR_ENGINE.get(engine_kind)
    if library is None:
        return
    await asyncio.get_running_loop().run_in_executor(_waiters, worker().compile, library, schema_json)


__all__ = ["LIBRARY_FOR_ENGINE", "GrammarRefused", "GrammarWorker", "check_compiles", "worker"]


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else memory_mb())
