"""Request-size cap: an ASGI middleware that refuses a request body over PLAYGROUND_MAX_REQUEST_BYTES at once.

Without it, a 50 MB message is parsed, queued and cleaned (9.7 s on the event loop) before its length is checked.
With this cap a body announced larger than the limit is answered 413 before a byte of it is read, and a body
without Content-Length (chunked) is counted while it arrives and cut off at the limit. The answer is one JSON
object, `{"error": "…"}`, in the page's language (`lang` in the query or the page's address, else German), and
one JSON log line says what was refused.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

from components.core.validation import env_int
from components.vocabulary.messages import normalize_language, t

log = logging.getLogger("playground.requests")

#: Default cap: the largest legitimate request is the sources tab's 400 000 characters of sources (escaped
#: as JSON, up to 6 bytes for a non-ASCII character) or a 1 MB upload, well under 4 MB.
DEFAULT_MAX_REQUEST_BYTES = 4_000_000


def max_request_bytes() -> int:
    return env_int("PLAYGROUND_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES)


def request_language(scope: dict[str, Any], headers: dict[bytes, bytes]) -> str:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "lang" in query:
        return normalize_language(query["lang"][0])
    referer = headers.get(b"referer", b"").decode("latin-1")
    if referer:
        lang = parse_qs(urlsplit(referer).query).get("lang")
        if lang:
            return normalize_language(lang[0])
    return "de"


class BodyLimitMiddleware:
    """Pure ASGI (no body buffering): `app = BodyLimitMiddleware(app, limit)`."""

    def __init__(self, app: Any, limit: int | None = None) -> None:
        self.app = app
        self.limit = max_request_bytes() if limit is None else limit

    async def _refuse(self, scope: dict[str, Any], send: Any, headers: dict[bytes, bytes], size: int) -> None:
        message = t("err_request_too_large", request_language(scope, headers), size=size, limit=self.limit)
        log.warning(
            "request refused",
            extra={"reason": "body_too_large", "path": scope.get("path", ""), "bytes": size, "limit": self.limit},
        )
        body = json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or self.limit <= 0:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        announced = headers.get(b"content-length")
        if announced is not None:
            try:
                size = int(announced)
            except ValueError:
                size = self.limit + 1
            if size > self.limit:
                await self._refuse(scope, send, headers, size)
                return
            await self.app(scope, receive, send)
            return
        received = 0
        started = False
        cut = False

        async def counting_receive() -> Any:
            # past the cap: the 413 goes out now and the app is told the client left (an exception raised here
            # would be turned into a 400 by the framework's body parsing)
            nonlocal received, started, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    cut = True
                    if not started:
                        started = True
                        await self._refuse(scope, send, headers, received)
                    return {"type": "http.disconnect"}
            return message

        async def watching_send(message: Any) -> None:
            nonlocal started
            if cut:
                return  # the 413 has been sent; whatever the app answers to the disconnect is dropped
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, watching_send)


__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "BodyLimitMiddleware", "max_request_bytes", "request_language"]
