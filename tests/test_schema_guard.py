"""The static schema checks (components/core/schema_guard.py): hostile probes and the schemas that must pass."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from components.core.schema_guard import MAX_DEPTH, budget_chars, check_schema_safety
from components.features.structured import EXAMPLE_SCHEMA, parse_schema
from components.vocabulary.generation import InputError

LEFT_RECURSIVE = {
    "type": "object",
    "properties": {"a": {"$ref": "#/$defs/x"}},
    "required": ["a"],
    "$defs": {"x": {"$ref": "#/$defs/x"}},
}
TWO_WAY = {
    "type": "object",
    "properties": {"a": {"$ref": "#/$defs/x"}},
    "required": ["a"],
    "$defs": {"x": {"$ref": "#/$defs/y"}, "y": {"$ref": "#/$defs/x"}},
}
ANY_OF_LOOP = {
    "type": "object",
    "properties": {"a": {"$ref": "#/$defs/x"}},
    "required": ["a"],
    "$defs": {"x": {"anyOf": [{"$ref": "#/$defs/x"}, {"type": "string"}]}},
}
REQUIRED_LOOP = {
    "type": "object",
    "properties": {"a": {"$ref": "#/$defs/a"}},
    "required": ["a"],
    "$defs": {
        "a": {"type": "object", "properties": {"b": {"$ref": "#/$defs/b"}}, "required": ["b"]},
        "b": {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "required": ["a"]},
    },
}
HUGE_MIN_LENGTH = {"type": "object", "properties": {"a": {"type": "string", "minLength": 100000000}}, "required": ["a"]}
TREE = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#"}}},
    "required": ["name"],
}


def deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def refusal(schema: Any, max_new_tokens: int = 512) -> str:
    with pytest.raises(InputError) as refused:
        parse_schema(schema, max_new_tokens)
    return refused.value.key


def test_crashing_schemas_are_refused_before_any_engine() -> None:
    assert refusal(LEFT_RECURSIVE) == "err_schema_left_recursion"
    assert refusal(TWO_WAY) == "err_schema_left_recursion"
    assert refusal(ANY_OF_LOOP) == "err_schema_left_recursion"
    assert refusal(json.dumps(LEFT_RECURSIVE)) == "err_schema_left_recursion"


def test_recursion_without_a_base_case_is_refused_and_with_one_it_passes() -> None:
    assert refusal(REQUIRED_LOOP) == "err_schema_no_finite_value"
    assert parse_schema(TREE, 512) is TREE


def test_sizes_beyond_the_answer_budget_are_refused_with_the_numbers() -> None:
    with pytest.raises(InputError) as refused:
        parse_schema(HUGE_MIN_LENGTH, 512)
    assert refused.value.key == "err_schema_bound"
    assert refused.value.params == {
        "keyword": "minLength",
        "value": 100000000,
        "path": "$.properties.a",
        "limit": budget_chars(512),
        "tokens": 512,
    }
    for keyword in ("maxLength", "minItems", "maxItems", "maxProperties"):
        kind = "string" if "Length" in keyword else "array" if "Items" in keyword else "object"
        schema = {"type": "object", "properties": {"a": {"type": kind, keyword: 10**9}}}
        assert refusal(schema) == "err_schema_bound", keyword
    pattern = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^a{1,99999999}$"}}}
    assert refusal(pattern) == "err_schema_bound"
    # each bound fits, the smallest answer does not
    many = {"type": "object", "properties": {f"p{i}": {"type": "string", "minLength": 4000} for i in range(4)}}
    many["required"] = list(many["properties"])
    assert refusal(many, 512) == "err_schema_answer_too_big"
    assert parse_schema(many, 2048)


def test_nesting_depth_is_refused_without_recursion_errors() -> None:
    assert refusal(deep(200)) == "err_schema_too_deep"
    assert refusal(json.dumps(deep(200))) == "err_schema_too_deep"
    assert refusal("[" * 15000 + "]" * 15000) in {"err_schema_too_deep", "err_schema_too_long"}
    assert parse_schema(deep(MAX_DEPTH // 2 - 2), 512)


def test_unresolvable_and_remote_references_are_refused() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    assert refusal(schema) == "err_schema_ref_unresolved"
    schema = {"type": "object", "properties": {"a": {"$ref": "https://example.org/s.json"}}}
    assert refusal(schema) == "err_schema_remote_ref"


def test_ordinary_schemas_pass_and_the_checks_are_fast() -> None:
    assert parse_schema(EXAMPLE_SCHEMA, 128) is EXAMPLE_SCHEMA
    with_defs = {
        "type": "object",
        "properties": {
            "who": {"$ref": "#/$defs/person"},
            "all": {"type": "array", "items": {"$ref": "#/$defs/person"}},
        },
        "required": ["who"],
        "$defs": {"person": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 80}}}},
    }
    assert parse_schema(with_defs, 256)
    wide = {"type": "object", "properties": {f"f{i}": {"type": "string", "maxLength": 50} for i in range(600)}}
    started = time.perf_counter()
    check_schema_safety(wide, 2048)
    assert time.perf_counter() - started < 1.0


def test_long_reference_chains_are_checked_quickly() -> None:
    def chain(n: int, end: dict[str, Any]) -> dict[str, Any]:
        defs: dict[str, Any] = {
            f"d{i}": {"type": "object", "properties": {"n": {"$ref": f"#/$defs/d{i + 1}"}}, "required": ["n"]}
            for i in range(n)
        }
        defs[f"d{n}"] = end
        return {"type": "object", "properties": {"a": {"$ref": "#/$defs/d0"}}, "required": ["a"], "$defs": defs}

    started = time.perf_counter()
    check_schema_safety(chain(300, {"type": "string"}), 2048)
    assert time.perf_counter() - started < 2.0
    with pytest.raises(InputError) as refused:
        check_schema_safety(chain(300, {"$ref": "#/$defs/d0"}), 2048)
    assert refused.value.key == "err_schema_no_finite_value"
