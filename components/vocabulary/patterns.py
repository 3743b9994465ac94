"""Patterns on RE2 (google-re2): search time linear in the text's length whatever the text, Python's classes."""

from __future__ import annotations

from typing import Any

import re2

#: Python's `\s` on text (str.isspace), which RE2's ASCII-only `\s` is not
WS = r"[\t-\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
#: Python's `\w` on text (letters, digits and numbers of any script, `_`), which RE2's `\w` is not either
WORD = r"\pL\pN_"
#: `i` in any case as Python's IGNORECASE reads it: RE2's case folding leaves out the dotted and dotless i
ANY_I = "[iİı]"


def re2_pattern(pattern: str, ignore_case: bool = False) -> Any:
    """A pattern compiled by RE2 (linear in the text's length; errors raised, not printed)."""
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    return re2.compile(pattern, options)
