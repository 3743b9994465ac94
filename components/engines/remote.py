"""Shared pieces of the remote engines (TGI, OpenAI-compatible): timeouts, Stop, auth, stop trimming, safe URLs."""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from components.vocabulary.catalog import Endpoint
from components.vocabulary.generation import EngineError

T = TypeVar("T")

#: How long a remote server may take to send the first token (and later the next one).
DEFAULT_TIMEOUT_S = 60.0
#: How often a wait on the server looks at the Stop flag; Stop must close the stream within a second.
CANCEL_POLL_S = 0.05
#: Timeout of the small side requests (/info, /tokenize, /health, /v1/models).
SIDE_TIMEOUT_S = 10.0
#: How long /info and similar facts about a server are reused before asking again.
INFO_TTL_S = 300.0
#: Characters per token for the fallback estimate when a server cannot count tokens. German text runs
#: at ~3.5-4.5 characters per token with Llama/Mistral/BLOOM tokenizers; 3 over-estimates on purpose so
#: that a prompt we let through also fits on the server.
CHARS_PER_TOKEN_ESTIMATE = 3


def remote_timeout_s() -> float:
    """First-token (and stall) timeout from PLAYGROUND_REMOTE_TIMEOUT_S, default 60 s."""
    raw = os.environ.get("PLAYGROUND_REMOTE_TIMEOUT_S", "").strip()
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if math.isfinite(value) and value > 0 else DEFAULT_TIMEOUT_S


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN_ESTIMATE))


def redact_url(url: str | None) -> str | None:
    """The URL without user:password@, query and fragment (where tokens like to hide)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "(invalid URL)"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def endpoint_name(endpoint: Endpoint) -> str:
    """How messages name an endpoint: its label or id, never its URL (which may be internal)."""
    return endpoint.label or endpoint.id


def scrub(text: Any, endpoint: Endpoint, limit: int = 300) -> str:
    """A server's message made safe for the page: no token (a server may echo headers), bounded length."""
    out = " ".join(str(text or "").split())
    token = endpoint.token()
    if token:
        out = out.replace(token, "***")
    return out[:limit]


#: the httpx request extension that carries a visitor's own credential (GenerationRequest.credential)
VISITOR_CREDENTIAL = "playground_visitor_credential"


def auth_hook(endpoint: Endpoint, visitor_credentials: bool = False) -> Callable[[Any], Awaitable[None]]:
    """An httpx/httpx2 request hook that makes the endpoint's own token the only credential sent.

    huggingface_hub 2.4.0 resolves a missing api_key with get_token() (HF_TOKEN or the saved login) even
    when HF_HUB_DISABLE_IMPLICIT_TOKEN is set, and would send it to any URL. The hook runs on every
    request the client sends and replaces whatever Authorization header the layers above built: the
    endpoint's token for the endpoint's own origin, nothing for any other origin or without a token. With
    `visitor_credentials` (an endpoint that bills each visitor's own account) a visitor's credential, carried in
    the request's VISITOR_CREDENTIAL extension, takes the endpoint token's place, for that origin only.
    """

    async def hook(request: Any) -> None:
        request.headers.pop("authorization", None)
        url = endpoint.url()
        visitor = request.extensions.get(VISITOR_CREDENTIAL) if visitor_credentials else None
        token = visitor or endpoint.token()
        if token and url and _origin(str(request.url)) == _origin(url):
            request.headers["authorization"] = f"Bearer {token}"

    return hook


class Stopped(Exception):
    """The Stop flag was set while waiting on the server."""


class Watchdog:
    """Interrupts an await on the server when Stop is pressed or a deadline passes, cheaply enough per token.

    Racing each await against a watcher task costs a task per token (~50 µs, which adds up over 64 streams);
    this keeps one timer per request that looks every CANCEL_POLL_S and, only while an await is guarded, cancels the
    current task, the way asyncio.timeout() does. The CancelledError surfaces at the guarded await and
    becomes Stopped or the timeout's EngineError; Task.uncancel() keeps a cancellation from outside (a
    closed tab) propagating as it should.
    """

    def __init__(self, cancel: threading.Event, on_timeout: Callable[[], EngineError]) -> None:
        self.cancel = cancel
        self.on_timeout = on_timeout
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[Any] | None = None
        self._deadline: float | None = None
        self._armed = False
        self._fired: str | None = None
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(CANCEL_POLL_S, self._tick)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        if self._armed and self._fired is None and self._task is not None:
            if self.cancel.is_set():
                self._fired = "stop"
            elif self._deadline is not None and self._loop.time() >= self._deadline:
                self._fired = "timeout"
            if self._fired:
                self._task.cancel()
        self._handle = self._loop.call_later(CANCEL_POLL_S, self._tick)

    def _why(self) -> Exception:
        return Stopped() if self._fired == "stop" else self.on_timeout()

    async def guard(self, awaitable: Awaitable[T], deadline: float | None) -> T:
        """Awaits `awaitable` (in the current task), interruptible by Stop and by `deadline` (loop time)."""
        if self.cancel.is_set():
            raise Stopped
        # the task running this step: a consumer may step an async generator from different tasks
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        cancelling = task.cancelling()
        self._deadline, self._armed, self._fired = deadline, True, None
        try:
            result = await awaitable
        except asyncio.CancelledError:
            if self._fired and task.uncancel() <= cancelling:
                raise self._why() from None
            raise
        finally:
            self._armed = False
        if self._fired:  # the await finished anyway; the cancel request it absorbed must not linger
            task.uncancel()
            raise self._why()
        return result


class StopTrimmer:
    """Holds back text that may be the start of a stop sequence and cuts the answer at a complete one.

    TGI keeps a matched stop sequence in the generated text (`USER:` would end up in the answer and in
    the next turn's prompt); OpenAI-style servers drop it. This gives both the same result, and it also
    enforces stop sequences that the server's own limit (max_stop_sequences) made us leave out.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in dict.fromkeys(stops) if s]
        self.pending = ""
        self.hit = False

    def feed(self, text: str) -> str:
        """Text that is safe to show now; after a complete stop sequence nothing more is shown."""
        if self.hit or not text:
            return ""
        if not self.stops:
            return text
        self.pending += text
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self.pending, self.hit = self.pending[:cut], "", True
            return out
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.pending)), hold, -1):
                if self.pending.endswith(stop[:k]):
                    hold = k
                    break
        out = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(self.pending) - hold :]
        return out

    def flush(self) -> str:
        """The held-back rest at the end of the answer (it turned out not to be a stop sequence)."""
        out, self.pending = self.pending, ""
        return "" if self.hit else out


class LoopBound:
    """One HTTP client per event loop: httpx connection pools must not cross loops (tests run one loop per
    test, the app one for its lifetime)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None

    def get(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._loop.is_closed():
            self._client = self._factory()
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()


def read_error_payload(payload: Any) -> tuple[str, str | None, int | None]:
    """(message, error_type, status) from the error bodies remote servers send.

    TGI: {"error": str, "error_type": str}; TGI chat stream and OpenAI: {"error": {"message", "type",
    "code" / "http_status_code"}}; FastAPI (llama-cpp-python): {"detail": ...}; SGLang and vLLM before 0.10.1:
    {"object": "error", "message", "type", "code"} (sglang/srt/entrypoints/openai/protocol.py ErrorResponse).
    """
    if not isinstance(payload, dict):
        return str(payload or ""), None, None
    if payload.get("object") == "error" and isinstance(payload.get("message"), str):
        code = payload.get("code")
        kind = payload.get("type")
        return payload["message"], kind if isinstance(kind, str) else None, code if isinstance(code, int) else None
    error = payload.get("error")
    if isinstance(error, dict):
        status = error.get("http_status_code") or error.get("code")
        return (
            str(error.get("message") or error),
            error.get("type") if isinstance(error.get("type"), str) else None,
            status if isinstance(status, int) else None,
        )
    if error is not None:
        kind = payload.get("error_type")
        return str(error), kind if isinstance(kind, str) else None, None
    if "detail" in payload:
        return str(payload["detail"]), None, None
    return str(payload), None, None


#: How TGI words each of its errors (router/src/infer/mod.rs, `impl Display for InferError`): the start of the
#: message and the error_type it belongs to. TGI's OpenAI-style streams (/v1/chat/completions, /v1/completions)
#: send every error as {"error": {"message", "http_status_code": 422}} (InferError::into_openai_event): the
#: cause is only in the message.
TGI_ERROR_PREFIXES: tuple[tuple[str, str], ...] = (
    ("Model is overloaded", "overloaded"),
    ("Input validation error", "validation"),
    ("Request failed during generation", "generation"),
    ("Incomplete generation stream", "incomplete_generation_stream"),
    ("Incomplete generation", "incomplete_generation"),
    ("Template error", "template_error"),
    ("Missing template vatiable", "missing_template_variable"),  # sic, TGI's spelling
    ("Missing template variable", "missing_template_variable"),
    ("Tool error", "validation"),
)


def error_type_from_message(message: str) -> str | None:
    """TGI's error_type for one of its error messages, or None for a message TGI does not write."""
    text = (message or "").strip()
    for prefix, kind in TGI_ERROR_PREFIXES:
        if text.startswith(prefix):
            return kind
    return None


def classify_error(endpoint: Endpoint, status: int | None, message: str, error_type: str | None = None) -> EngineError:
    """One EngineError for a server's error, whether it came as an HTTP status or as a stream event."""
    name = endpoint_name(endpoint)
    detail = scrub(message, endpoint)
    if status in (401, 403):
        return EngineError("err_remote_unauthorized", endpoint=name, status=status, env=endpoint.token_env or "–")
    by_type = {
        "overloaded": "err_remote_overloaded",
        "validation": "err_remote_validation",
        "generation": "err_remote_generation",
        "incomplete_generation": "err_remote_incomplete",
        # TGI >= 2.3 (router/src/infer/mod.rs, InferError::IncompleteGenerationStream)
        "incomplete_generation_stream": "err_remote_incomplete",
        "template_error": "err_remote_template",
        "missing_template_variable": "err_remote_template",
    }
    key = by_type.get(error_type or "")
    if key is None and status is not None:
        if status == 429:
            key = "err_remote_overloaded"
        elif status in (400, 422):
            key = "err_remote_template" if "template" in detail.lower() else "err_remote_validation"
        elif status == 424:
            key = "err_remote_generation"
        elif status == 402:
            key = "err_remote_payment"  # the Inference Providers router: the account's credits are used up
        elif status == 404 and ("does not exist" in detail or "not found" in detail.lower()):
            # vLLM: "The model `x` does not exist." (a served-model name the server does not serve)
            key = "err_remote_model_missing"
        elif status == 500 and "incomplete" in detail.lower():
            key = "err_remote_incomplete"
        else:
            return EngineError("err_remote_http", endpoint=name, status=status, detail=detail)
    if key is None:
        return EngineError("err_remote_unknown", endpoint=name, detail=detail or (error_type or "?"))
    return EngineError(key, endpoint=name, detail=detail)
