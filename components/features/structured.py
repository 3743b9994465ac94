"""Structured (JSON) output: schema checks, the EM German card's example, the JSON prompt and answer validation.

The request carries the schema (GenerationRequest.json_schema) and each engine constrains decoding its own
way (llama.cpp: a GBNF grammar from the schema; TGI: `grammar={"type": "json", "value": schema}`;
OpenAI-compatible servers: `response_format`; the transformers engine refuses). The model is also told in
words what to do, because a grammar only shapes the answer's syntax, not its content: the user message is

    Extrahiere die gesuchten Angaben aus dem folgenden Text. Antworte nur mit JSON, das diesem JSON-Schema
    entspricht, ohne weiteren Text.
    JSON-Schema: {schema as compact JSON}

    Text: {text}

and goes through the family's prompt format with its default system prompt (editable), like a chat message.
Whatever comes back is parsed and validated against the schema here, so an engine without constraints (or
a cut-off answer) shows up as invalid instead of passing silently. That check runs in bounded time (RE2 for the
schema's patterns, a deadline of ANSWER_CHECK_S, answers up to MAX_ANSWER_CHARS: components/core/linear_schema.py)
and, like every other check of a visitor's input here, off the event loop.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import re2
import referencing.exceptions
from jsonschema import Draft202012Validator, FormatChecker

from components.core import schema_guard
from components.core.linear_schema import Unchecked, schema_errors
from components.core.service import Playground, Prepared
from components.core.validation import LIMITS, build_settings, check_message, clean_text
from components.engines import grammar_worker
from components.vocabulary.generation import InputError
from components.vocabulary.markers import refuse_markers
from components.vocabulary.messages import Msg, t

#: The card's example ("Grammar-based structured Output with GGUF"): the sentence, and a schema whose answer
#: looks like the card's output {'jahr': 2020, 'name': 'Paris', 'ort': 'Frankreich'}.
EXAMPLE_TEXT = "Max ging im Jahr, als die Corona-Krise startete, in die Stadt mit dem Eiffelturm."
EXAMPLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "jahr": {"type": "integer"},
        "name": {"type": "string"},
        "ort": {"type": "string"},
    },
    "required": ["jahr", "name", "ort"],
    "additionalProperties": False,
}
EXAMPLE_CARD_OUTPUT: dict[str, Any] = {"jahr": 2020, "name": "Paris", "ort": "Frankreich"}

MAX_SCHEMA_CHARS = 20_000
#: How many schema violations are listed; the rest are counted.
MAX_ERRORS = 20
#: Seconds an answer's check against the schema may take before it is reported as not checked.
ANSWER_CHECK_S = 2.0
#: The longest answer that is checked: far more than max_new_tokens tokens of any tokenizer here write.
MAX_ANSWER_CHARS = 64 * LIMITS.max_new_tokens
#: The meta-schema's formats without "regex", which jsonschema checks by compiling the visitor's pattern with
#: Python's `re`: schema_guard compiles each pattern with RE2 instead and names the one it cannot take.
_META_FORMATS = FormatChecker([name for name in Draft202012Validator.FORMAT_CHECKER.checkers if name != "regex"])

INSTRUCTION = (
    "Extrahiere die gesuchten Angaben aus dem folgenden Text. Antworte nur mit JSON, das diesem JSON-Schema "
    "entspricht, ohne weiteren Text.\nJSON-Schema: {schema}\n\nText: {text}"
)


def example_schema_text() -> str:
    return json.dumps(EXAMPLE_SCHEMA, indent=2, ensure_ascii=False)


def load_schema(value: Any) -> Any:
    """The schema as a JSON value, from a JSON object or its text: size and nesting checked first (cheaply,
    without recursion), so neither a huge text nor a 200-deep schema gets any further."""
    if isinstance(value, str):
        if len(value) > 3 * MAX_SCHEMA_CHARS:
            raise InputError("err_schema_too_long", chars=len(value), limit=MAX_SCHEMA_CHARS)
        text = clean_text(value)
        if not text.strip():
            raise InputError("err_schema_empty")
        if len(text) > MAX_SCHEMA_CHARS:
            raise InputError("err_schema_too_long", chars=len(text), limit=MAX_SCHEMA_CHARS)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError("err_schema_json", line=exc.lineno, column=exc.colno, detail=json_error(exc.msg)) from None
        except RecursionError:
            raise InputError("err_schema_too_deep", limit=schema_guard.MAX_DEPTH) from None
    if value is None:
        raise InputError("err_schema_empty")
    if not isinstance(value, dict):
        raise InputError("err_schema_not_object", kind=type(value).__name__)
    schema_guard.check_shape(value)
    size = len(json.dumps(value, ensure_ascii=False))
    if size > MAX_SCHEMA_CHARS:
        raise InputError("err_schema_too_long", chars=size, limit=MAX_SCHEMA_CHARS)
    return value


def parse_schema(value: Any, max_new_tokens: int | None = None) -> dict[str, Any]:
    """A JSON schema from a JSON object or its text, checked against the Draft 2020-12 meta-schema and refused
    when no engine could compile it safely for an answer of `max_new_tokens` (components/core/schema_guard.py)."""
    value = load_schema(value)
    try:
        Draft202012Validator.check_schema(value, format_checker=_META_FORMATS)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise InputError("err_schema_invalid", path=where, detail=rule_error(exc, in_schema=True)) from None
    remote = _remote_ref(value)
    if remote is not None:
        raise InputError("err_schema_remote_ref", ref=remote[:120])
    schema_guard.check_schema_safety(value, max_new_tokens or LIMITS.max_new_tokens)
    if not value.get("properties") and value.get("type") in (None, "object"):
        # TGI and llama.cpp need named properties to build a grammar; an open object constrains nothing
        raise InputError("err_schema_no_properties")
    return value


def _remote_ref(node: Any) -> str | None:
    """The first $ref that does not point into the schema itself. llama.cpp's grammar converter would fetch
    an https:// $ref from the server, so a schema from a visitor must not name one."""
    if isinstance(node, dict):
        for key, item in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(item, str) and not item.startswith("#"):
                return item
            found = _remote_ref(item)
            if found is not None:
                return found
    elif isinstance(node, list):
        for item in node:
            found = _remote_ref(item)
            if found is not None:
                return found
    return None


# ---- jsonschema's and json's English, said in the page's language ---------------------------------------------
_JSON_MESSAGES = {
    "Expecting value": "json_expecting_value",
    "Expecting property name enclosed in double quotes": "json_expecting_name",
    "Unterminated string starting at": "json_unterminated_string",
    "Invalid control character at": "json_control_character",
    "Extra data": "json_extra_data",
    "Invalid \\escape": "json_bad_escape",
    "Invalid \\uXXXX escape": "json_bad_escape",
}


def json_error(msg: str) -> Msg:
    """Python's json message ("Expecting ',' delimiter") as a message of ours."""
    delimiter = re.fullmatch(r"Expecting '(.)' delimiter", msg)
    if delimiter:
        return Msg("json_expecting_delimiter", char=delimiter[1])
    return Msg(_JSON_MESSAGES.get(msg, "json_syntax"))


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "…"


def _type_names(expected: Any) -> Msg | str:
    names = expected if isinstance(expected, list) else [expected]
    known = [n for n in names if isinstance(n, str) and n in JSON_TYPES]
    if len(known) == 1 and len(names) == 1:
        return Msg(f"schema_type_{known[0]}")
    return ", ".join(str(n) for n in names)


JSON_TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")


def rule_error(error: jsonschema.ValidationError, in_schema: bool = False) -> Msg:
    """One jsonschema error as a message of ours (its own `message` is English)."""
    rule, value, expected = error.validator, error.instance, error.validator_value
    shown = _shown(value)
    if in_schema and error.path and error.path[-1] == "type" and rule in ("anyOf", "enum", "type"):
        return Msg("schema_rule_type_name", value=shown, allowed=", ".join(JSON_TYPES))
    if rule == "required":
        missing = next((name for name in expected if isinstance(value, dict) and name not in value), "?")
        return Msg("schema_rule_required", name=missing)
    if rule == "type":
        return Msg("schema_rule_type", value=shown, expected=_type_names(expected))
    if rule == "enum":
        return Msg("schema_rule_enum", value=shown, allowed=", ".join(_shown(v) for v in expected))
    if rule == "const":
        return Msg("schema_rule_const", value=shown, allowed=_shown(expected))
    if rule in ("additionalProperties", "unevaluatedProperties") and isinstance(value, dict):
        known = set((error.schema or {}).get("properties", {})) if isinstance(error.schema, dict) else set()
        extra = ", ".join(_shown(k) for k in value if k not in known) or shown
        return Msg("schema_rule_additional", value=extra)
    limits = {
        "minimum": "schema_rule_minimum",
        "exclusiveMinimum": "schema_rule_minimum",
        "maximum": "schema_rule_maximum",
        "exclusiveMaximum": "schema_rule_maximum",
        "minLength": "schema_rule_min_length",
        "maxLength": "schema_rule_max_length",
        "minItems": "schema_rule_min_items",
        "maxItems": "schema_rule_max_items",
    }
    if rule in limits:
        return Msg(limits[rule], value=shown, limit=expected)
    if rule == "pattern":
        return Msg("schema_rule_pattern", value=shown, allowed=_shown(expected))
    return Msg("schema_rule_other", value=shown, rule=str(rule))


def json_instruction(text: str, schema: dict[str, Any]) -> str:
    """The user message: what to extract, the schema, and the text."""
    return INSTRUCTION.format(schema=json.dumps(schema, ensure_ascii=False), text=text)


def prepare_structured(
    playground: Playground,
    model_id: Any,
    text: Any,
    schema: Any,
    system_prompt: Any = None,
    lang: str = "de",
    credential: str | None = None,
    **settings: Any,
) -> tuple[Prepared, dict[str, Any]]:
    """The checked request (schema attached) and the parsed schema; raises InputError with a message key.
    `credential`: a signed-in visitor's token, passed through to Playground.prepare.

    The schema is checked for the answer budget the request will have, and neither the text nor the schema may
    hold a control marker of the model's prompt format (both go into the prompt)."""
    raw_schema = load_schema(schema)
    try:
        body = check_message(text)
    except InputError as exc:
        if exc.key != "err_empty":
            raise
        raise InputError("err_structured_empty") from None  # not the chat's "type a message first"
    ref = playground.resolve(model_id)
    fmt = playground.markers_format(ref)
    budget = build_settings(ref.family, fmt.stop, **settings).max_new_tokens
    checked_schema = parse_schema(raw_schema, budget)
    refuse_markers(body, fmt, "err_marker_text")
    refuse_markers(json.dumps(checked_schema, ensure_ascii=False), fmt, "err_marker_schema")
    prepared = playground.prepare(
        model_id,
        json_instruction(body, checked_schema),
        system_prompt=system_prompt,
        json_schema=checked_schema,
        lang=lang,
        credential=credential,
        **settings,
    )
    return prepared, checked_schema


async def check_compiles(prepared: Prepared) -> None:
    """Compiles the request's schema in the grammar worker process with the library its engine uses (a native
    crash, a time-out or running out of memory ends only the worker); raises InputError when it fails."""
    schema = prepared.request.json_schema
    if not schema:
        return
    text = json.dumps(schema, ensure_ascii=False, sort_keys=True)
    try:
        await grammar_worker.check_compiles(prepared.request.model.engine_kind, text)
    except grammar_worker.GrammarRefused as exc:
        raise InputError(exc.key, **exc.params) from None


@dataclass
class AnswerCheck:
    """The answer parsed and validated: `value` is the parsed JSON (None if it is not JSON); `error_key` is the
    message key saying what is wrong (json_not_json, json_invalid, json_schema_unresolvable) or None."""

    valid: bool
    value: Any = None
    parsed: bool = False
    errors: list[str] = field(default_factory=list)
    error_key: str | None = None

    def as_info(self) -> dict[str, Any]:
        return {"valid": self.valid, "errors": list(self.errors), "validation": self.error_key}


# on RE2: with Python's `re`, a fence followed by many spaces and no closing fence took quadratic time
_FENCE = re2.compile(r"(?is)```(?:json)?\s*(.*?)```")


def parse_answer(raw: str, lang: str = "de") -> tuple[bool, Any, str | None]:
    """(parsed?, value, error detail in `lang`). Takes the whole answer, else a ```json fence, else the outermost
    {…}."""
    text = (raw or "").strip()
    candidates = [text]
    fence = _FENCE.search(text)
    if fence:
        candidates.append(fence.group(1).strip())
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    first_error: str | None = None
    for candidate in candidates:
        try:
            return True, json.loads(candidate), None
        except json.JSONDecodeError as exc:
            first_error = first_error or t("json_at", lang, what=json_error(exc.msg), line=exc.lineno, column=exc.colno)
        except (ValueError, RecursionError):  # a number of more than 4 300 digits, nesting past Python's limit
            first_error = first_error or t("json_syntax", lang)
    return False, None, first_error or t("json_empty_answer", lang)


def check_answer(raw: str, schema: dict[str, Any], lang: str = "de", seconds: float = ANSWER_CHECK_S) -> AnswerCheck:
    """Parses the answer and validates it against `schema` within `seconds` (an answer over MAX_ANSWER_CHARS is
    not checked); errors are `$.path: message` lines in `lang`. Blocking: call it off the event loop."""
    if len(raw or "") > MAX_ANSWER_CHARS:
        detail = t("json_check_too_long", lang, chars=len(raw), limit=MAX_ANSWER_CHARS)
        return AnswerCheck(False, None, False, [detail], "json_unchecked")
    ok, value, detail = parse_answer(raw, lang)
    if not ok:
        return AnswerCheck(False, None, False, [detail or ""], "json_not_json")
    try:
        found = sorted(schema_errors(schema, value, seconds), key=lambda e: list(map(str, e.path)))
    except referencing.exceptions.Unresolvable as exc:  # a $ref that cannot be resolved here
        return AnswerCheck(False, value, True, [str(exc)[:300]], "json_schema_unresolvable")
    except Unchecked as exc:
        return AnswerCheck(False, value, True, [t(exc.key, lang, **exc.params)], "json_unchecked")
    if not found:
        return AnswerCheck(True, value, True, [], None)
    errors = [f"{e.json_path}: {t(rule_error(e).key, lang, **rule_error(e).params)[:300]}" for e in found[:MAX_ERRORS]]
    if len(found) > MAX_ERRORS:
        errors.append(f"… +{len(found) - MAX_ERRORS}")
    return AnswerCheck(False, value, True, errors, "json_invalid")


def format_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


__all__ = [
    "ANSWER_CHECK_S",
    "EXAMPLE_CARD_OUTPUT",
    "EXAMPLE_SCHEMA",
    "EXAMPLE_TEXT",
    "MAX_ANSWER_CHARS",
    "AnswerCheck",
    "check_answer",
    "check_compiles",
    "example_schema_text",
    "format_json",
    "json_instruction",
    "load_schema",
    "parse_answer",
    "parse_schema",
    "prepare_structured",
]
