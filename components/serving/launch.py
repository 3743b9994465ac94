"""How the app is served: the public-Space profile, security headers, temporary files, session state, visitor caps.

`PLAYGROUND_PUBLIC=1` (on by default where `SPACE_ID` is set, i.e. on a Hugging Face Space) turns on
what an open Space needs: a rate limit and a per-visitor cap on answers running at once
(components/serving/limits.py), a tighter bound on kept sessions, shorter-lived files and no deep-link route.
The rest holds everywhere: Gradio's run-history routes are off (they act on the Hub with the server's
`HF_TOKEN` for requests that merely look local), uvicorn does not believe X-Forwarded-For from
loopback (the app decides whom to believe, limits.visitor_key), every response carries a
Content-Security-Policy that loads images, scripts and connections only from the page's own origin,
temporary files live in a folder of this process that is removed when it ends (and, after a crash, on
the next start), and a session keeps a few KB instead of Gradio's copy of every component's config.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import datetime
import fcntl
import functools
import inspect
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from copy import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.engines import disk
from components.serving.limits import VisitorSlots, public_profile, visitor_concurrency, visitor_key
from components.vocabulary.messages import normalize_language, t

log = logging.getLogger(__name__)

#: frame-ancestors of the CSP: the page may be embedded by itself and by the Hub's Space page only
DEFAULT_FRAME_ANCESTORS = "'self' https://huggingface.co https://*.hf.space"
#: the request header with which a caller names a Hub bucket for Gradio's run history
HISTORY_BUCKET_HEADER = b"x-gradio-history-bucket"
#: paths of Gradio's run history (page and API); off unless PLAYGROUND_RUN_HISTORY=1 outside the public profile
RUN_HISTORY_PREFIXES = ("/gradio_api/run-history", "/gradio_api/runs")
#: headers a reverse proxy adds: a request carrying one did not come straight from this host's browser
PROXY_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip", b"x-forwarded-host")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


def _env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    return default


@dataclass(frozen=True)
class ServingPolicy:
    """Everything this module switches, read once from the environment (serving_policy())."""

    public: bool
    run_history: bool
    max_sessions: int
    session_idle_s: float
    closed_session_grace_s: float
    file_max_age_s: int
    security_headers: bool
    frame_ancestors: str
    visitor_concurrency: int | None
    #: sessions one visitor may hold before its own oldest go (None: only the global bound, max_sessions)
    max_sessions_per_visitor: int | None = None

    @property
    def delete_cache(self) -> tuple[int, int]:
        """Gradio's (frequency, age) for deleting the files it created: uploads, exports, cached outputs."""
        return (max(60, self.file_max_age_s // 6), self.file_max_age_s)


def serving_policy() -> ServingPolicy:
    """The policy from the environment; the public profile changes the defaults, explicit variables win."""
    public = public_profile()
    return ServingPolicy(
        public=public,
        # Gradio's run history is no part of the playground; only a local operator may opt in
        run_history=(not public) and _env_flag("PLAYGROUND_RUN_HISTORY", False),
        max_sessions=max(1, _env_int("PLAYGROUND_MAX_SESSIONS", 2000 if public else 10000)),
        # 0 = no cap of its own (the global bound still holds)
        max_sessions_per_visitor=_env_int("PLAYGROUND_MAX_SESSIONS_PER_VISITOR", 50 if public else 0) or None,
        session_idle_s=float(_env_int("PLAYGROUND_SESSION_IDLE_S", 3600 if public else 6 * 3600)),
        closed_session_grace_s=float(_env_int("PLAYGROUND_CLOSED_SESSION_S", 600 if public else 3600)),
        file_max_age_s=max(60, _env_int("PLAYGROUND_FILE_MAX_AGE_S", 3600 if public else 24 * 3600)),
        security_headers=_env_flag("PLAYGROUND_SECURITY_HEADERS", True),
        frame_ancestors=os.environ.get("PLAYGROUND_FRAME_ANCESTORS", "").strip() or DEFAULT_FRAME_ANCESTORS,
        visitor_concurrency=visitor_concurrency(),
    )


# ---- security headers ----------------------------------------------------------------------------
def content_security_policy(frame_ancestors: str = DEFAULT_FRAME_ANCESTORS) -> str:
    """The page's CSP: images (Markdown or HTML in an answer), media, scripts and connections from its own origin.

    Gradio's page needs inline scripts and styles (its config and Svelte's styles); its theme's fonts
    come from Google Fonts. `img-src 'self' data: blob:` is what keeps an answer's `![](https://…)` or
    `<img src=…>` from calling out: the browser refuses to load it.
    """
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:",
            "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com",
            "font-src 'self' data: https://fonts.gstatic.com",
            "img-src 'self' data: blob:",
            "media-src 'self' data: blob:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "frame-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            f"frame-ancestors {frame_ancestors}",
        ]
    )


def security_headers(policy: ServingPolicy) -> list[tuple[bytes, bytes]]:
    """The headers added to every response (none with PLAYGROUND_SECURITY_HEADERS=0)."""
    if not policy.security_headers:
        return []
    return [
        (b"content-security-policy", content_security_policy(policy.frame_ancestors).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
        (b"cross-origin-opener-policy", b"same-origin-allow-popups"),
    ]


class ServingMiddleware:
    """Pure ASGI (streams pass through untouched): security headers out; run history and deep links guarded in.

    - every HTTP response gets security_headers();
    - the `x-gradio-history-bucket` request header is dropped unless run history is on, and even then
      for proxied requests (they look local to Gradio, which would act with the server's HF token);
    - run-history paths answer 404 unless run history is on and the request came straight from this host;
    - in the public profile `/gradio_api/deep_link` answers 404 (it writes a file per call; the page has no
      deep-link button).
    """

    def __init__(self, app: Any, policy: ServingPolicy | None = None) -> None:
        self.app = app
        self.policy = policy or serving_policy()
        self.headers = security_headers(self.policy)

    def _refused(self, path: str, proxied: bool) -> bool:
        if any(path.startswith(prefix) for prefix in RUN_HISTORY_PREFIXES):
            return not self.policy.run_history or proxied
        return self.policy.public and path.startswith("/gradio_api/deep_link")

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        raw_headers = scope.get("headers") or []
        proxied = any(name in PROXY_HEADERS for name, _ in raw_headers)
        root = scope.get("root_path") or ""
        path = str(scope.get("path") or "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if self._refused(path, proxied):
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [*self.headers, (b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": b"Not found"})
            return
        if any(name == HISTORY_BUCKET_HEADER for name, _ in raw_headers) and (not self.policy.run_history or proxied):
            scope = {**scope, "headers": [(n, v) for n, v in raw_headers if n != HISTORY_BUCKET_HEADER]}
        extra = self.headers

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start" and extra:
                present = {name.lower() for name, _ in message.get("headers") or []}
                message = {
                    **message,
                    "headers": [*(message.get("headers") or []), *((n, v) for n, v in extra if n not in present)],
                }
            await send(message)

        token = REQUEST_SCOPE.set(scope)  # whose request this is, for a session it creates (FairStateHolder)
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            REQUEST_SCOPE.reset(token)


# ---- temporary files -------------------------------------------------------------------------------
@dataclass
class RuntimeDir:
    """This process's folder for Gradio's uploads and cached outputs and for exports; removed at exit."""

    path: Path
    lock_file: Any

    @property
    def gradio(self) -> Path:
        return self.path / "gradio"

    @property
    def exports(self) -> Path:
        return self.path / "exports"

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(Exception):
            self.lock_file.close()


def runtime_parent() -> Path:
    """PLAYGROUND_TEMP_DIR, else `<system temp>/playground-runtime`: one subfolder per running app."""
    raw = os.environ.get("PLAYGROUND_TEMP_DIR", "").strip()
    return Path(raw) if raw else Path(tempfile.gettempdir()) / "playground-runtime"


def remove_stale_runtime_dirs(parent: Path) -> list[Path]:
    """Removes the folders of apps that are gone (their lock is free): files of a crashed or killed run."""
    removed = []
    if not parent.is_dir():
        return removed
    for child in parent.iterdir():
        lock_path = child / ".lock"
        if not child.is_dir() or not lock_path.exists():
            continue
        try:
            with open(lock_path, "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a running app holds it
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child)
    return removed


_runtime: RuntimeDir | None = None


def prepare_runtime_dir(parent: Path | None = None) -> RuntimeDir:
    """Makes this process's folder (once), points GRADIO_TEMP_DIR and PLAYGROUND_EXPORT_DIR at it.

    Call it before the page is built: Gradio's components read GRADIO_TEMP_DIR when they are created.
    The folder goes at exit (atexit; SIGTERM is turned into a normal exit); after a hard kill the next
    start removes it (remove_stale_runtime_dirs), so uploads and exports never outlive a restart.
    """
    global _runtime
    if _runtime is not None:
        return _runtime
    parent = parent or runtime_parent()
    parent.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_runtime_dirs(parent)
    if removed:
        log.info("removed %d temporary folder(s) of earlier runs", len(removed))
    path = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=parent))
    lock_file = open(path / ".lock", "a+")  # noqa: SIM115 - held for the life of the process
    fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    runtime = RuntimeDir(path, lock_file)
    runtime.gradio.mkdir()
    runtime.exports.mkdir()
    os.environ["GRADIO_TEMP_DIR"] = str(runtime.gradio)
    os.environ["PLAYGROUND_EXPORT_DIR"] = str(runtime.exports)
    atexit.register(runtime.remove)
    _runtime = runtime
    return runtime


def exit_on_sigterm() -> None:
    """SIGTERM (a Space restarting, `kill`) ends the app like Ctrl+C, so that atexit cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


# ---- session state ---------------------------------------------------------------------------------
def install_lean_sessions() -> bool:
    """Replaces Gradio's per-session state with one that does not copy every component's config.

    Gradio 6.31's SessionState builds `config_values` (the config of each of the page's ~300 blocks) for
    every new session hash: 425 KB and 40 ms of CPU per session, never returned until 10 000 sessions
    are kept. Only its deep-link route reads it, and the playground has no deep-link button. The lean
    state keeps the rest (State values, updated components) as Gradio does. Returns False where Gradio's
    class does not look as expected (then nothing is changed).
    """
    from gradio import state_holder

    base = state_holder.SessionState
    if getattr(base, "_playground_lean", False):
        return True
    needed = ("__setitem__", "_update_config", "_update_value_in_config", "components", "state_components")
    if not all(hasattr(base, name) for name in needed):
        log.warning("Gradio's SessionState changed: per-session config copies stay")
        return False

    class LeanSessionState(base):  # type: ignore[misc, valid-type]
        _playground_lean = True

        def __init__(self, blocks: Any) -> None:
            self.blocks_config = copy(blocks.default_config)
            self.config_values: dict[int, Any] = {}
            self.state_data: dict[int, Any] = {}
            self._state_ttl: dict[int, Any] = {}
            self.is_closed = False
            self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600

        def __setitem__(self, key: int, value: Any) -> None:
            import datetime

            from gradio.components import State

            block = self.blocks_config.blocks.get(key)
            if isinstance(block, State):
                self._state_ttl[key] = (block.time_to_live, datetime.datetime.now())
                self.state_data[key] = value
            else:
                self.blocks_config.blocks[key] = value

        def _update_config(self, key: int) -> None:
            return None

        def _update_value_in_config(self, key: int, value: Any) -> None:
            return None

        @property
        def components(self) -> Iterator[dict]:
            return iter(())

    state_holder.SessionState = LeanSessionState  # type: ignore[misc]
    return True


#: The ASGI scope of the HTTP request being served (set by ServingMiddleware): whose request creates a session.
REQUEST_SCOPE: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "playground_request_scope", default=None
)
#: The owner of sessions whose visitor is not known (created outside any request): no cap of its own.
UNKNOWN_VISITOR = "?"


def session_owner() -> str | None:
    """The visitor (limits.visitor_key: the address, or what a trusted proxy reports) of the request being served."""
    scope = REQUEST_SCOPE.get()
    if scope is None:
        return None
    from starlette.requests import HTTPConnection

    return visitor_key(HTTPConnection(scope))


def fair_state_holder() -> type | None:
    """Gradio's session store (state_holder.StateHolder) bounded per visitor as well as globally; None where Gradio's
    class does not look as expected.

    Gradio keeps at most `capacity` sessions and drops the oldest one, whoever it belongs to: 2 100 calls with new
    session hashes from one address wiped every other visitor's state (a blind round, then its vote failed). Here
    each session belongs to the visitor whose request created it (REQUEST_SCOPE, or the request of the event that
    first uses it); a visitor over `per_visitor` sessions loses its own least recently used one, and over the global
    capacity the visitor holding the most sessions loses its least recently used one, never somebody else first.
    """
    from gradio import state_holder

    base = state_holder.StateHolder
    probe = base()
    if not all(hasattr(probe, name) for name in ("session_data", "time_last_used", "lock", "capacity", "update")):
        log.warning("Gradio's StateHolder changed: sessions stay bounded only globally")
        return None

    class FairStateHolder(base):  # type: ignore[misc, valid-type]
        _playground_fair = True

        def __init__(self) -> None:
            super().__init__()
            self.per_visitor: int | None = None
            self._owner: dict[str, str] = {}
            self._by_owner: dict[str, OrderedDict[str, None]] = {}

        def set_blocks(self, blocks: Any) -> None:
            super().set_blocks(blocks)
            self.per_visitor = getattr(blocks, "playground_sessions_per_visitor", None)

        def __getitem__(self, session_id: str) -> Any:
            owner = session_owner()
            now = datetime.datetime.now()
            with self.lock:
                state = self.session_data.get(session_id)
                if state is None:
                    state = state_holder.SessionState(self.blocks)  # the lean one where installed
                    self.session_data[session_id] = state
                else:
                    self.session_data.move_to_end(session_id)
                self.time_last_used[session_id] = now
                self._track(session_id, owner)
                self._evict(session_id)
            return state

        def update(self, session_id: str) -> None:
            with self.lock:
                if session_id in self.session_data:
                    self.session_data.move_to_end(session_id)
                self._evict(session_id)

        def sessions_of(self, owner: str) -> int:
            return len(self._by_owner.get(owner, ()))

        def untrack_locked(self, session_id: str) -> None:
            """Forgets whose session it was (the caller holds `lock` and has removed the session itself)."""
            owner = self._owner.pop(session_id, None)
            mine = self._by_owner.get(owner) if owner is not None else None
            if mine is not None:
                mine.pop(session_id, None)
                if not mine:
                    del self._by_owner[owner]  # type: ignore[arg-type]

        def _track(self, session_id: str, owner: str | None) -> None:
            old = self._owner.get(session_id)
            if old is not None and not (old == UNKNOWN_VISITOR and owner is not None):
                self._by_owner[old].move_to_end(session_id)
                return
            if old is not None:
                self.untrack_locked(session_id)
            key = owner or UNKNOWN_VISITOR
            self._owner[session_id] = key
            self._by_owner.setdefault(key, OrderedDict())[session_id] = None

        def _drop(self, session_id: str) -> None:
            self.session_data.pop(session_id, None)
            self.time_last_used.pop(session_id, None)
            self.untrack_locked(session_id)

        def _evict(self, current: str) -> None:
            owner = self._owner.get(current)
            mine = self._by_owner.get(owner) if owner not in (None, UNKNOWN_VISITOR) else None
            if self.per_visitor and mine is not None:
                while len(mine) > self.per_visitor:
                    self._drop(next(s for s in mine if s != current))
            while len(self.session_data) > self.capacity:
                victim = self._victim(current)
                if victim is None:
                    break
                self._drop(victim)

        def _victim(self, current: str) -> str | None:
            """The least recently used session of the visitor with the most sessions; with one each, the oldest."""
            if self._by_owner:
                heaviest = max(self._by_owner.values(), key=len)
                if len(heaviest) > 1:
                    return next((s for s in heaviest if s != current), None)
            return next((s for s in self.session_data if s != current), None)

    return FairStateHolder


def install_fair_sessions() -> bool:
    """Makes every Gradio app started from now on keep its sessions with fair_state_holder(), and lets a session that
    an event creates outside a request (a `/call` without session hash) belong to that event's visitor. Returns False
    (and changes nothing) where Gradio's internals are not as expected."""
    from gradio import route_utils, routes

    if getattr(routes.StateHolder, "_playground_fair", False):
        return True
    restore = getattr(route_utils, "restore_session_state", None)
    holder = fair_state_holder()
    if holder is None or restore is None or routes.StateHolder.__name__ != "StateHolder":
        log.warning("Gradio's session handling changed: sessions stay bounded only globally")
        return False

    @functools.wraps(restore)
    def restore_with_owner(app: Any, body: Any) -> Any:
        request = getattr(body, "request", None)
        scope = getattr(request, "scope", None)
        token = REQUEST_SCOPE.set(scope) if isinstance(scope, dict) else None  # the event's own request
        try:
            return restore(app, body)
        finally:
            if token is not None:
                REQUEST_SCOPE.reset(token)

    routes.StateHolder = holder  # type: ignore[misc]
    route_utils.restore_session_state = restore_with_owner  # type: ignore[assignment]
    return True


def _busy_sessions(app: Any) -> set[str]:
    queue = getattr(getattr(app, "get_blocks", lambda: None)(), "_queue", None)
    events = getattr(queue, "event_ids_to_events", None) or {}
    return {getattr(e, "session_hash", None) or "" for e in list(events.values())}


def sweep_sessions(app: Any, idle_s: float, closed_grace_s: float, now: float | None = None) -> int:
    """Frees the state of sessions idle longer than `idle_s` (closed tabs: `closed_grace_s`); never a busy one."""
    holder = getattr(app, "state_holder", None)
    if holder is None:
        return 0
    now = time.time() if now is None else now
    busy = _busy_sessions(app)
    freed = 0
    with holder.lock:
        for session_id, state in list(holder.session_data.items()):
            used = holder.time_last_used.get(session_id)
            age = now - used.timestamp() if used is not None else float("inf")
            limit = closed_grace_s if getattr(state, "is_closed", False) else idle_s
            if age > limit and session_id not in busy:
                holder.session_data.pop(session_id, None)
                holder.time_last_used.pop(session_id, None)
                untrack = getattr(holder, "untrack_locked", None)
                if untrack is not None:
                    untrack(session_id)
                freed += 1
    return freed


def session_lifespan(policy: ServingPolicy, every_s: float = 30.0) -> Callable[[Any], Any]:
    """A FastAPI lifespan that sweeps idle sessions every `every_s` seconds while the app runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(every_s)
                try:
                    freed = sweep_sessions(app, policy.session_idle_s, policy.closed_session_grace_s)
                except Exception as exc:  # a sweep must never take the server down
                    log.warning("session sweep failed: %s", type(exc).__name__)
                    continue
                if freed:
                    log.info("freed %d idle session(s)", freed)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    return lifespan


# ---- answers running at once per visitor ------------------------------------------------------------
def _find_request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import gradio as gr

    for value in (*args, *kwargs.values()):
        if isinstance(value, gr.Request):
            return value
    return None


def _language(fn: Callable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    except TypeError:
        return "de"
    value = bound.arguments.get("lang")
    return normalize_language(value if isinstance(value, str) else None)


def cap_visitor_generators(demo: Any, slots: VisitorSlots) -> list[str]:
    """Every streaming event (page and API), and every other handler that runs an answer (marked with
    limits.holds_visitor_slot, e.g. `/structured`), holds one of the visitor's slots while it runs.

    A visitor (limits.visitor_key: the address, or what a trusted proxy reports) with `slots.limit`
    answers running gets a clear refusal in the page's language instead of starting one more.
    The wrapper keeps the handler's signature (Gradio injects gr.Request through it) and its kind.
    Returns the names of the wrapped events.
    """
    import gradio as gr

    if slots.limit is None:
        return []
    wrapped = []

    def refusal(fn: Callable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> gr.Error:
        lang = _language(fn, args, kwargs)
        return gr.Error(t("err_visitor_busy", lang, limit=slots.limit), title=t("toast_warning", lang))

    def capped_async(fn: Callable) -> Callable:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            key = visitor_key(_find_request(args, kwargs))
            if not slots.acquire(key):
                raise refusal(fn, args, kwargs)
            try:
                async for item in fn(*args, **kwargs):
                    yield item
            finally:
                slots.release(key)

        return wrapper

    def capped_sync(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            key = visitor_key(_find_request(args, kwargs))
            if not slots.acquire(key):
                raise refusal(fn, args, kwargs)
            try:
                yield from fn(*args, **kwargs)
            finally:
                slots.release(key)

        return wrapper

    def capped_coroutine(fn: Callable) -> Callable:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = visitor_key(_find_request(args, kwargs))
            if not slots.acquire(key):
                raise refusal(fn, args, kwargs)
            try:
                return await fn(*args, **kwargs)
            finally:
                slots.release(key)

        return wrapper

    for block_fn in demo.fns.values():
        fn = getattr(block_fn, "fn", None)
        if fn is None or getattr(fn, "_playground_capped", False):
            continue
        if inspect.isasyncgenfunction(fn):
            wrapper = capped_async(fn)
        elif inspect.isgeneratorfunction(fn):
            wrapper = capped_sync(fn)
        elif getattr(fn, "_playground_holds_slot", False) and inspect.iscoroutinefunction(fn):
            wrapper = capped_coroutine(fn)
        else:
            continue
        wrapper._playground_capped = True  # type: ignore[attr-defined]
        block_fn.fn = wrapper
        wrapped.append(str(block_fn.api_name or block_fn.name))
    return wrapped


# ---- model downloads --------------------------------------------------------------------------------
def install_download_policy() -> disk.DownloadPolicy:
    """The operator's bounds on model downloads (components/engines/disk.py: allowed builds, disk budget, free
    margin), with the public profile's defaults. Call it before the page is built: its pickers show them."""
    policy = disk.policy_from_env(public_profile())
    disk.install(policy)
    log.info(
        "model downloads: %s; disk budget %s",
        "any build" if policy.allowed is None else (", ".join(sorted(policy.allowed)) or "none"),
        "none" if policy.budget_gb is None else f"{policy.budget_gb:g} GB",
    )
    return policy


# ---- all of it -------------------------------------------------------------------------------------
def configure(demo: Any, policy: ServingPolicy | None = None) -> dict[str, Any]:
    """Applies the policy to a built page and returns the extra `demo.launch()` keyword arguments.

    Call prepare_runtime_dir() before building the page and this after apply_api_policy().
    """
    from starlette.middleware import Middleware

    policy = policy or serving_policy()
    # the app decides whose X-Forwarded-For counts (limits.visitor_key); uvicorn would otherwise rewrite
    # the peer address from it for any loopback peer, before the app sees the request
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    install_lean_sessions()
    install_fair_sessions()
    demo.playground_sessions_per_visitor = policy.max_sessions_per_visitor
    demo.delete_cache = policy.delete_cache
    cap_visitor_generators(demo, VisitorSlots(policy.visitor_concurrency))
    return {
        "run_history": policy.run_history,
        "state_session_capacity": policy.max_sessions,
        "app_kwargs": {
            "middleware": [Middleware(ServingMiddleware, policy=policy)],
            "lifespan": session_lifespan(policy),
        },
    }


__all__ = [
    "DEFAULT_FRAME_ANCESTORS",
    "RuntimeDir",
    "ServingMiddleware",
    "ServingPolicy",
    "cap_visitor_generators",
    "configure",
    "content_security_policy",
    "exit_on_sigterm",
    "install_download_policy",
    "install_fair_sessions",
    "install_lean_sessions",
    "prepare_runtime_dir",
    "remove_stale_runtime_dirs",
    "security_headers",
    "serving_policy",
    "sweep_sessions",
]
