"""Structured logs without prompts or secrets, and an optional conversation log written in the background."""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import queue
import re
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import IO, Any

import re2

from components.vocabulary.answer import Answer
from components.vocabulary.generation import Event, GenerationRequest

#: environment variables whose values are secrets wherever they turn up
SECRET_ENV_VARS: tuple[str, ...] = ("HF_TOKEN", "TGI_TOKEN", "OPENAI_API_KEY", "HUGGING_FACE_HUB_TOKEN")
#: record fields that carry what a visitor wrote or read; dropped unless PLAYGROUND_LOG_PROMPTS=1
#: (`native_line`: a line a native library printed, which may quote a visitor's schema or prompt)
CONTENT_FIELDS: frozenset[str] = frozenset(
    {"prompt", "raw_prompt", "system_prompt", "messages", "message", "answer", "native_line"}
)

REDACTED = "[REDACTED]"


# Shapes of credentials that may appear without their variable: bearer headers, Hugging Face and
# OpenAI-style keys, `token=` / `api_key=` query parameters and passwords inside URLs.
def _re2_quiet(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


_PATTERNS: tuple[tuple[Any, str], ...] = (
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), REDACTED),
    (
        re.compile(
            r"(?i)\b((?:api[_-]?key|access[_-]?token|token|secret)[\"']?\s*[=:]\s*[\"']?)[A-Za-z0-9._~+/=-]{8,}"
        ),
        rf"\1{REDACTED}",
    ),
    # on RE2: Python's `re` took quadratic time on a long `a.a.a.…` or `sk-sk-…` run (200 000 characters: minutes)
    (_re2_quiet(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@"), rf"\1{REDACTED}@"),
)
_MIN_SECRET_CHARS = 6  # shorter "secrets" (test values, "1") would shred ordinary log text


def _secret_values(extra: Iterable[str] = ()) -> list[str]:
    names = set(SECRET_ENV_VARS) | {n for n in os.environ if n.endswith(("_TOKEN", "_API_KEY", "_SECRET"))}
    values = {os.environ.get(name, "").strip() for name in names} | {v.strip() for v in extra if v}
    # longest first, so a secret containing another is replaced whole
    return sorted((v for v in values if len(v) >= _MIN_SECRET_CHARS), key=len, reverse=True)


def redact(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret value and credential-shaped string replaced by [REDACTED]."""
    if not text:
        return text
    for value in _secret_values(extra_secrets):
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    """Redacts strings inside JSON-like values (dicts, lists), leaving other types alone."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def log_prompts() -> bool:
    return os.environ.get("PLAYGROUND_LOG_PROMPTS", "").strip().lower() in {"1", "true", "yes", "on"}


# ---- log records ---------------------------------------------------------------------------------
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _redact_record(record: logging.LogRecord) -> None:
    """Replaces msg/args with the redacted message and pre-renders the traceback, redacted.

    Idempotent: it runs at record creation and again in our handler (`extra` fields are set on a
    record only after the record factory has made it).
    """
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: keep the raw parts, redacted
        message = f"{record.msg} {record.args}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for name, value in list(vars(record).items()):
        if name not in _STANDARD_ATTRS and not name.startswith("_"):
            setattr(record, name, redact_value(value))


class RedactionFilter(logging.Filter):
    """A handler filter that redacts every record passing through it (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, any `extra` fields, exc.

    Content fields (prompt, answer, ...) passed as `extra` appear only with PLAYGROUND_LOG_PROMPTS=1;
    otherwise their length is logged instead, so a log shows the size of a request but not its text.
    """

    def format(self, record: logging.LogRecord) -> str:
        _redact_record(record)
        out: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        with_content = log_prompts()
        for name, value in vars(record).items():
            if name in _STANDARD_ATTRS or name.startswith("_"):
                continue
            if name in CONTENT_FIELDS and not with_content:
                out[f"{name}_chars"] = len(value if isinstance(value, str) else json.dumps(value, default=str))
                continue
            out[name] = value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else repr(value)
        if record.exc_text:
            out["exc"] = record.exc_text
        return redact(json.dumps(out, ensure_ascii=False, default=str))


class KeyValueFormatter(JsonFormatter):
    """`ts=... level=INFO logger=... msg="..." key=value`: for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        data = json.loads(super().format(record))
        parts = []
        for key, value in data.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            if key == "exc" or re.search(r"[\s\"=]", text):
                text = json.dumps(text, ensure_ascii=False)
            parts.append(f"{key}={text}")
        return " ".join(parts)


class _TracebackToLog:
    """Stands in for the `traceback` module inside Gradio's modules: their `traceback.print_exc()` (one for
    every failed event, written straight to stderr: many lines, not JSON, secrets and all) becomes one
    redacted JSON log line with the traceback in its `exc` field. Everything else is the real module's."""

    def __getattr__(self, name: str) -> Any:
        return getattr(traceback, name)

    def print_exc(self, limit: int | None = None, file: Any = None, chain: bool = True) -> None:
        logging.getLogger("gradio").error("error in a Gradio event", exc_info=sys.exc_info())


#: Gradio's modules that print tracebacks themselves (queueing.py, routes.py, route_utils.py, utils.py).
GRADIO_TRACEBACK_MODULES = ("gradio.queueing", "gradio.routes", "gradio.route_utils", "gradio.utils")


def route_gradio_tracebacks() -> None:
    """Sends the tracebacks Gradio prints into the log (see _TracebackToLog); Gradio must be imported first."""
    for name in GRADIO_TRACEBACK_MODULES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "traceback", None) is traceback:
            module.traceback = _TracebackToLog()  # type: ignore[attr-defined]


#: uvicorn's loggers (Gradio serves through uvicorn)
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def route_uvicorn_logs() -> None:
    """uvicorn's records go to the root logger's handler. Every `uvicorn.Config` (Gradio makes one per launch)
    applies uvicorn.config.LOGGING_CONFIG, which gives uvicorn's loggers plain-text handlers of their own: an
    exception in a request (an unknown event index, for one) became a many-line traceback on stderr."""
    try:
        from uvicorn import config
    except ImportError:
        return
    config.LOGGING_CONFIG["handlers"] = {}
    config.LOGGING_CONFIG["loggers"] = {
        name: {"handlers": [], "level": "INFO", "propagate": True} for name in UVICORN_LOGGERS
    }
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


class RedactingStream:
    """A text stream that redacts what is written to it: the last line of defence for stderr, for whatever a
    library prints there without going through logging."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_factory_installed = False


def _install_record_factory() -> None:
    """Redacts at record creation, so handlers set up by others (uvicorn's) never see a secret."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def setup_logging(level: str | int | None = None, fmt: str | None = None, stream: IO[str] | None = None) -> None:
    """Configures the root logger once for the whole app.

    `level`: PLAYGROUND_LOG_LEVEL (default INFO); `fmt`: PLAYGROUND_LOG_FORMAT, "json" (default)
    or "kv". Every record of every logger is redacted; prompts stay out unless PLAYGROUND_LOG_PROMPTS=1.
    """
    level = level or os.environ.get("PLAYGROUND_LOG_LEVEL", "INFO").upper()
    fmt = (fmt or os.environ.get("PLAYGROUND_LOG_FORMAT", "json")).strip().lower()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter() if fmt in {"kv", "keyvalue", "text"} else JsonFormatter())
    handler.addFilter(RedactionFilter())
    handler._playground = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_playground", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL at INFO; URLs may carry tokens and would drown the app's lines
    logging.getLogger("httpx").setLevel(logging.WARNING)
    _install_record_factory()
    # warnings become log lines; Gradio's printed tracebacks too; anything else printed to stderr is redacted
    logging.captureWarnings(True)
    route_gradio_tracebacks()
    route_uvicorn_logs()
    if stream is None and not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)  # type: ignore[assignment]


# ---- conversation log ----------------------------------------------------------------------------
_STOP = object()


class ConversationLog:
    """Appends one JSON line per finished answer to a local file, from a background thread.

    `record()` never blocks and never raises: it puts the entry on a bounded queue and counts it
    as dropped when the writer has fallen that far behind (a slow disk must not slow a chat).
    """

    def __init__(self, path: str | os.PathLike[str], max_pending: int = 10_000) -> None:
        self.path = Path(path)
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._run, name="conversation-log", daemon=True)
        self._closed = False
        self._thread.start()

    def record(self, entry: dict[str, Any]) -> bool:
        if self._closed:
            return False
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        log = logging.getLogger(__name__)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            log.error("conversation log %s cannot be opened: %s", self.path, exc)
            self._drain_forever()
            return
        with file:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    self._queue.task_done()
                    break
                batch = [item]
                # take whatever queued up meanwhile: one flush per burst, not per answer
                while True:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        self._queue.task_done()
                        self._queue.put(_STOP)
                        break
                    batch.append(more)
                try:
                    for entry in batch:
                        file.write(json.dumps(redact_value(entry), ensure_ascii=False, default=str) + "\n")
                    file.flush()
                    self.written += len(batch)
                except (OSError, TypeError, ValueError) as exc:
                    log.error("conversation log %s: write failed: %s", self.path, exc)
                finally:
                    for _ in batch:
                        self._queue.task_done()

    def _drain_forever(self) -> None:
        while True:
            item = self._queue.get()
            self._queue.task_done()
            if item is _STOP:
                return
            self.dropped += 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Waits until everything recorded so far is written (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout_s)
        self._thread.join(timeout_s)


_conversation_log: ConversationLog | None = None
_conversation_lock = threading.Lock()


def conversation_log() -> ConversationLog | None:
    """The log named by PLAYGROUND_CONVERSATION_LOG (a file path), or None when unset."""
    global _conversation_log
    path = os.environ.get("PLAYGROUND_CONVERSATION_LOG", "").strip()
    if not path:
        return None
    with _conversation_lock:
        if _conversation_log is None or str(_conversation_log.path) != str(Path(path)):
            if _conversation_log is not None:
                _conversation_log.close()
            _conversation_log = ConversationLog(path)
            # answers recorded just before shutdown still reach the file
            atexit.register(_conversation_log.close)
        return _conversation_log


def session_tag(session: str | None) -> str | None:
    """A short stable pseudonym of a session hash: groups a conversation's turns, names nobody."""
    if not session:
        return None
    return hashlib.sha256(session.encode("utf-8")).hexdigest()[:12]


async def record_conversation(
    request: GenerationRequest,
    events: AsyncIterator[Event],
    source: str = "",
    session: str | None = None,
) -> AsyncIterator[Event]:
    """Passes `events` through unchanged and, when a conversation log is set, records the exchange.

    Closing this iterator closes `events` (so Stop and closed tabs still end the work underneath);
    an answer cut that way is recorded with finish "closed".
    """
    sink = conversation_log()
    if sink is None:
        try:
            async for event in events:
                yield event
        finally:
            await _aclose(events)
        return
    started = time.time()
    answer = Answer()
    entry: dict[str, Any] = {
        "ts": _dt.datetime.fromtimestamp(started, _dt.UTC).isoformat(timespec="seconds"),
        "source": source,
        "session": session_tag(session),
        "model": request.model.id,
        "settings": request.settings.model_dump(exclude={"stop"}),
        "messages": request.messages,
        "prompt": request.prompt,
        "finish": "closed",
    }
    try:
        async for event in events:
            answer.add(event)
            yield event
    finally:
        entry["finish"] = answer.finish_reason
        if answer.finished and answer.failed is None:
            entry["stats"] = answer.stats
        if answer.failed is not None:
            entry["error"] = {"key": answer.failed.key, "params": answer.failed.params}
        entry["answer"] = answer.text
        entry["duration_s"] = round(time.time() - started, 3)
        sink.record(entry)
        await _aclose(events)


async def _aclose(stream: Any) -> None:
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()


__all__ = [
    "CONTENT_FIELDS",
    "ConversationLog",
    "JsonFormatter",
    "KeyValueFormatter",
    "RedactingStream",
    "RedactionFilter",
    "conversation_log",
    "log_prompts",
    "record_conversation",
    "redact",
    "redact_value",
    "route_gradio_tracebacks",
    "route_uvicorn_logs",
    "session_tag",
    "setup_logging",
]
