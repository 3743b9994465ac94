"""Uploads within bounds: a per-visitor budget (files and bytes per time window) and a total cap on Gradio's upload
folder that removes the oldest files first, as a pure ASGI middleware in front of `/gradio_api/upload`.

Without them one address kept 229 MB in Gradio's upload folder within 0.8 s, for an hour. The budget is counted
with `limits`' sliding-window counters per visitor (limits.visitor_key's address: X-Forwarded-For only from a
trusted proxy): the bytes a request announces (Content-Length) before any is read, a body without one as it streams,
and each file as its part of the multipart body begins (python-multipart's parser, fed the same bytes). A visitor
over the budget gets 429 with `{"error": "…"}` in the page's language and a Retry-After; a request that could never
fit the budget gets 413. Before a body is read, room for it is made in the upload folder: the oldest files go
first, and when the folder cannot take it (everything left is being written right now) the answer is 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from python_multipart.multipart import MultipartParser
from starlette.requests import Request

from components.serving.body_limit import max_request_bytes, request_language
from components.serving.limits import RateLimitError, parse_rate, public_profile, visitor_key
from components.vocabulary.messages import t

log = logging.getLogger("playground.requests")

#: Gradio's upload route (behind the app's root path)
UPLOAD_PATH = "/gradio_api/upload"
#: PLAYGROUND_UPLOAD_BUDGET when it is unset and the public profile is on: the sources tab takes up to 20 files of
#: at most 1 MB each, so a whole set of sources fits in one window
PUBLIC_DEFAULT_BUDGET = "20 files / 20 MB per 10 min"
#: PLAYGROUND_UPLOAD_TOTAL_MB when it is unset and the public profile is on
PUBLIC_DEFAULT_TOTAL_MB = 200.0
#: Gradio writes an upload into a temporary file at the folder's top level, then moves it into a folder of its own:
#: a top-level file changed this recently may still be written by an upload in progress and is not removed
FRESH_S = 5.0
_SIZES = {"kb": 1_000, "mb": 1_000_000, "gb": 1_000_000_000}
_BUDGET = re.compile(r"^\s*(\d+)\s*files?\s*/\s*(\d+(?:\.\d+)?)\s*(kb|mb|gb)\s*(?:/|per)\s*(.+?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class UploadBudget:
    """At most `files` files and `bytes` bytes per visitor within `window_s` seconds."""

    files: int
    bytes: int
    window_s: float

    def window(self) -> str:
        seconds = self.window_s
        if seconds % 3600 == 0:
            return f"{seconds / 3600:g} h"
        if seconds % 60 == 0:
            return f"{seconds / 60:g} min"
        return f"{seconds:g} s"

    @property
    def megabytes(self) -> float:
        return _mb(self.bytes)


def _mb(size: int) -> float:
    value = round(size / 1_000_000, 1)
    return int(value) if value == int(value) else value


def parse_upload_budget(text: str | None) -> UploadBudget | None:
    """`"20 files / 20 MB per 10 min"` -> UploadBudget(20, 20 000 000, 600); empty or `off` -> None (no budget)."""
    if text is None or text.strip().lower() in {"", "0", "off", "none", "no", "false"}:
        return None
    match = _BUDGET.match(text)
    if not match:
        raise RateLimitError(f"upload budget {text!r}: expected e.g. '20 files / 20 MB per 10 min'")
    files, size, unit, window = int(match[1]), float(match[2]), match[3].lower(), match[4]
    rate = parse_rate(f"{max(files, 1)}/{window}")
    if rate is None or files <= 0 or size <= 0:
        return None
    return UploadBudget(files, int(size * _SIZES[unit]), rate.period_s)


def upload_budget() -> UploadBudget | None:
    """PLAYGROUND_UPLOAD_BUDGET (`off` = none); unset: 20 files / 20 MB per 10 min in the public profile, else none."""
    raw = os.environ.get("PLAYGROUND_UPLOAD_BUDGET")
    if raw is None or not raw.strip():
        return parse_upload_budget(PUBLIC_DEFAULT_BUDGET) if public_profile() else None
    try:
        return parse_upload_budget(raw)
    except RateLimitError as exc:
        raise RateLimitError(f"PLAYGROUND_UPLOAD_BUDGET: {exc}") from None


def upload_total_bytes() -> int | None:
    """PLAYGROUND_UPLOAD_TOTAL_MB (`0`/`off` = no cap); unset: 200 MB in the public profile, else no cap."""
    raw = os.environ.get("PLAYGROUND_UPLOAD_TOTAL_MB", "").strip().lower()
    if not raw:
        return int(PUBLIC_DEFAULT_TOTAL_MB * 1_000_000) if public_profile() else None
    if raw in {"0", "off", "none", "no"}:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise RateLimitError(f"PLAYGROUND_UPLOAD_TOTAL_MB={raw!r} is not a number of MB") from None
    return int(value * 1_000_000) if value > 0 else None


class UploadFolder:
    """A cap on the bytes kept in a folder: room is made before an upload by removing the oldest files first (never
    a temporary file an upload in progress is writing). Thread-safe; what uploads in progress may still write is
    reserved until they end.

    The folder is walked only when the bytes known from the last walk plus those admitted since would not leave
    room (or the last walk is older than RESCAN_S), and a clean-up goes down to LOW_WATER of the cap: with many
    small files a walk takes a while (5 000 files: about 17 ms here), and it must not happen on every upload.
    """

    #: a clean-up removes files until this share of the cap is used, so that the next ones are rare
    LOW_WATER = 0.9
    #: the folder is walked again after this long anyway (Gradio adds and deletes files there too)
    RESCAN_S = 60.0

    def __init__(self, path: Path, cap_bytes: int) -> None:
        self.path = path
        self.cap = cap_bytes
        self._lock = threading.Lock()
        self._reserved: dict[int, int] = {}
        self._tokens = itertools.count(1)
        self._known: int | None = None  # bytes at the last walk plus what was admitted since
        self._walked_at = 0.0

    def files(self) -> list[tuple[float, int, Path]]:
        """(modified, size, path) of every file below the folder (links not followed)."""
        found = []
        for root, _dirs, names in os.walk(self.path):
            for name in names:
                path = Path(root) / name
                with contextlib.suppress(OSError):
                    stat = path.lstat()
                    found.append((stat.st_mtime, stat.st_size, path))
        return found

    def used(self) -> int:
        return sum(size for _mtime, size, _path in self.files())

    def _clean(self, incoming: int, reserved: int) -> int:
        """Walks the folder and removes its oldest files until `incoming` fits under LOW_WATER; returns its bytes."""
        files = sorted(self.files())
        used = sum(size for _mtime, size, _path in files)
        target = self.cap if used + reserved + incoming <= self.cap else self.cap * self.LOW_WATER
        now = time.time()
        removed = 0
        for mtime, size, path in files:
            if used + reserved + incoming <= target:
                break
            if path.parent == self.path and now - mtime < FRESH_S:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                used -= size
                removed += 1
                with contextlib.suppress(OSError):
                    if path.parent != self.path:
                        path.parent.rmdir()  # Gradio's folder per upload, empty now
        if removed:
            log.info("removed %d old upload(s) to keep the upload folder within its cap", removed)
        self._walked_at = time.monotonic()
        return used

    def make_room(self, incoming: int) -> int | None:
        """Removes the oldest files until `incoming` more bytes fit; a reservation to release(), or None: no room."""
        with self._lock:
            reserved = sum(self._reserved.values())
            known = self._known
            stale = time.monotonic() - self._walked_at > self.RESCAN_S
            if known is None or stale or known + reserved + incoming > self.cap:
                known = self._known = self._clean(incoming, reserved)
            if known + reserved + incoming > self.cap:
                return None
            token = next(self._tokens)
            self._reserved[token] = incoming
            return token

    def release(self, token: int | None) -> None:
        """Ends a reservation; its bytes count as kept until the next walk (at most what the upload wrote)."""
        if token is not None:
            with self._lock:
                size = self._reserved.pop(token, 0)
                if self._known is not None:
                    self._known += size


class VisitorUploads:
    """The budget's sliding-window counters per visitor (limits' in-memory storage; idle visitors expire)."""

    def __init__(self, budget: UploadBudget) -> None:
        self.budget = budget
        window = max(1, math.ceil(budget.window_s))
        self._files = RateLimitItemPerSecond(budget.files, window, namespace="upload-files")
        self._bytes = RateLimitItemPerSecond(budget.bytes, window, namespace="upload-bytes")
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    def files_left(self, key: str) -> bool:
        return self._limiter.test(self._files, key)

    def take_bytes(self, key: str, size: int) -> bool:
        return size <= 0 or self._limiter.hit(self._bytes, key, cost=size)

    def take_file(self, key: str) -> bool:
        return self._limiter.hit(self._files, key)

    def retry_after(self, key: str) -> int:
        """Seconds until the visitor's exhausted counter has room again (the window's length when unknown)."""
        now = time.time()
        waits = []
        for item in (self._files, self._bytes):
            stats = self._limiter.get_window_stats(item, key)
            if stats.remaining <= 0 and math.isfinite(stats.reset_time):
                waits.append(stats.reset_time - now)
        return max(1, math.ceil(max(waits, default=self.budget.window_s)))


def _boundary(headers: dict[bytes, bytes]) -> bytes | None:
    content_type = headers.get(b"content-type", b"").decode("latin-1")
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    return match[1].encode("latin-1") if match else None


class UploadGuardMiddleware:
    """Pure ASGI: `app = UploadGuardMiddleware(app)`; other paths pass untouched."""

    def __init__(
        self, app: Any, budget: UploadBudget | None = None, total_bytes: int | None = None, folder: Path | None = None
    ) -> None:
        """`budget` per visitor and `total_bytes` for `folder` (Gradio's upload folder); None: no such bound. The app
        passes upload_budget() and upload_total_bytes()."""
        self.app = app
        self.visitors = VisitorUploads(budget) if budget is not None else None
        self.folder: UploadFolder | None = None
        if total_bytes is not None:
            if folder is None:
                from gradio.utils import get_upload_folder

                folder = Path(get_upload_folder())
            self.folder = UploadFolder(folder, total_bytes)

    async def _answer(self, scope: dict[str, Any], send: Callable, status: int, key: str, **params: Any) -> None:
        headers = dict(scope.get("headers") or [])
        message = t(key, request_language(scope, headers), **params)
        log.warning("request refused", extra={"reason": key, "path": scope.get("path", ""), "status": status})
        body = json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")
        extra = [(b"retry-after", str(params["retry"]).encode())] if "retry" in params else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _over_budget(self, key: str) -> dict[str, Any]:
        assert self.visitors is not None
        budget = self.visitors.budget
        return {
            "files": budget.files,
            "mb": budget.megabytes,
            "window": budget.window(),
            "retry": self.visitors.retry_after(key),
        }

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or (not self.visitors and not self.folder):
            await self.app(scope, receive, send)
            return
        root = scope.get("root_path") or ""
        path = str(scope.get("path") or "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path.rstrip("/") != UPLOAD_PATH:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        try:
            announced: int | None = int(headers[b"content-length"])
        except (KeyError, ValueError):
            announced = None
        visitors = self.visitors
        key = visitor_key(Request(scope))
        if visitors is not None:
            budget = visitors.budget
            if announced is not None and announced > budget.bytes:
                params = {"mb": _mb(announced), "limit": budget.megabytes, "window": budget.window()}
                await self._answer(scope, send, 413, "err_upload_too_large", **params)
                return
            # the announced bytes are taken before any is read; a body without Content-Length is counted as it comes
            if not visitors.files_left(key) or not visitors.take_bytes(key, announced or 0):
                await self._answer(scope, send, 429, "err_upload_budget", **self._over_budget(key))
                return
        reservation = None
        if self.folder is not None:
            incoming = announced if announced is not None else max_request_bytes()
            reservation = await asyncio.to_thread(self.folder.make_room, incoming)
            if reservation is None:
                await self._answer(scope, send, 503, "err_upload_folder_full", retry=60)
                return
        try:
            await self._pass(scope, receive, send, headers, key, counted=announced is not None)
        finally:
            if self.folder is not None:
                self.folder.release(reservation)

    async def _pass(
        self,
        scope: dict[str, Any],
        receive: Callable,
        send: Callable,
        headers: dict[bytes, bytes],
        key: str,
        counted: bool,
    ) -> None:
        visitors = self.visitors
        if visitors is None:
            await self.app(scope, receive, send)
            return
        over = False
        parts = 0

        def part_begin() -> None:
            nonlocal parts
            parts += 1

        boundary = _boundary(headers)
        parser = None
        if boundary:
            with contextlib.suppress(Exception):  # a malformed header: Gradio refuses the body itself
                parser = MultipartParser(boundary, {"on_part_begin": part_begin})
        started = False
        cut = False

        async def counting_receive() -> Any:
            # over the budget: the 429 goes out now and the app is told the client left (as body_limit does)
            nonlocal over, cut, parser, parts, started
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message.get("type") != "http.request":
                return message
            chunk = message.get("body", b"")
            if not counted and not visitors.take_bytes(key, len(chunk)):
                over = True
            if parser is not None and chunk and not over:
                try:
                    parser.write(chunk)
                except Exception:  # not multipart after all: Gradio answers 400
                    parser = None
                while parts and not over:
                    parts -= 1
                    over = not visitors.take_file(key)
            if over:
                cut = True
                if not started:
                    started = True
                    await self._answer(scope, send, 429, "err_upload_budget", **self._over_budget(key))
                return {"type": "http.disconnect"}
            return message

        async def watching_send(message: Any) -> None:
            nonlocal started
            if cut:
                return  # the refusal has been sent; whatever the app answers to the disconnect is dropped
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, watching_send)


__all__ = [
    "PUBLIC_DEFAULT_BUDGET",
    "PUBLIC_DEFAULT_TOTAL_MB",
    "UploadBudget",
    "UploadFolder",
    "UploadGuardMiddleware",
    "VisitorUploads",
    "parse_upload_budget",
    "upload_budget",
    "upload_total_bytes",
]
