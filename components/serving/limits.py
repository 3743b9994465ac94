"""Per-visitor rate limiting and the open/closed API switch, configured through the environment."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from components.vocabulary.generation import InputError

#: unit names accepted in PLAYGROUND_RATE_LIMIT ("20/min", "5/10s", "300/hour") -> seconds
_UNITS: dict[str, float] = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d+(?:\.\d+)?)?\s*([a-z]+?)s?\s*$", re.IGNORECASE)

#: the message key every refusal of this module uses (components/vocabulary/messages.py)
RATE_LIMITED_KEY = "err_rate_limited"


class RateLimitError(ValueError):
    """PLAYGROUND_RATE_LIMIT (or a rate given in code) is not of the form `N/unit`."""


@dataclass(frozen=True)
class Rate:
    """`requests` per `period_s` seconds; also the bucket size, so a visitor may burst that many."""

    requests: int
    period_s: float

    @property
    def per_second(self) -> float:
        return self.requests / self.period_s

    def describe(self) -> str:
        for name, seconds in (("day", 86400), ("hour", 3600), ("min", 60)):
            if self.period_s == seconds:
                return f"{self.requests}/{name}"
        return f"{self.requests}/{self.period_s:g}s"


def parse_rate(text: str | None) -> Rate | None:
    """`"20/min"` -> Rate(20, 60); empty, `"0"`, `"off"` -> None (no limit). Raises RateLimitError."""
    if text is None or text.strip().lower() in {"", "0", "off", "none", "no", "false"}:
        return None
    match = _RATE.match(text)
    if not match:
        raise RateLimitError(f"rate {text!r}: expected N/unit, e.g. 20/min, 5/10s, 300/hour")
    count, multiple, unit = int(match[1]), float(match[2] or 1), match[3].lower()
    if unit not in _UNITS:
        raise RateLimitError(f"rate {text!r}: unknown unit {unit!r} (use s, min, hour or day)")
    if count <= 0 or multiple <= 0:
        return None
    return Rate(count, multiple * _UNITS[unit])


class RateLimited(InputError):
    """A refusal that says when to try again; an InputError, so the page and API show it as such."""

    def __init__(self, retry_after_s: float, rate: Rate) -> None:
        self.retry_after_s = retry_after_s
        # whole seconds, rounded up: "in 0 s" would invite an immediate, refused retry
        super().__init__(RATE_LIMITED_KEY, retry=max(1, math.ceil(retry_after_s)), limit=rate.describe())


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets per visitor key. Thread-safe; Gradio-free; memory bounded by `max_visitors`.

    A visitor starts with a full bucket (`rate.requests` tokens) that refills continuously at
    `rate.per_second`; each request takes one token. Buckets of visitors gone quiet are dropped
    (a full bucket carries no information), and beyond `max_visitors` the longest-idle go first.
    """

    def __init__(
        self,
        rate: Rate | None,
        clock: Callable[[], float] = time.monotonic,
        max_visitors: int = 50_000,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._max = max_visitors
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate is not None

    def __len__(self) -> int:
        return len(self._buckets)

    def retry_after(self, key: str) -> float:
        """Takes one token for `key`: 0.0 when allowed, else seconds until a token is there."""
        rate = self.rate
        if rate is None:
            return 0.0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = _Bucket(float(rate.requests), now)
            else:
                bucket.tokens = min(float(rate.requests), bucket.tokens + (now - bucket.stamp) * rate.per_second)
                bucket.stamp = now
            self._buckets[key] = bucket  # most recently used last
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - bucket.tokens) / rate.per_second
            self._prune(now)
        return wait

    def check(self, key: str) -> None:
        """Takes one token for `key` or raises RateLimited (message key `err_rate_limited`)."""
        wait = self.retry_after(key)
        if wait > 0 and self.rate is not None:
            raise RateLimited(wait, self.rate)

    def _prune(self, now: float) -> None:
        rate = self.rate
        assert rate is not None
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        # the oldest entries first; stop at the first one that still matters
        for key in list(self._buckets)[:64]:
            bucket = self._buckets[key]
            if bucket.tokens + (now - bucket.stamp) * rate.per_second >= rate.requests:
                del self._buckets[key]
            else:
                break


# ---- the public profile ------------------------------------------------------------------------
def public_profile() -> bool:
    """PLAYGROUND_PUBLIC: 1 = serve as a public Space, 0 = not; unset = on where SPACE_ID is set (a Space)."""
    raw = os.environ.get("PLAYGROUND_PUBLIC", "").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    return bool(os.environ.get("SPACE_ID"))


#: PLAYGROUND_RATE_LIMIT when it is unset and the public profile is on
PUBLIC_DEFAULT_RATE = "20/min"
#: PLAYGROUND_VISITOR_CONCURRENCY when it is unset and the public profile is on
PUBLIC_DEFAULT_VISITOR_CONCURRENCY = 2


def rate_setting() -> str | None:
    """The rate in force: PLAYGROUND_RATE_LIMIT (``off`` switches it off), else 20/min in the public profile."""
    raw = os.environ.get("PLAYGROUND_RATE_LIMIT")
    if raw is None or not raw.strip():
        return PUBLIC_DEFAULT_RATE if public_profile() else None
    return raw


# ---- who is a visitor ------------------------------------------------------------------------------
def trusted_proxies() -> int:
    """How many reverse proxies append to X-Forwarded-For in front of the app.

    PLAYGROUND_TRUSTED_PROXIES, else 1 on a Hugging Face Space (SPACE_ID is set there), else 0.
    Only entries appended by trusted proxies are believed: a visitor can write anything into the
    header it sends, but not into what the proxy appends after it.
    """
    raw = os.environ.get("PLAYGROUND_TRUSTED_PROXIES", "").strip()
    if raw.isdigit():
        return int(raw)
    return 1 if os.environ.get("SPACE_ID") else 0


def trusted_proxy_peers() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
    """The peers whose X-Forwarded-For is believed; None = any peer (on a Space: its proxy is the only way in).

    PLAYGROUND_TRUSTED_PROXY_IPS: comma-separated addresses or networks (``127.0.0.1, 10.0.0.0/8``);
    ``*`` = any peer. Unset: any peer on a Space, no peer elsewhere, so that a client on the same
    host (or anyone reaching the port directly) cannot pick a new address per request.
    """
    raw = os.environ.get("PLAYGROUND_TRUSTED_PROXY_IPS")
    if raw is None or not raw.strip():
        return None if os.environ.get("SPACE_ID") else []
    if raw.strip() == "*":
        return None
    nets = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise RateLimitError(f"PLAYGROUND_TRUSTED_PROXY_IPS: {part!r} is not an address or network") from None
    return nets


def _peer_is_trusted(host: str | None, peers: list[Any] | None) -> bool:
    if peers is None:
        return True
    if not host or not peers:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in peers)


def visitor_key(request: Any, proxies: int | None = None, peers: list[Any] | bool | None = False) -> str:
    """The rate-limit key of a request: the client's address, else its session hash.

    `request` is anything with `headers`, `client.host` and `session_hash` (a gr.Request).
    Keyed by address rather than session because an API caller can open a fresh session per
    call; the session is the fallback when no address is known (tests, in-process calls).
    X-Forwarded-For counts only with `proxies` > 0 and from a peer in `peers`
    (default: trusted_proxies() and trusted_proxy_peers()); any other peer is keyed by its own address.
    """
    if request is None:
        return "anonymous"
    proxies = trusted_proxies() if proxies is None else proxies
    trusted_peers = trusted_proxy_peers() if peers is False else peers
    headers: Mapping[str, str] | Any = getattr(request, "headers", None) or {}
    client = getattr(request, "client", None)
    host = getattr(client, "host", None) if client is not None else None
    behind_proxy = proxies > 0 and _peer_is_trusted(host, trusted_peers)  # type: ignore[arg-type]
    if behind_proxy:
        try:
            forwarded = headers.get("x-forwarded-for") or ""
        except Exception:  # an odd headers object must not break a request
            forwarded = ""
        hops = [h.strip() for h in str(forwarded).split(",") if h.strip()]
        if len(hops) >= proxies:
            return f"ip:{hops[-proxies]}"
    # behind a proxy the peer address is the proxy's, shared by every visitor: not a key
    if host and not behind_proxy:
        return f"ip:{host}"
    session = getattr(request, "session_hash", None)
    if session:
        return f"session:{session}"
    return f"ip:{host}" if host else "anonymous"


# ---- answers running at once per visitor -----------------------------------------------------------
class VisitorSlots:
    """At most `limit` requests running at once per visitor key (None = no cap). Thread-safe, Gradio-free."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit if limit and limit > 0 else None
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> bool:
        """Takes a slot for `key`: False (and nothing taken) when the visitor already runs `limit`."""
        with self._lock:
            count = self._running.get(key, 0)
            if self.limit is not None and count >= self.limit:
                return False
            self._running[key] = count + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            count = self._running.get(key, 0) - 1
            if count > 0:
                self._running[key] = count
            else:
                self._running.pop(key, None)

    def running(self, key: str) -> int:
        return self._running.get(key, 0)

    def __len__(self) -> int:
        return len(self._running)


# ---- live previews per visitor ------------------------------------------------------------------------------
#: PLAYGROUND_PREVIEW_RATE when it is unset and the public profile is on
PUBLIC_DEFAULT_PREVIEW_RATE = "5/s"
#: previews one visitor may have running (or waiting for the rate) at once: two boxes changed together
PREVIEW_PARALLEL = 2
#: the longest a preview waits for the rate before it is skipped
PREVIEW_MAX_WAIT_S = 1.0


class PreviewGate:
    """The page's live previews (raw prompt, schema note) of one visitor: at most PREVIEW_PARALLEL at once and
    `rate` of them; one over the rate waits for its turn (up to PREVIEW_MAX_WAIT_S), so the last change of
    someone typing is still shown, and one beyond that is skipped (the page keeps what it shows). Thread-safe."""

    def __init__(self, rate: Rate | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limiter = RateLimiter(rate, clock)
        self.slots = VisitorSlots(PREVIEW_PARALLEL)

    def enter(self, key: str, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Whether a preview for `key` may run now (blocking up to PREVIEW_MAX_WAIT_S); call leave() after."""
        if not self.slots.acquire(key):
            return False
        wait = self.limiter.retry_after(key)
        if 0 < wait <= PREVIEW_MAX_WAIT_S:
            sleep(wait)
            wait = self.limiter.retry_after(key)
        if wait > 0:
            self.slots.release(key)
            return False
        return True

    def leave(self, key: str) -> None:
        self.slots.release(key)


_preview_gate: PreviewGate | None = None


def preview_gate() -> PreviewGate:
    """The app's gate from PLAYGROUND_PREVIEW_RATE (`off` = no rate), else 5/s in the public profile, made once."""
    global _preview_gate
    with _limiter_lock:
        if _preview_gate is None:
            raw = os.environ.get("PLAYGROUND_PREVIEW_RATE")
            if raw is None or not raw.strip():
                raw = PUBLIC_DEFAULT_PREVIEW_RATE if public_profile() else None
            _preview_gate = PreviewGate(parse_rate(raw))
        return _preview_gate


def reset_preview_gate(gate: PreviewGate | None = None) -> None:
    """Replaces the process-wide preview gate (tests; None re-reads the environment on next use)."""
    global _preview_gate
    with _limiter_lock:
        _preview_gate = gate


def holds_visitor_slot(fn: Any) -> Any:
    """Marks a handler that runs an answer without being a generator (a coroutine that returns the whole
    answer, such as `/structured`): the per-visitor cap holds it like the streaming ones."""
    fn._playground_holds_slot = True
    return fn


def visitor_concurrency() -> int | None:
    """PLAYGROUND_VISITOR_CONCURRENCY (0 = no cap); unset: 2 in the public profile, else no cap."""
    raw = os.environ.get("PLAYGROUND_VISITOR_CONCURRENCY", "").strip()
    if raw.isdigit():
        return int(raw) or None
    return PUBLIC_DEFAULT_VISITOR_CONCURRENCY if public_profile() else None


# ---- the process-wide limiter ------------------------------------------------------------------
_limiter: RateLimiter | None = None
_limiter_lock = threading.Lock()


def rate_limiter() -> RateLimiter:
    """The app's limiter from PLAYGROUND_RATE_LIMIT (e.g. "20/min"; unset = none, 20/min when public), made once."""
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            _limiter = RateLimiter(parse_rate(rate_setting()))
        return _limiter


def reset_rate_limiter(limiter: RateLimiter | None = None) -> None:
    """Replaces the process-wide limiter (tests; or None to re-read the environment on next use)."""
    global _limiter
    with _limiter_lock:
        _limiter = limiter


def check_rate(request: Any) -> None:
    """The one call the page and the API make before generating: raises RateLimited when over."""
    rate_limiter().check(visitor_key(request))


# ---- how many requests run at once ----------------------------------------------------------------
DEFAULT_MAX_CONCURRENT_EVENTS = 256


def max_concurrent_events() -> int:
    """For `demo.launch(max_threads=...)`: PLAYGROUND_MAX_CONCURRENCY, default 256.

    Gradio's queue runs at most `max_threads` events at the same time, async ones included, even
    with `concurrency_limit=None` (queueing.py keeps that many job slots): with the default 40, the
    41st visitor waits for someone's whole answer although the server could stream to all of them.
    Local models still answer one request at a time each (their engine's lock), so this only lets
    remote streams and waiting-in-line messages run side by side.
    """
    raw = os.environ.get("PLAYGROUND_MAX_CONCURRENCY", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return DEFAULT_MAX_CONCURRENT_EVENTS


# ---- open or closed API ------------------------------------------------------------------------
def api_open() -> bool:
    """PLAYGROUND_API_OPEN: unset or 1 = named endpoints for gradio_client; 0 = page only."""
    return os.environ.get("PLAYGROUND_API_OPEN", "1").strip().lower() not in {"0", "false", "no", "off"}


def apply_api_policy(demo: Any, open_api: bool | None = None) -> list[str]:
    """Makes the API exactly the named gr.api endpoints, or nothing when PLAYGROUND_API_OPEN=0.

    Page events (pickers, previews, buttons) become "private" either way: they are the page's
    plumbing, not an API, and would otherwise each show up on the API page and in gradio_client
    (Gradio makes every event public unless told otherwise). With the API closed, the API-only
    endpoints (gr.api: /chat, /models, ...; nothing on the page calls them) are removed, so even a
    raw HTTP caller cannot reach them, and the queue-skipping REST routes are off
    (`api_open=False`). The page keeps working: its events stay, private, behind the queue.
    Call it after building, before `demo.queue()` / `demo.launch()`. Returns the names hidden or removed.
    It also reads PLAYGROUND_RATE_LIMIT, so a malformed value stops the start (RateLimitError) instead
    of failing every request later.
    """
    rate_limiter()
    preview_gate()
    trusted_proxy_peers()
    keep_api = api_open() if open_api is None else open_api
    changed = []
    for fn_id, fn in list(demo.fns.items()):
        api_only = not getattr(fn, "targets", None) and getattr(fn, "fn", None) is not None
        if api_only:
            if not keep_api:
                del demo.fns[fn_id]  # no component triggers it: removing it breaks nothing on the page
                changed.append(str(fn.api_name))
        elif getattr(fn, "api_visibility", "private") != "private":
            fn.api_visibility = "private"
            changed.append(str(fn.api_name))
    if not keep_api:
        demo.api_open = False
    return changed


__all__ = [
    "RATE_LIMITED_KEY",
    "PreviewGate",
    "Rate",
    "RateLimitError",
    "RateLimited",
    "RateLimiter",
    "VisitorSlots",
    "api_open",
    "apply_api_policy",
    "check_rate",
    "holds_visitor_slot",
    "max_concurrent_events",
    "parse_rate",
    "preview_gate",
    "public_profile",
    "rate_limiter",
    "rate_setting",
    "reset_preview_gate",
    "reset_rate_limiter",
    "trusted_proxies",
    "trusted_proxy_peers",
    "visitor_concurrency",
    "visitor_key",
]
