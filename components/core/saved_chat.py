"""The chat conversation as the visitor's browser keeps it across a reload: packed bounded, read back untrusted.

The page stores what `pack` returns in the browser's localStorage (gr.BrowserState, encrypted by Gradio) and
sends it back when the page is loaded again. Whatever comes back may have been edited, so `unpack` trusts none
of it: anything of the wrong shape or over a limit is dropped, never raised. Only what the visitor saw is kept
(their messages, the answers, an answer's error line and figures, an answer cut off by a reload as far as it came,
the chosen model, system prompt and sampling settings), never a raw prompt or a secret. Text with a prompt format's
control markers stays text: sending it refuses it (components/vocabulary/markers.py), as for a conversation typed
in this session.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

from components.core import answer_traits
from components.core.validation import LIMITS, check_setting, clean_text, parse_stop
from components.vocabulary.generation import InputError
from components.vocabulary.messages import LANGUAGES, in_every_language
from components.vocabulary.settings import SETTING_NAMES

#: version of the stored shape; a stored value of another version is dropped
VERSION = 1
#: exchanges kept: the last ones, fewer than the history limit (a restored chat can always go on)
MAX_EXCHANGES = max(1, min(20, LIMITS.max_turns - 1))
#: characters of all kept messages and answers together (half the history limit)
MAX_TOTAL_CHARS = LIMITS.max_message_chars * 5
#: one message or answer
MAX_TEXT_CHARS = LIMITS.max_message_chars
#: an error line under an answer
MAX_ERROR_CHARS = 2_000
#: a model id (variant/quant)
MAX_ID_CHARS = 200
#: finish reasons an answer's stats may name (components/vocabulary/messages.py has a `finish_…` text for each)
FINISH_REASONS = frozenset({"length", "stop", "eos_token", "stop_sequence", "stopped", "error", "unknown"})
#: the stop sequences' text box (one per line, each line within the limits)
MAX_STOP_TEXT_CHARS = 2 * LIMITS.max_stop_sequences * (LIMITS.max_stop_chars + 1)
_INT_STATS = ("prompt_tokens", "completion_tokens")
_FLOAT_STATS = ("ttft_s", "total_s", "tokens_per_s")


@dataclass
class SavedChat:
    """What was read back: the conversation (entries like the chat tab's), the model id and system prompt (None:
    not given or not valid)."""

    conversation: list[dict[str, Any]] = field(default_factory=list)
    model_id: str | None = None
    system: str | None = None
    #: the settings that were valid, by name (SETTING_NAMES); a missing one takes the family's recommendation
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.conversation and self.model_id is None and self.system is None and not self.settings


def _text(value: Any, limit: int, required: bool = False) -> str | None:
    """`value` as clean text within `limit` characters; None when it is not a string or too long (or empty when
    `required`). The length is checked before cleaning, which only shortens (NFC may at most triple a few)."""
    if not isinstance(value, str) or len(value) > 3 * limit:
        return None
    text = clean_text(value)
    if len(text) > limit or (required and not text.strip()):
        return None
    return text


def _stats(value: Any) -> dict[str, Any] | None:
    """An answer's figures with the keys and types GenerationStats.as_dict writes; None for anything else."""
    if not isinstance(value, dict) or value.get("finish_reason") not in FINISH_REASONS:
        return None
    out: dict[str, Any] = {"finish_reason": value["finish_reason"]}
    for name in _INT_STATS:
        number = value.get(name)
        if number is None and name == "prompt_tokens":
            out[name] = None
            continue
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= 10_000_000:
            return None
        out[name] = number
    for name in _FLOAT_STATS:
        number = value.get(name)
        if number is None and name != "total_s":
            out[name] = None
            continue
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            return None
        if not math.isfinite(number) or not 0 <= number <= 1e7:
            return None
        out[name] = float(number)
    return out


def _by_lang(value: Any) -> dict[str, str] | None:
    """An error line in each language ({"de": …, "en": …}, as the chat writes it); None for any other shape (the
    entry then keeps its error in the language it was shown in)."""
    if not isinstance(value, dict) or not value or any(lang not in LANGUAGES for lang in value):
        return None
    texts = {lang: _text(text, MAX_ERROR_CHARS, required=True) for lang, text in value.items()}
    if any(text is None for text in texts.values()):
        return None
    return {lang: text for lang, text in texts.items() if text is not None}


def _size(entry: dict[str, Any]) -> int:
    """The characters an entry keeps."""
    translations = sum(map(len, (entry.get("error_by_lang") or {}).values()))
    return len(entry["user"]) + len(entry["assistant"]) + len(entry.get("error", "")) + translations


def _entry(value: Any, open_ok: bool = False) -> dict[str, Any] | None:
    """One exchange that ended (with figures or an error), one marked `interrupted` (its answer was still being
    written when the page went away), with `open_ok` one still being written (it is kept as interrupted), or None."""
    if not isinstance(value, dict):
        return None
    user = _text(value.get("user"), MAX_TEXT_CHARS, required=True)
    assistant = _text(value.get("assistant", ""), MAX_TEXT_CHARS)
    if user is None or assistant is None:
        return None
    entry: dict[str, Any] = {"user": user, "assistant": assistant}
    model = _text(value.get("model"), MAX_ID_CHARS)
    if model:
        entry["model"] = model
    if value.get("error") is not None:
        error = _text(value.get("error"), MAX_ERROR_CHARS, required=True)
        if error is None:
            return None
        entry["error"] = error
        by_lang = _by_lang(value.get("error_by_lang"))
        if by_lang:
            entry["error_by_lang"] = by_lang
    if value.get("stats") is not None:
        stats = _stats(value.get("stats"))
        if stats is None:
            return None
        entry["stats"] = stats
    entry.update(answer_traits.checked(value))  # the answer's language and register, for its stats line
    if "stats" not in entry and "error" not in entry:
        if not (open_ok or value.get("interrupted") is True):
            return None
        entry["interrupted"] = True  # a reload during the answer: the question and what had come stay
    return entry


def interrupted_note(entry: dict[str, Any]) -> dict[str, Any]:
    """A restored interrupted entry as the chat draws it: its error line says, in every language, that the answer
    was cut off by the reload."""
    if not entry.get("interrupted"):
        return entry
    texts = in_every_language("err_interrupted_by_reload")
    return {**entry, "error": texts[LANGUAGES[0]], "error_by_lang": texts}


def _settings(value: Any) -> dict[str, Any]:
    """The sampling settings of `value` that pass the same checks as a request's (validation.py): numbers within
    RANGES (the seed as its digits, as its text box shows it), stop sequences one per line; the rest left out."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, Any] = {}
    for name in SETTING_NAMES[:-1]:
        raw = value.get(name)
        if isinstance(raw, str) and len(raw) > 40:
            continue
        try:
            number = check_setting(name, raw)
        except InputError:
            continue
        if number is not None:
            out[name] = str(number) if name == "seed" else number
    stop = value.get("stop")
    if isinstance(stop, str) and len(stop) <= MAX_STOP_TEXT_CHARS:
        with contextlib.suppress(InputError):
            out["stop"] = "\n".join(parse_stop(stop))
    return out


def _bounded(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last entries within MAX_EXCHANGES and MAX_TOTAL_CHARS."""
    kept: list[dict[str, Any]] = []
    total = 0
    for entry in reversed(entries[-MAX_EXCHANGES:]):
        size = _size(entry)
        if total + size > MAX_TOTAL_CHARS:
            break
        kept.append(entry)
        total += size
    kept.reverse()
    return kept


def pack(conversation: Any, model_id: Any, system: Any, settings: Any = None) -> dict[str, Any]:
    """What the browser keeps: the conversation's last exchanges that ended, the model id, the system prompt and
    the sampling settings (values in SETTING_NAMES order, as the settings controls give them)."""
    entries = conversation if isinstance(conversation, list) else []
    last = entries[-MAX_EXCHANGES:]
    # the last exchange may still be running (saved while it streams): it is kept, marked interrupted
    ended = [e for i, x in enumerate(last) if (e := _entry(x, open_ok=i == len(last) - 1)) is not None]
    return {
        "v": VERSION,
        "model": _text(model_id, MAX_ID_CHARS),
        "system": _text(system, LIMITS.max_system_chars),
        "conversation": _bounded(ended),
        "settings": _settings(dict(zip(SETTING_NAMES, settings, strict=False)) if isinstance(settings, list) else {}),
    }


def unpack(value: Any) -> SavedChat:
    """What the browser sent back, checked: entries of the wrong shape or over a limit are dropped, a value that is
    not a stored chat gives an empty one. Never raises."""
    if not isinstance(value, dict) or value.get("v") != VERSION:
        return SavedChat()
    items = value.get("conversation")
    items = items[-MAX_EXCHANGES:] if isinstance(items, list) else []
    conversation = _bounded([interrupted_note(e) for e in (_entry(x) for x in items) if e is not None])
    model = _text(value.get("model"), MAX_ID_CHARS, required=True)
    system = _text(value.get("system"), LIMITS.max_system_chars)
    return SavedChat(conversation, model, system, _settings(value.get("settings")))


__all__ = ["MAX_EXCHANGES", "MAX_TOTAL_CHARS", "VERSION", "SavedChat", "interrupted_note", "pack", "unpack"]
