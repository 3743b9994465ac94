"""Only JSON lines on stdout/stderr: prints, uncaught exceptions, uvicorn's errors and native libraries' output
(components/logs/output_capture.py), in the app, in a captured process and in the grammar worker's child.

A native line may quote a visitor's schema or prompt (llguidance prints the whole schema); it is logged without its
text unless PLAYGROUND_LOG_PROMPTS=1.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from components.engines.grammar_worker import GrammarWorker
from components.logs.logging_setup import JsonFormatter
from components.logs.output_capture import native_record
from tests.app_server import RunningApp, running_app

ROOT = Path(__file__).resolve().parent.parent
CANARIES = {
    "HF_TOKEN": "hf_CanaryCanaryCanary1234567890",
    "PLAYGROUND_CANARY_SECRET": "canary-secret-9f8e7d6c5b4a",
    "OPENAI_API_KEY": "sk-canaryCanaryCanary0123456789",
}
SCHEMA_MARKER = "visitor-schema-marker-5d2f"
#: what llama.cpp's server prints when llguidance refuses a schema (measured with xllamacpp): the schema verbatim
LLG_ERROR = [
    "0.00.558.238 E llg error: at 2(8): failed to compile JSON schema: Unknown format: " + SCHEMA_MARKER,
    "   1 | %llguidance {}",
    '   2 | start: %json {"type":"string","format":"' + SCHEMA_MARKER + '"}',
    "              ^",
]
OFFLINE = "smollm2-135m-instruct/gguf-q4_1"
#: a schema the app accepts and llguidance refuses while the answer is generated ("Unknown format")
UNKNOWN_FORMAT = {
    "type": "object",
    "properties": {"ort": {"type": "string", "format": SCHEMA_MARKER}},
    "required": ["ort"],
}


def records(text: str) -> list[dict[str, Any]]:
    """Every non-empty line as a JSON object (fails on the first line that is not one)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line[:300]!r}")
        assert isinstance(value, dict), line
        out.append(value)
    return out


# ---- the policy for a native line -----------------------------------------------------------------------
def test_a_native_line_keeps_llama_cpps_level_and_tag_but_not_its_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLAYGROUND_LOG_PROMPTS", raising=False)

    def formatted(line: str) -> dict[str, Any]:
        level, extra = native_record(line, "process")
        record = logging.LogRecord("native", level, __file__, 0, "native output", None, None)
        record.__dict__.update(extra)
        return json.loads(JsonFormatter().format(record))

    first = formatted(LLG_ERROR[0])
    assert (first["level"], first["tag"], first["native_line_chars"]) == ("ERROR", "llg error", len(LLG_ERROR[0]))
    schema_line = formatted(LLG_ERROR[2])
    assert "tag" not in schema_line and schema_line["level"] == "WARNING"
    assert SCHEMA_MARKER not in json.dumps([first, schema_line])
    monkeypatch.setenv("PLAYGROUND_LOG_PROMPTS", "1")
    assert formatted(LLG_ERROR[2])["native_line"] == LLG_ERROR[2]


# ---- a captured process ---------------------------------------------------------------------------------
CAPTURED = """
import ctypes, logging, os, sys, threading
from components.logs.logging_setup import setup_logging
from components.logs.output_capture import capture_output

setup_logging()
capture_output()
print("hello from print")
print("two\\nlines in one print")
sys.stderr.write("stderr text with {secret}\\n")
logging.getLogger("some.library").warning("a warning")
for line in {llg!r}:
    os.write(2, (line + "\\n").encode())
os.write(1, b"native stdout with {secret}\\n")
libc = ctypes.CDLL(None)
text = b"from C: {secret}\\n"
libc.write(2, text, len(text))
worker = threading.Thread(target=lambda: 1 / 0, name="failing-thread")
worker.start()
worker.join()
raise RuntimeError("the end, {secret}")
"""


def run_captured(source: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str]:
    child_env = {k: v for k, v in os.environ.items() if k != "PLAYGROUND_LOG_PROMPTS"}
    child_env.update({**CANARIES, "PYTHONPATH": str(ROOT), **(env or {})})
    done = subprocess.run(
        [sys.executable, "-c", source], cwd=ROOT, env=child_env, capture_output=True, timeout=timeout, check=False
    )
    # stdout and stderr both: whatever reaches either must be JSON
    return done.returncode, done.stdout.decode() + done.stderr.decode()


def test_every_line_a_captured_process_writes_is_json_and_redacted() -> None:
    code, output = run_captured(CAPTURED.format(secret=CANARIES["HF_TOKEN"], llg=LLG_ERROR))
    assert code == 1  # the uncaught RuntimeError
    for value in CANARIES.values():
        assert value not in output
    assert SCHEMA_MARKER not in output
    logged = records(output)
    by_logger: dict[str, list[dict[str, Any]]] = {}
    for record in logged:
        by_logger.setdefault(record["logger"], []).append(record)
    assert [r["msg"] for r in by_logger["stdout"]] == ["hello from print", "two\nlines in one print"]
    assert by_logger["stderr"][0]["msg"] == "stderr text with [REDACTED]"
    assert by_logger["some.library"][0]["msg"] == "a warning"
    native = by_logger["native"]
    assert len(native) == len(LLG_ERROR) + 2, native  # one record per line, Python's os.write and C's write()
    assert native[0]["tag"] == "llg error" and native[0]["level"] == "ERROR"
    assert all("native_line" not in r and r["native_line_chars"] > 0 for r in native)
    uncaught = by_logger["playground"]
    assert len(uncaught) == 2, uncaught  # the thread's exception and the main one: one record each
    assert "ZeroDivisionError" in uncaught[0]["exc"] and "failing-thread" in uncaught[0]["msg"]
    assert "RuntimeError: the end, [REDACTED]" in uncaught[1]["exc"]


def test_native_lines_keep_their_text_with_log_prompts() -> None:
    code, output = run_captured(
        CAPTURED.format(secret=CANARIES["HF_TOKEN"], llg=LLG_ERROR), env={"PLAYGROUND_LOG_PROMPTS": "1"}
    )
    assert code == 1
    assert CANARIES["HF_TOKEN"] not in output
    native = [r for r in records(output) if r["logger"] == "native"]
    assert [r["native_line"] for r in native[: len(LLG_ERROR)]] == LLG_ERROR
    assert native[-1]["native_line"] == "from C: [REDACTED]"


def test_a_native_writer_that_holds_the_gil_is_never_stuck_on_a_full_pipe() -> None:
    # One write() of 4 MB (4x the pipe) with the GIL held (ctypes.PyDLL keeps it): a reader thread in this process
    # could never run to drain the pipe; the relay process does.
    source = textwrap.dedent(
        """
        import ctypes, time
        from components.logs.logging_setup import setup_logging
        from components.logs.output_capture import capture_output
        setup_logging()
        capture_output()
        chunk = b"x" * 1023 + b"\\n"
        data = chunk * 4096
        started = time.monotonic()
        ctypes.PyDLL(None).write(2, data, len(data))
        print(f"wrote in {time.monotonic() - started:.2f} s")
        """
    )
    code, output = run_captured(source, timeout=120)
    assert code == 0, output[-2000:]
    logged = records(output)
    assert sum(r["logger"] == "native" for r in logged) == 4096
    assert any(r["logger"] == "stdout" and r["msg"].startswith("wrote in") for r in logged)


# ---- the grammar worker's child -------------------------------------------------------------------------
NOISY_LIBRARY = """
import os, sys, threading, time

def noise():
    # like llama.cpp's log thread: writes straight to fd 1 and 2 while the library is imported and used
    while "xllamacpp" not in sys.modules:
        time.sleep(0.001)
    for _ in range(20):
        os.write(1, b"0.00.000.001 W llg warning: stdout %s\\n")
        os.write(2, b"stderr %s\\n")
        time.sleep(0.002)

threading.Thread(target=noise, daemon=True).start()
"""


def test_a_library_printing_in_the_grammar_worker_breaks_nothing_and_logs_no_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("xllamacpp")
    (tmp_path / "sitecustomize.py").write_text(NOISY_LIBRARY % (SCHEMA_MARKER, SCHEMA_MARKER), encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.delenv("PLAYGROUND_LOG_PROMPTS", raising=False)
    caplog.set_level(logging.INFO)
    worker = GrammarWorker(timeout=30)
    try:
        worker.compile("llama.cpp", json.dumps(UNKNOWN_FORMAT))  # before: the child's noise was read as its answer
    finally:
        deadline = time.monotonic() + 10
        while sum(r.name == "native" for r in caplog.records) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.close()
    native = [r for r in caplog.records if r.name == "native"]
    assert len(native) == 40, [r.__dict__ for r in native[:3]]
    assert {r.source for r in native} == {"grammar-worker"}  # type: ignore[attr-defined]
    assert sum(getattr(r, "tag", None) == "llg warning" for r in native) == 20
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    for record in native:
        handler.handle(record)
    assert SCHEMA_MARKER not in stream.getvalue()
    assert len(records(stream.getvalue())) == 40


# ---- the app --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def public_app() -> Iterator[RunningApp]:
    with running_app({"PLAYGROUND_PUBLIC": "1", "PLAYGROUND_RATE_LIMIT": "1000/min", **CANARIES}) as app:
        yield app


def assert_only_json_without_canaries(log: str) -> list[dict[str, Any]]:
    for name, value in CANARIES.items():
        assert value not in log, f"{name} leaked into the log"
    return records(log)  # Gradio's start-up banner included


@pytest.mark.slow
def test_an_unknown_event_index_leaves_one_json_line_per_request(public_app: RunningApp) -> None:
    mark = len(public_app.log())
    body = {"fn_index": 99999, "data": [], "session_hash": uuid.uuid4().hex}
    for route in ("/gradio_api/run/predict", "/gradio_api/queue/join"):
        response = httpx.post(public_app.url + route, json=body, timeout=30)
        assert response.status_code >= 400
    time.sleep(0.5)
    logged = assert_only_json_without_canaries(public_app.log())
    fresh = records(public_app.log()[mark:])
    errors = [r for r in fresh if "KeyError: 99999" in r.get("exc", "")]
    assert len(errors) == 2, fresh  # a traceback each, inside one record
    assert any(r["logger"] == "stdout" and "Running on local URL" in r["msg"] for r in logged)


def structured_with_unknown_format(app: RunningApp) -> None:
    from gradio_client import Client

    client = Client(app.url, verbose=False, ssl_verify=False)
    try:
        _raw, _data, info = client.predict(
            text="Max ging nach Paris.", schema=UNKNOWN_FORMAT, model=OFFLINE, max_new_tokens=8, api_name="/structured"
        )
    finally:
        client.close()
    assert info["model"] == OFFLINE


def wait_for_native(app: RunningApp, timeout_s: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        native = [r for r in records(app.log()) if r["logger"] == "native" and r.get("tag") == "llg error"]
        if native or time.monotonic() > deadline:
            return native
        time.sleep(0.1)


@pytest.mark.slow
def test_a_schema_llguidance_refuses_leaves_json_lines_without_the_schema(public_app: RunningApp) -> None:
    structured_with_unknown_format(public_app)
    native = wait_for_native(public_app)
    assert native, "llguidance's error was not logged"
    assert SCHEMA_MARKER not in public_app.log()
    assert_only_json_without_canaries(public_app.log())


@pytest.mark.slow
def test_with_log_prompts_the_native_lines_keep_the_schema() -> None:
    with running_app({"PLAYGROUND_LOG_PROMPTS": "1", **CANARIES}) as app:
        structured_with_unknown_format(app)
        native = wait_for_native(app)
        assert native and SCHEMA_MARKER in native[0]["native_line"]
        assert_only_json_without_canaries(app.log())
