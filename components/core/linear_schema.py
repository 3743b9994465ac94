"""Validation against a visitor's JSON schema in bounded time: RE2 for its regular expressions, a deadline for the rest.

jsonschema checks `pattern`, `patternProperties` (and, through them, `additionalProperties`) with Python's `re`,
a backtracking engine: an answer of 27 letters and `!` against `^(\\w+\\s?)*$` took 8.5 s, each letter more twice
that. Here those keywords run on RE2 (google-re2), whose search is linear in the text's length; a pattern RE2
cannot compile (backreferences, lookaround) is refused up front (components/core/schema_guard.py) and, should
one get here, ends the check as "not checked", never in Python's `re`. What else could take long (anyOf/oneOf
nested in a recursive schema, `uniqueItems` over thousands of items) is bounded by a deadline that every
keyword checks, and `uniqueItems` is linear here.

`unevaluatedProperties` together with `patternProperties` in one schema is refused: jsonschema's evaluation of
it would search the patterns with Python's `re`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import re2
from jsonschema import Draft202012Validator, ValidationError, validators

#: Memory one compiled pattern may use (RE2's program and its DFA cache); beyond it a pattern does not compile.
PATTERN_MAX_MEM = 4 << 20


class Unchecked(Exception):
    """The answer could not be checked: `key` (a message key) with `params` says why."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:
    """`pattern` compiled by RE2; raises re2.error where RE2 cannot compile it (nothing is printed)."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = PATTERN_MAX_MEM
    return re2.compile(pattern, options)


def pattern_error(pattern: str) -> bool:
    """True when RE2 cannot compile `pattern` (then no answer could be checked against it)."""
    try:
        compile_pattern(pattern)
    except re2.error:
        return True
    return False


def _search(pattern: str, text: str) -> bool:
    try:
        regex = compile_pattern(pattern)
    except re2.error:
        raise Unchecked("json_check_pattern", pattern=pattern[:120]) from None
    return regex.search(text) is not None


_state = threading.local()


def _tick() -> None:
    if time.monotonic() > getattr(_state, "deadline", float("inf")):
        raise Unchecked("json_check_limit", seconds=getattr(_state, "seconds", 0))


# ---- the keywords that search patterns, on RE2 ---------------------------------------------------------------
def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, extra: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [k for k in instance if k not in known and not any(_search(p, k) for p in patterns)]
    if validator.is_type(extra, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra, path=key)
    elif not extra and extras:
        yield ValidationError(f"Additional properties are not allowed ({', '.join(map(repr, sorted(extras)))})")


def _canonical(value: Any) -> Any:
    """A hashable stand-in for a JSON value, equal where jsonschema's `equal` says equal (1 == 1.0, True != 1)."""
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list):
        return ("list", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((k, _canonical(v)) for k, v in value.items()))
    return ("other", repr(value))


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    # jsonschema compares every pair of unsortable items (objects, mixed types): 5 000 items were seconds
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for item in instance:
        _tick()
        key = _canonical(item)
        if key in seen:
            yield ValidationError(f"{instance!r} has non-unique elements")
            return
        seen.add(key)


def _timed(keyword: Callable[..., Any]) -> Callable[..., Any]:
    def checked(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        _tick()
        return keyword(validator, value, instance, schema)

    return checked


_OWN = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "uniqueItems": _unique_items,
}
LinearValidator = validators.extend(
    Draft202012Validator,
    validators={name: _timed(_OWN.get(name, keyword)) for name, keyword in Draft202012Validator.VALIDATORS.items()},
)


def mixes_pattern_and_unevaluated_properties(schema: Any) -> bool:
    """Whether `schema` has both `patternProperties` and `unevaluatedProperties` somewhere (iterative)."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.update(k for k in ("patternProperties", "unevaluatedProperties") if k in node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return len(found) == 2


def schema_errors(schema: Any, instance: Any, seconds: float) -> list[ValidationError]:
    """Every error of `instance` against `schema`; raises Unchecked when that takes longer than `seconds` or the
    schema holds what cannot be checked in linear time."""
    if mixes_pattern_and_unevaluated_properties(schema):
        raise Unchecked("err_schema_pattern_unevaluated")
    _state.deadline, _state.seconds = time.monotonic() + seconds, seconds
    try:
        return list(LinearValidator(schema).iter_errors(instance))
    except RecursionError:
        raise Unchecked("json_check_limit", seconds=seconds) from None
    finally:
        _state.deadline = float("inf")


__all__ = [
    "PATTERN_MAX_MEM",
    "LinearValidator",
    "Unchecked",
    "compile_pattern",
    "mixes_pattern_and_unevaluated_properties",
    "pattern_error",
    "schema_errors",
]
