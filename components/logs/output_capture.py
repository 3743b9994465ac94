"""Every line the app's process writes to stdout or stderr, its own and its native libraries', as one JSON log record.

`capture_output()` (after `setup_logging()`, called by app.py) makes three paths:

- Python's `sys.stdout` / `sys.stderr` become line-to-record streams: each printed chunk (Gradio's start-up
  banner, a library's print) is one redacted record of the logger `stdout` / `stderr`, with its text.
- Uncaught exceptions (main thread, other threads, "Exception ignored in ...") are one record each, the
  traceback in its `exc` field.
- File descriptors 1 and 2 are replaced by a pipe whose reader is a small relay process (this module run with
  `-m`). Native code (llama.cpp's server, llguidance, faulthandler, a child that inherited the descriptors)
  writes there directly. Such a line may quote a visitor's input (llguidance's error prints the whole JSON
  schema), so its record (`logger: native`) carries the line only with PLAYGROUND_LOG_PROMPTS=1; otherwise its
  length and, for llama.cpp's own log lines, their level and tag (`E llg error: ...` gives `ERROR`, `llg error`).

The reader is a process, not a thread: a thread needs the GIL to handle what it read, so a native writer that
holds the GIL while the pipe is full (or one still writing while the interpreter shuts its threads down) would
wait forever for it. The relay needs nothing from this process and ends when the last writer closes the pipe.
The log handler keeps writing to a duplicate of the original stderr, never to the descriptors it captures.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from components.logs.logging_setup import JsonFormatter, KeyValueFormatter

#: the logger name of a native line's record
NATIVE_LOGGER = "native"
#: the longest piece of a native line that makes one record (a longer line makes several)
MAX_LINE_BYTES = 64 * 1024
#: llama.cpp's log prefix: time, level letter and the writer's tag, as in "0.00.526.709 E llg error: ..."
_LLAMA_PREFIX = re.compile(r"^\d+(?:\.\d+){3} ([DIWE]) ([A-Za-z_][A-Za-z0-9_ ]{0,31}?):")
_LLAMA_LEVELS = {"D": logging.DEBUG, "I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR}
_F_SETPIPE_SZ = 1031  # Linux fcntl: a larger pipe absorbs bursts while the relay is busy


def native_record(line: str, source: str) -> tuple[int, dict[str, Any]]:
    """The level and `extra` fields of one native output line's record.

    `native_line` is a content field (logging_setup.CONTENT_FIELDS): the formatter keeps it only with
    PLAYGROUND_LOG_PROMPTS=1 and logs `native_line_chars` otherwise. llama.cpp's level and tag come from its
    fixed prefix, never from the rest of the line."""
    extra: dict[str, Any] = {"source": source, "native_line": line}
    match = _LLAMA_PREFIX.match(line)
    if match is None:
        return logging.WARNING, extra
    extra["tag"] = match.group(2).strip()
    return _LLAMA_LEVELS[match.group(1)], extra


def log_native_line(raw: bytes | str, source: str, logger: logging.Logger | None = None) -> None:
    """Logs one line a native library or a child process wrote (see native_record)."""
    line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    line = line.rstrip("\r\n")
    if not line.strip():
        return
    level, extra = native_record(line, source)
    (logger or logging.getLogger(NATIVE_LOGGER)).log(level, "native output", extra=extra)


# ---- the relay process ----------------------------------------------------------------------------------
def _relay(fmt: str) -> None:
    """Reads native output lines from stdin until every writer has closed it; writes one record per line to
    stdout (the app's real stderr). Signals are ignored: it must drain what the app writes while it stops."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    formatter = KeyValueFormatter() if fmt == "kv" else JsonFormatter()
    out = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    stdin = sys.stdin.buffer
    while True:
        try:
            raw = stdin.readline(MAX_LINE_BYTES)
        except OSError:
            return
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line.strip():
            continue
        try:
            level, extra = native_record(line, "process")
            record = logging.LogRecord(NATIVE_LOGGER, level, __file__, 0, "native output", None, None)
            record.__dict__.update(extra)
            text = formatter.format(record)
        except Exception:  # never lose the relay to one odd line: log that it was there
            text = json.dumps(
                {"level": "WARNING", "logger": NATIVE_LOGGER, "msg": "native output", "native_line_chars": len(line)}
            )
        try:
            out.write(text + "\n")
            out.flush()
        except (OSError, ValueError):
            return


# ---- Python's own streams -------------------------------------------------------------------------------
class LineToLog(io.TextIOBase):
    """A text stream (sys.stdout / sys.stderr) whose written lines become log records of logger `name`.

    A write that ends a line emits everything written since the last record as one record, so one print() is
    one record even across several lines. Records go to `handler` alone, which writes elsewhere; if the handler
    itself writes here (its own error report), that text goes to the captured descriptor instead of looping."""

    def __init__(self, name: str, level: int, handler: logging.Handler, fileno: int) -> None:
        super().__init__()
        self.name = name
        self.level = level
        self._handler = handler
        self._fileno = fileno
        self._pending = ""
        self._lock = threading.RLock()
        self._inside = threading.local()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fileno

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if getattr(self._inside, "active", False):
            with contextlib.suppress(OSError):
                os.write(self._fileno, text.encode("utf-8", "replace"))
            return len(text)
        with self._lock:
            self._pending += text
            if self._pending.endswith("\n") or len(self._pending) >= MAX_LINE_BYTES:
                done, self._pending = self._pending.removesuffix("\n"), ""
            else:
                return len(text)
        self._emit(done)
        return len(text)

    def flush(self) -> None:
        """Nothing to flush: an unfinished line waits for its end (or close)."""

    def close(self) -> None:
        with self._lock:
            rest, self._pending = self._pending, ""
        self._emit(rest)

    def _emit(self, text: str) -> None:
        if not text.strip():
            return
        self._inside.active = True
        try:
            record = logging.LogRecord(self.name, self.level, __file__, 0, text, None, None)
            self._handler.handle(record)
        finally:
            self._inside.active = False


# ---- uncaught exceptions --------------------------------------------------------------------------------
def route_uncaught_exceptions() -> None:
    """Uncaught exceptions of the main thread and other threads, and "Exception ignored in ..." reports, as
    one log record each instead of a traceback printed line by line."""
    log = logging.getLogger("playground")

    def excepthook(kind: Any, value: Any, tb: Any) -> None:
        log.critical("uncaught exception", exc_info=(kind, value, tb))

    def thread_excepthook(args: Any) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        log.error("uncaught exception in thread %s", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    def unraisablehook(unraisable: Any) -> None:
        log.warning(
            "%s",
            unraisable.err_msg or "Exception ignored",
            exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback),
        )

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    sys.unraisablehook = unraisablehook


# ---- the capture ----------------------------------------------------------------------------------------
_relay_process: subprocess.Popen[bytes] | None = None


def _playground_handler() -> logging.Handler:
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_playground", False):
            return handler
    raise RuntimeError("capture_output() needs setup_logging() first")


def capture_output() -> subprocess.Popen[bytes]:
    """Captures stdout and stderr of this process (see the module's docstring); returns the relay process.
    Once per process: a second call returns the running relay."""
    global _relay_process
    if _relay_process is not None:
        return _relay_process
    handler = _playground_handler()
    if not isinstance(handler, logging.StreamHandler):
        raise RuntimeError("the playground's log handler is not a stream handler")
    fmt = "kv" if isinstance(handler.formatter, KeyValueFormatter) else "json"
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    real_stderr = os.dup(2)  # not inheritable: children get the pipe, the relay gets it explicitly
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):
        import fcntl

        fcntl.fcntl(write_end, _F_SETPIPE_SZ, 1024 * 1024)
    root = Path(__file__).resolve().parents[2]
    relay = subprocess.Popen(
        [sys.executable, "-m", "components.logs.output_capture", fmt],
        stdin=read_end,
        stdout=real_stderr,
        stderr=subprocess.DEVNULL,
        cwd=root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])},
        start_new_session=True,  # a Ctrl+C in the terminal stops the app, not the relay that drains it
    )
    os.close(read_end)
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    handler.setStream(open(real_stderr, "w", encoding="utf-8", errors="backslashreplace", buffering=1))  # noqa: SIM115
    sys.stdout = LineToLog("stdout", logging.INFO, handler, 1)
    sys.stderr = LineToLog("stderr", logging.WARNING, handler, 2)
    route_uncaught_exceptions()
    _relay_process = relay

    def watch() -> None:
        """A relay that ends while the app runs would leave writers blocked on a full pipe: the descriptors go
        back to the real stderr (raw, but never stuck)."""
        code = relay.wait()
        os.dup2(real_stderr, 1)
        os.dup2(real_stderr, 2)
        logging.getLogger("playground").error("the output relay ended", extra={"exitcode": code})

    threading.Thread(target=watch, name="output-relay-watch", daemon=True).start()
    return relay


__all__ = [
    "NATIVE_LOGGER",
    "LineToLog",
    "capture_output",
    "log_native_line",
    "native_record",
    "route_uncaught_exceptions",
]


if __name__ == "__main__":
    _relay(sys.argv[1] if len(sys.argv) > 1 else "json")
