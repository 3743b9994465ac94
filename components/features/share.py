"""Shareable results: a finished compare round or a voted blind round kept on the server as a read-only snapshot.

A snapshot holds what the visitor saw and nothing more: the question, each pane's model, settings, answer, stats
and the language/register notes where an answer has them. Never the raw prompt, a viewer's pseudonym, a session
hash, an address, a token or a server's URL; a prompt set's system prompt (the page never shows it) stays out too.
Each snapshot is one JSON file named by an unguessable id (secrets.token_urlsafe) in PLAYGROUND_SHARE_DIR, capped
per item (PLAYGROUND_SHARE_MAX_KB) and in all (PLAYGROUND_SHARE_TOTAL_MB), and expires after PLAYGROUND_SHARE_DAYS:
its content is then dropped and a small tombstone says "expired" for TOMBSTONE_DAYS more.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.core.validation import LIMITS
from components.features.compare import LETTERS, MAX_OUTPUT_CHARS, MAX_PANES, Round, votes_path
from components.logs.logging_setup import redact
from components.serving.limits import RateLimiter, parse_rate, public_profile, visitor_key
from components.vocabulary.generation import InputError
from components.vocabulary.messages import LANGUAGES
from components.vocabulary.settings import SETTING_NAMES

FORMAT = "german-llm-playground/share"
VERSION = 1
#: secrets.token_urlsafe(16): 128 random bits, 22 characters of the URL-safe alphabet
ID_BYTES = 16
SHARE_ID = re.compile(r"[A-Za-z0-9_-]{22}")
DEFAULT_DAYS = 30.0
DEFAULT_MAX_KB = 512
DEFAULT_TOTAL_MB = 200
#: shares one visitor may create (PLAYGROUND_SHARE_RATE); sharing the same result again costs nothing
DEFAULT_RATE = "20/hour"
#: the file that stays of an expired share
TOMBSTONE = ".gone"
#: how long an expired link still says "expired" (instead of "unknown") before its tombstone goes
TOMBSTONE_DAYS = 90.0
#: how often opening a link also sweeps the store, and how often creating one does
SWEEP_EVERY_S = 3600.0
CREATE_SWEEP_S = 60.0
#: the most rounds of one comparison a share holds (the latest ones)
MAX_ROUNDS = 20
MAX_ERROR_CHARS = 500
#: stats a share keeps (Answer.stats); anything else an engine might add stays out
STATS_KEYS = ("finish_reason", "prompt_tokens", "completion_tokens", "ttft_s", "total_s", "tokens_per_s")
_URL = re.compile(r"\b(?:https?|wss?)://\S+", re.IGNORECASE)


# ---- settings from the environment -----------------------------------------------------------------
def sharing_enabled() -> bool:
    """PLAYGROUND_SHARE: 1 = on, 0 = off; unset: on, except in the public profile (a Space's operator opts in)."""
    raw = os.environ.get("PLAYGROUND_SHARE", "").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    return not public_profile()


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default
    return value if value > 0 else default


def share_days() -> float:
    """PLAYGROUND_SHARE_DAYS (default 30; fractions allowed): how long a link shows its result."""
    return _env_number("PLAYGROUND_SHARE_DAYS", DEFAULT_DAYS)


def share_dir() -> Path:
    """PLAYGROUND_SHARE_DIR, else `shares/` beside the votes file (data/shares)."""
    raw = os.environ.get("PLAYGROUND_SHARE_DIR", "").strip()
    return Path(raw) if raw else votes_path().parent / "shares"


# ---- what a share holds ----------------------------------------------------------------------------
def _clean_text(value: Any, chars: int) -> str:
    """A server's error line as a share may show it: tokens redacted, URLs gone, capped."""
    text = redact(str(value))
    return _URL.sub("[URL]", text)[:chars]


def _scalar(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return value[:40]
    return None


def _info(pane: Any, name: str) -> Any:
    """An answer's `language` / `register` note, from the pane or its stats (whichever the analysis fills), as
    plain small data: a short string, or a dict of at most 6 scalar fields."""
    value = getattr(pane, name, None)
    if value is None:
        value = getattr(pane, "info", None) or {}
        value = value.get(name) if isinstance(value, dict) else None
    if value is None and isinstance(pane.stats, dict):
        value = pane.stats.get(name)
    if isinstance(value, dict):
        out = {str(k)[:20]: _scalar(v) for k, v in list(value.items())[:6]}
        return {k: v for k, v in out.items() if v is not None} or None
    return _scalar(value)


def _settings(values: Any) -> dict[str, Any]:
    if not isinstance(values, dict):
        return {}
    out = {}
    for name in (*SETTING_NAMES, "family_defaults"):
        value = values.get(name)
        if isinstance(value, (list, tuple)):
            value = [str(v)[:40] for v in value[:8]]
        elif not isinstance(value, (bool, int, float, str)) or value is None:
            continue
        out[name] = value[:40] if isinstance(value, str) else value
    return out


def pane_data(round_: Round, index: int) -> dict[str, Any]:
    p = round_.panes[index]
    errors = p.error_by_lang or ({lang: p.error for lang in LANGUAGES} if p.error else None)
    stats = {k: p.stats.get(k) for k in STATS_KEYS if k in p.stats} if isinstance(p.stats, dict) else None
    return {
        "letter": LETTERS[p.pane],
        "model_id": p.model_id,
        "model_label": p.model_label,
        "settings": _settings(p.settings),
        # the visitor typed it or saw it as the pane's placeholder; a prompt set's own one is never on the page
        "system_prompt": (p.system_prompt or "")[: LIMITS.max_system_chars] if round_.session is None else None,
        "text": p.text[:MAX_OUTPUT_CHARS],
        "error": {lang: _clean_text(text, MAX_ERROR_CHARS) for lang, text in errors.items()} if errors else None,
        "stats": stats,
        "elapsed_s": p.elapsed_s,
        "language": _info(p, "language"),
        "register": _info(p, "register"),
    }


def round_data(round_: Round) -> dict[str, Any]:
    return {
        "title": round_.title,
        "prompt_id": round_.prompt_id,
        "category": round_.category,
        "prompt": round_.prompt[: LIMITS.max_message_chars],
        "started_at": round_.started_at,
        "blind": round_.blind,
        "winner": round_.winner,
        "shared_settings": _settings(round_.shared_settings),
        "panes": [pane_data(round_, i) for i in range(min(len(round_.panes), MAX_PANES))],
    }


def shareable(rounds: Sequence[Round] | None) -> list[Round]:
    """The rounds a share may show; raises InputError when the latest cannot be shared (yet).

    The latest round must be over; a blind one also voted on (before the vote a link would name the models). Earlier
    blind rounds without a vote (a session's unanswered ones) are left out; never more than MAX_ROUNDS.
    """
    if not rounds:
        raise InputError("err_share_nothing")
    last = rounds[-1]
    if not last.done:
        raise InputError("err_share_not_done")
    if last.blind and (last.winner is None or not last.revealed):
        raise InputError("err_share_before_vote")
    kept = [r for r in rounds if r.done and not (r.blind and (r.winner is None or not r.revealed))]
    return kept[-MAX_ROUNDS:]


def snapshot(rounds: Sequence[Round], max_bytes: int, now: float | None = None) -> tuple[dict[str, Any], bytes]:
    """The share of `rounds` (shareable() first) and its JSON; the oldest rounds go while it is over `max_bytes`.
    Raises InputError err_share_too_large when even the latest round alone does not fit."""
    kept = shareable(rounds)
    omitted = len(rounds) - len(kept)
    created = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).isoformat(timespec="seconds")
    items = [round_data(r) for r in kept]
    while True:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "created": created,
            "omitted": omitted,
            "rounds": items,
        }
        blob = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if len(blob) <= max_bytes:
            return data, blob
        if len(items) == 1:
            raise InputError("err_share_too_large", size=-(-len(blob) // 1000), limit=max_bytes // 1000)
        items = items[1:]
        omitted += 1


# ---- the store ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Found:
    data: dict[str, Any]
    expires: float


@dataclass(frozen=True)
class Expired:
    at: float


def _timestamp(value: Any) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(value)).timestamp()
    except (TypeError, ValueError):
        return None


class ShareStore:
    """The shares on disk: create (capped, rate-limited per visitor), read (expiry), sweep. Thread-safe."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        max_item_bytes: int | None = None,
        max_total_bytes: int | None = None,
        days: float | None = None,
        rate: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory) if directory else share_dir()
        self.max_item_bytes = max_item_bytes or int(_env_number("PLAYGROUND_SHARE_MAX_KB", DEFAULT_MAX_KB) * 1000)
        self.max_total_bytes = max_total_bytes or int(
            _env_number("PLAYGROUND_SHARE_TOTAL_MB", DEFAULT_TOTAL_MB) * 1_000_000
        )
        self.days = days or share_days()
        raw_rate = rate if rate is not None else os.environ.get("PLAYGROUND_SHARE_RATE") or DEFAULT_RATE
        self.limiter = RateLimiter(parse_rate(raw_rate))
        self.clock = clock
        self._lock = threading.Lock()
        self._swept = 0.0
        self._used = 0
        #: the link already made for a result (its rounds' ids), so a second click gives the same link
        self._made: OrderedDict[tuple[str, ...], str] = OrderedDict()

    def path(self, share_id: str) -> Path:
        return self.directory / f"{share_id}.json"

    def create(self, rounds: Sequence[Round], request: Any = None) -> str:
        """A new share of `rounds` (or the one made before for the same rounds); its id. Raises InputError: nothing
        to share yet, a blind round before its vote, too large, the store full, the visitor over its rate."""
        key = tuple(r.round_id for r in shareable(rounds))
        with self._lock:
            known = self._made.get(key)
            if known is not None and self.path(known).exists():
                return known
        self.limiter.check(visitor_key(request))
        _, blob = snapshot(rounds, self.max_item_bytes, self.clock())
        with self._lock:
            # the folder is read at most once a minute (40 000 shares: half a second); in between, a running count
            used = self.sweep() if self.clock() - self._swept > CREATE_SWEEP_S else self._used
            if used + len(blob) > self.max_total_bytes:
                raise InputError("err_share_full")
            self.directory.mkdir(parents=True, exist_ok=True)
            share_id = secrets.token_urlsafe(ID_BYTES)
            self._write(self.path(share_id), blob)
            self._used = used + len(blob)
            self._made[key] = share_id
            while len(self._made) > 1000:
                self._made.popitem(last=False)
        return share_id

    @staticmethod
    def _write(path: Path, blob: bytes) -> None:
        """Whole or not at all: a reader never sees half a share."""
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)

    def get(self, share_id: Any) -> Found | Expired | None:
        """The share, Expired (when), or None for an id that is malformed or unknown."""
        self.sweep_due()
        if not isinstance(share_id, str) or not SHARE_ID.fullmatch(share_id):
            return None
        path = self.path(share_id)
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return self._tombstone(share_id)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        created = _timestamp(data.get("created"))
        if created is None:
            return None
        expires = created + self.days * 86400
        if self.clock() >= expires:
            with self._lock:
                self._bury(share_id, expires)
            return Expired(expires)
        return Found(data, expires)

    def _tombstone(self, share_id: str) -> Expired | None:
        try:
            at = _timestamp(self.directory.joinpath(f"{share_id}{TOMBSTONE}").read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            return None
        return Expired(at) if at is not None else None

    def _bury(self, share_id: str, expires: float) -> None:
        """The share's content goes; a tombstone (its expiry, a few bytes) says "expired" for TOMBSTONE_DAYS."""
        stamp = dt.datetime.fromtimestamp(expires, dt.UTC).isoformat(timespec="seconds")
        with contextlib.suppress(OSError):
            self._write(self.directory / f"{share_id}{TOMBSTONE}", stamp.encode())
        self.path(share_id).unlink(missing_ok=True)

    def sweep_due(self) -> None:
        """A sweep when the last is more than SWEEP_EVERY_S ago: expired content goes even if nobody shares again."""
        with self._lock:
            if self.clock() - self._swept > SWEEP_EVERY_S:
                self.sweep()

    def sweep(self) -> int:
        """Expired shares lose their content, old tombstones go; returns the bytes the shares take now. Reads no
        file (a share is never changed after it is written: its mtime is its creation). Call with the lock held."""
        now = self._swept = self.clock()
        used = 0
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                st = entry.stat()
            except OSError:
                continue
            name = entry.name
            if name.endswith(TOMBSTONE):
                if now - st.st_mtime > TOMBSTONE_DAYS * 86400:
                    Path(entry.path).unlink(missing_ok=True)
                continue
            if not name.endswith(".json"):
                continue
            expires = st.st_mtime + self.days * 86400
            if now >= expires:
                self._bury(name[: -len(".json")], expires)
                continue
            used += st.st_size
        self._used = used
        return used


_store: ShareStore | None = None
_store_lock = threading.Lock()


def share_store() -> ShareStore:
    """The app's store from the environment, made once (the page's button and the /share route use it)."""
    global _store
    with _store_lock:
        if _store is None:
            _store = ShareStore()
        return _store


def reset_share_store(store: ShareStore | None = None) -> None:
    """Replaces the process-wide store (tests; None re-reads the environment on next use)."""
    global _store
    with _store_lock:
        _store = store
