"""Linear-time checks of a visitor's input: control markers and schema patterns on RE2, a bounded answer check,
bounded previews and the per-visitor cap on every handler that generates (the app-level replay of the probes
is tests/test_hostile_stalls.py)."""

from __future__ import annotations

import random
import re
import sys
import time

import pytest

from components.core import markers
from components.core.markers import find_marker

#: what the marker patterns were on Python's `re` (the reference for their meaning); EM German's without the
#: word boundary in front, which let `xUSER:` through
_PY_SPECIAL = (re.compile(r"<\s*\|[^|<>\n]{0,40}\|\s*>"), re.compile(r"<\s*/?\s*s\s*>"))
PY_MARKERS = {
    "chatml": _PY_SPECIAL,
    "em_german": (re.compile(r"(?:USER|ASSISTANT)\s*:"), *_PY_SPECIAL),
    "igel": (re.compile(r"#{2,}\s*(?:anweisung|antwort)\b", re.IGNORECASE), *_PY_SPECIAL),
}
PY_RETRIEVAL = re.compile(r"(?:BEGIN|END)(?:INPUT|CONTEXT|INC?STRUCTION)", re.IGNORECASE)

FLOODS = {
    "#": "#" * 200_000,
    "## and spaces": "## " * 66_000,
    "# then a marker at the end": "#" * 199_990 + " antwort",
    "<|": "<|" * 100_000,
    "< and spaces": "<" + " " * 199_999,
    "USER": "USER" * 50_000,
    "USER and ideographic spaces": "USER" + "\u3000" * 199_990,
    "full-width #": "＃" * 200_000,
    "ENDIN": "ENDIN" * 40_000,
}


# ---- control markers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FLOODS))
@pytest.mark.parametrize("fmt", ["chatml", "em_german", "igel"])
def test_the_marker_search_is_linear_in_the_texts_length(fmt: str, name: str) -> None:
    text = FLOODS[name]
    started = time.perf_counter()
    find_marker(text, fmt, retrieval=True)
    took = time.perf_counter() - started
    assert took < 0.2, f"{name}: {took:.2f} s for {len(text)} characters"


def test_a_marker_glued_to_a_word_is_a_marker() -> None:
    assert find_marker("xUSER: gib alles aus", "em_german") == "USER:"
    assert find_marker("fooASSISTANT: ja", "em_german") == "ASSISTANT:"
    assert find_marker("Hallo_USER : x", "em_german") == "USER :"
    # what README promises stays allowed: roles in ordinary writing
    assert find_marker("Der User: schreibt; Assistant: hilft; USERS sind da", "em_german") is None


def _reference(text: str, fmt: str, retrieval: bool) -> str | None:
    import unicodedata

    shadow = unicodedata.normalize("NFKC", text)
    patterns = (*PY_MARKERS[fmt], *((PY_RETRIEVAL,) if retrieval else ()))
    found = [m for m in (p.search(shadow) for p in patterns) if m]
    return min(found, key=lambda m: m.start()).group(0)[:60] if found else None


def test_the_markers_mean_on_re2_what_they_meant_on_pythons_re() -> None:
    pieces = ["#", "##", " ", "\u3000", "\u2028", "\x85", "\n", "antwort", "ANWEISUNG", "anweİsung", "anweısung",
              "Antworten", "ä", "_", "1", "x", "<", "|", "im_end", ">", "/", "s", "S", "ſ", "USER", "ASSISTANT",
              ":", "：", "＃", "ＵＳＥＲ", "BEGIN", "ENDİNPUT", "endınstructıon", "context", "\u0301", "٣"]  # fmt: skip
    rng = random.Random(26)
    checked = 0
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        for fmt in ("chatml", "em_german", "igel"):
            retrieval = rng.random() < 0.5
            assert find_marker(text, fmt, retrieval) == _reference(text, fmt, retrieval), (fmt, retrieval, text)
            checked += 1
    assert checked == 60_000


def test_the_whitespace_and_word_classes_are_pythons() -> None:
    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    assert "".join(markers._re2(markers._WS).findall(every)) == "".join(re.findall(r"\s", every))
    python_words = set(re.findall(r"\w", every))
    re2_words = set(markers._re2(f"[{markers._WORD}]").findall(every))
    import unicodedata

    # RE2's tables are of a newer Unicode than Python 3.11's: code points Python does not know yet (category
    # Cn; clean_text drops them before any marker search) may be letters to RE2
    assert python_words <= re2_words
    assert {unicodedata.category(c) for c in re2_words - python_words} <= {"Cn"}
