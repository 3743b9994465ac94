"""Server-side checks of everything that arrives through the page or the API."""

from __future__ import annotations

import math
import os
import unicodedata
from dataclasses import dataclass
from typing import Any

from components.vocabulary.catalog import RECOMMENDED_SETTINGS, Family
from components.vocabulary.generation import InputError
from components.vocabulary.prompts import Turn
from components.vocabulary.settings import NUMBER_SETTINGS, SamplingSettings, setting_range


def env_int(name: str, default: int) -> int:
    """An integer limit from the environment; `default` when unset or not a number."""
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Limits:
    """Server-side limits; each can be set through the environment (see README)."""

    max_message_chars: int = env_int("PLAYGROUND_MAX_MESSAGE_CHARS", 20_000)
    max_system_chars: int = env_int("PLAYGROUND_MAX_SYSTEM_CHARS", 8_000)
    max_new_tokens: int = env_int("PLAYGROUND_MAX_NEW_TOKENS", 2048)
    max_turns: int = env_int("PLAYGROUND_MAX_TURNS", 50)
    max_stop_sequences: int = 4
    max_stop_chars: int = 50


LIMITS = Limits()

#: name -> (low, high, integer?) of each numeric sampling setting: SamplingSettings' bounds, max_new_tokens within the
#: operator's cap
RANGES: dict[str, tuple[float, float, bool]] = {name: setting_range(name) for name in NUMBER_SETTINGS}
RANGES["max_new_tokens"] = (RANGES["max_new_tokens"][0], min(RANGES["max_new_tokens"][1], LIMITS.max_new_tokens), True)


def clean_text(value: Any) -> str:
    """Drops control characters (keeping newlines and tabs) and normalizes to NFC."""
    if value is None:
        return ""
    text = str(value)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return unicodedata.normalize("NFC", text)


def check_message(value: Any, limit: int | None = None) -> str:
    limit = limit or LIMITS.max_message_chars
    if value is not None and not isinstance(value, str):
        raise InputError("err_wrong_type", name="message", kind=type(value).__name__, expected="string")
    # cheap check first: cleaning only drops characters (NFC may at most triple a few), so a text far over the
    # limit is refused before any work on it (a 50 MB message took 9.7 s of cleaning)
    if value is not None and len(value) > 3 * limit:
        raise InputError("err_too_long_chars", chars=len(value), limit=limit)
    text = clean_text(value)
    if not text.strip():
        raise InputError("err_empty")
    if len(text) > limit:
        raise InputError("err_too_long_chars", chars=len(text), limit=limit)
    return text


def check_system_prompt(value: Any, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise InputError("err_wrong_type", name="system_prompt", kind=type(value).__name__, expected="string")
    if len(value) > 3 * LIMITS.max_system_chars:
        raise InputError("err_system_too_long", chars=len(value), limit=LIMITS.max_system_chars)
    text = clean_text(value)
    if len(text) > LIMITS.max_system_chars:
        raise InputError("err_system_too_long", chars=len(text), limit=LIMITS.max_system_chars)
    return text


def _number(name: str, value: Any) -> float | int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise InputError("err_setting_type", name=name, value=repr(value))
    low, high, integer = RANGES[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError("err_setting_type", name=name, value=repr(value)[:40]) from None
    if not math.isfinite(number):
        raise InputError("err_setting_type", name=name, value=repr(value)[:40])
    if integer:
        if number != int(number):
            raise InputError("err_setting_type", name=name, value=repr(value)[:40])
        number = int(number)
    if not low <= number <= high:
        raise InputError("err_setting_range", name=name, value=value, low=low, high=high)
    return number


def check_setting(name: str, value: Any) -> float | int | None:
    """One sampling setting (a RANGES name) checked as a request's is: None when empty; raises InputError."""
    return _number(name, value)


def parse_stop(value: Any) -> tuple[str, ...]:
    """Stop sequences from a list or from text with one per line."""
    if value is None:
        return ()
    items = value.splitlines() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise InputError("err_stop_sequences", count=LIMITS.max_stop_sequences, chars=LIMITS.max_stop_chars)
    stops = tuple(s for s in (clean_text(item) for item in items) if s.strip())
    if len(stops) > LIMITS.max_stop_sequences or any(len(s) > LIMITS.max_stop_chars for s in stops):
        raise InputError("err_stop_sequences", count=LIMITS.max_stop_sequences, chars=LIMITS.max_stop_chars)
    return stops


def build_settings(family: Family, family_stop: tuple[str, ...], **raw: Any) -> SamplingSettings:
    """Validated settings: given values (SETTING_NAMES) checked against RANGES, gaps filled from the family's
    recommendation, then SamplingSettings' defaults."""
    recommended = family.settings
    values: dict[str, Any] = {}
    for name in NUMBER_SETTINGS:
        value = _number(name, raw.get(name))
        if value is None and name in RECOMMENDED_SETTINGS:
            value = getattr(recommended, name)
        if value is not None:
            values[name] = value
    # a family's recommendation never overrides the operator's cap (PLAYGROUND_MAX_NEW_TOKENS)
    asked = values.get("max_new_tokens", SamplingSettings.model_fields["max_new_tokens"].default)
    values["max_new_tokens"] = min(int(asked), LIMITS.max_new_tokens)
    user_stop = parse_stop(raw.get("stop"))
    values["stop"] = tuple(dict.fromkeys((*family_stop, *family.stop, *user_stop)))
    return SamplingSettings(**values)


def _pair_texts(item: Any) -> tuple[Any, ...]:
    if isinstance(item, dict):
        return tuple(item.values())
    return tuple(item) if isinstance(item, (list, tuple)) else ()


def parse_history(value: Any) -> list[Turn]:
    """History from the API: a list of [user, assistant] pairs (or {"user","assistant"} dicts)."""
    if value in (None, "", []):
        return []
    if not isinstance(value, (list, tuple)):
        raise InputError("err_history")
    if len(value) >= LIMITS.max_turns:
        raise InputError("err_too_many_turns", turns=len(value), limit=LIMITS.max_turns)
    raw_total = sum(len(x) for item in value for x in _pair_texts(item) if isinstance(x, str))
    if raw_total > LIMITS.max_message_chars * 30:
        raise InputError("err_too_long_chars", chars=raw_total, limit=LIMITS.max_message_chars * 10)
    turns: list[Turn] = []
    for item in value:
        if isinstance(item, dict) and "user" in item and "assistant" in item:
            user, assistant = item["user"], item["assistant"]
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            user, assistant = item
        else:
            raise InputError("err_history")
        if not isinstance(user, str) or not isinstance(assistant, (str, type(None))):
            raise InputError("err_history")
        turns.append(Turn(clean_text(user), clean_text(assistant or "")))
    if len(turns) >= LIMITS.max_turns:
        raise InputError("err_too_many_turns", turns=len(turns), limit=LIMITS.max_turns)
    total = sum(len(t.user) + len(t.assistant) for t in turns)
    if total > LIMITS.max_message_chars * 10:
        raise InputError("err_too_long_chars", chars=total, limit=LIMITS.max_message_chars * 10)
    return turns
