"""Static safety checks of a visitor's JSON schema: what no grammar compiler can build safely is refused first.

Grammar compilers (llama.cpp's schema-to-grammar converter and grammar parser, xgrammar, a TGI or vLLM server's
outlines/xgrammar) turn a schema into grammar rules. Some schemas make them crash or eat the machine, so they
are refused here, in plain Python, iteratively (no recursion: a 10 000-deep schema raises no RecursionError),
before the meta-schema check and before any engine sees them:

- nesting deeper than MAX_DEPTH, more than MAX_NODES subschemas;
- a `$ref` that does not resolve inside the schema;
- left recursion: a cycle of `$ref` / `anyOf` / `oneOf` / `allOf` that consumes nothing before coming back
  (`x ::= x`; llama.cpp's grammar parser gives up on it and llama-cpp-python crashed with SIGSEGV);
- recursion without a base case: no finite JSON value satisfies the schema (two objects that require each
  other), so a constrained answer could never end;
- sizes beyond the answer budget: a count keyword (minLength, maxLength, minItems, …) or a regex quantifier
  `{n}` / `{n,m}` above what `max_new_tokens` can hold (CHARS_PER_TOKEN characters per token), the smallest
  valid answer longer than that, or all bounds together above MAX_TOTAL_BOUNDS. Converters expand a bound n
  into n grammar symbols: `"minLength": 100000000` took 3.2 GB and froze the app;
- a `pattern` or `patternProperties` name that RE2 cannot compile (backreferences, lookaround, Python-only
  syntax), and `patternProperties` together with `unevaluatedProperties`: the answer is checked against the
  patterns in linear time with RE2 (components/core/linear_schema.py), never with Python's backtracking `re`.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from components.core.linear_schema import mixes_pattern_and_unevaluated_properties, pattern_error
from components.vocabulary.generation import InputError

#: JSON nesting (objects and lists) a schema may have; a schema level is about two JSON levels.
MAX_DEPTH = 48
#: Subschemas a schema may have.
MAX_NODES = 2_000
#: Characters one answer token is assumed to hold at most, to turn max_new_tokens into a size budget.
CHARS_PER_TOKEN = 8
#: Sum of every count bound and regex quantifier in one schema (each bound becomes that many grammar symbols).
MAX_TOTAL_BOUNDS = 100_000
#: Recomputations per subschema (on average) the smallest-answer computation may take; beyond: too complex.
MAX_SIZE_ROUNDS = 64

COUNT_KEYWORDS = (
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
)
#: Keywords whose value is one subschema, a list of them, or a mapping name -> subschema.
_ONE = ("additionalProperties", "items", "not", "if", "then", "else", "contains", "propertyNames")
_ONE += ("unevaluatedItems", "unevaluatedProperties", "additionalItems")
_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
#: Keywords through which a grammar goes on without consuming a character (alternatives and references).
_ALIAS_LISTS = ("anyOf", "oneOf", "allOf")
#: searched on a visitor's pattern text with Python's `re`, in linear time: every repetition in it is bounded
_QUANTIFIER = re.compile(r"(?<!\\)\{(\d{1,12})(?:,(\d{0,12}))?\}")


def budget_chars(max_new_tokens: int) -> int:
    """How many characters an answer of `max_new_tokens` tokens can hold at most (for the schema's sizes)."""
    return max(1, int(max_new_tokens)) * CHARS_PER_TOKEN


def _json_path(pointer: tuple[str, ...]) -> str:
    return "$" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in pointer) if pointer else "$"


def check_shape(value: Any) -> None:
    """Refuses JSON nested deeper than MAX_DEPTH or a schema with more than MAX_NODES objects; iterative."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError("err_schema_too_deep", limit=MAX_DEPTH)
        if isinstance(node, dict):
            nodes += 1
            if nodes > MAX_NODES:
                raise InputError("err_schema_too_many_nodes", limit=MAX_NODES)
            stack.extend((item, depth + 1) for item in node.values())
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)


def _children(node: dict[str, Any]) -> Iterator[tuple[str, str | None, Any]]:
    """(keyword, name or index, subschema) for every subschema position of `node`."""
    for key in _ONE:
        sub = node.get(key)
        if isinstance(sub, (dict, bool)):
            yield key, None, sub
        elif key == "items" and isinstance(sub, list):  # draft-4 style tuple items
            for i, item in enumerate(sub):
                yield key, str(i), item
    for key in _LIST:
        subs = node.get(key)
        if isinstance(subs, list):
            for i, item in enumerate(subs):
                yield key, str(i), item
    for key in _MAP:
        subs = node.get(key)
        if isinstance(subs, dict):
            for name, item in subs.items():
                yield key, str(name), item


class _Index:
    """Every subschema of a schema by JSON pointer, with its `$ref` target resolved."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.nodes: dict[int, Any] = {}  # id(node) -> node
        self.pointers: dict[int, tuple[str, ...]] = {}
        self.anchors: dict[str, int] = {}
        stack: list[tuple[Any, tuple[str, ...]]] = [(root, ())]
        while stack:
            node, pointer = stack.pop()
            if id(node) in self.nodes or not isinstance(node, (dict, bool)):
                continue
            self.nodes[id(node)] = node
            self.pointers[id(node)] = pointer
            if isinstance(node, dict):
                anchor = node.get("$anchor")
                if isinstance(anchor, str):
                    self.anchors[anchor] = id(node)
                for key, name, sub in _children(node):
                    stack.append((sub, (*pointer, key) if name is None else (*pointer, key, name)))

    def path(self, node: Any) -> str:
        return _json_path(self.pointers.get(id(node), ()))

    def resolve_all(self) -> None:
        """Resolves every `$ref` (refusing those that lead nowhere), so that `nodes` also holds what a reference
        into a place that is not a subschema position (e.g. into "examples") makes one."""
        done: set[int] = set()
        while len(done) < len(self.nodes):
            for key in [k for k in self.nodes if k not in done]:
                done.add(key)
                self.target(self.nodes[key])

    def resolve(self, ref: str, where: Any) -> Any:
        """The subschema `ref` points to; refuses a reference that leads outside the schema or nowhere."""
        if not ref.startswith("#"):
            raise InputError("err_schema_remote_ref", ref=ref[:120])
        fragment = unquote(ref[1:])
        if fragment and not fragment.startswith("/"):
            target_id = self.anchors.get(fragment)
            if target_id is None:
                raise InputError("err_schema_ref_unresolved", ref=ref[:120], path=self.path(where))
            return self.nodes[target_id]
        node: Any = self.root
        for raw in fragment.split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise InputError("err_schema_ref_unresolved", ref=ref[:120], path=self.path(where))
        if id(node) not in self.nodes:
            if not isinstance(node, (dict, bool)):
                raise InputError("err_schema_ref_unresolved", ref=ref[:120], path=self.path(where))
            # a pointer into a place that is not a subschema position (e.g. into "examples"): index it too
            sub = _Index(node)
            for key, value in sub.nodes.items():
                self.nodes.setdefault(key, value)
                self.pointers.setdefault(key, ("…",))
        return node

    def target(self, node: Any) -> Any | None:
        if isinstance(node, dict):
            for key in ("$ref", "$dynamicRef", "$recursiveRef"):
                ref = node.get(key)
                if isinstance(ref, str):
                    return self.resolve(ref, node)
        return None


def _check_bounds(index: _Index, budget: int, max_new_tokens: int) -> None:
    total = 0
    for node in list(index.nodes.values()):
        if not isinstance(node, dict):
            continue
        for key in COUNT_KEYWORDS:
            value = node.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if value > budget:
                    raise InputError(
                        "err_schema_bound",
                        keyword=key,
                        value=int(value) if math.isfinite(value) else value,
                        path=index.path(node),
                        limit=budget,
                        tokens=max_new_tokens,
                    )
                total += int(value)
        pattern = node.get("pattern")
        patterns = [pattern] if isinstance(pattern, str) else []
        if isinstance(node.get("patternProperties"), dict):
            patterns += [p for p in node["patternProperties"] if isinstance(p, str)]
        for text in patterns:
            for match in _QUANTIFIER.finditer(text):
                for number in match.groups():
                    if number:
                        value = int(number)
                        if value > budget:
                            raise InputError(
                                "err_schema_bound",
                                keyword="pattern",
                                value=value,
                                path=index.path(node),
                                limit=budget,
                                tokens=max_new_tokens,
                            )
                        total += value
        if total > MAX_TOTAL_BOUNDS:
            raise InputError("err_schema_bounds_total", total=total, limit=MAX_TOTAL_BOUNDS)


def _check_left_recursion(index: _Index) -> None:
    """A cycle through `$ref` and anyOf/oneOf/allOf members: the grammar rule would start with itself."""
    edges: dict[int, list[Any]] = {}
    for key, node in index.nodes.items():
        out: list[Any] = []
        target = index.target(node)
        if target is not None:
            out.append(target)
        if isinstance(node, dict):
            for keyword in _ALIAS_LISTS:
                members = node.get(keyword)
                if isinstance(members, list):
                    out.extend(m for m in members if isinstance(m, (dict, bool)))
        edges[key] = out
    state: dict[int, int] = {}  # 1 on the current path, 2 done
    for start in list(edges):
        if state.get(start):
            continue
        stack: list[tuple[int, Iterator[Any]]] = [(start, iter(edges.get(start, ())))]
        state[start] = 1
        while stack:
            key, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[key] = 2
                stack.pop()
                continue
            nkey = id(nxt)
            if state.get(nkey) == 1:
                node = index.nodes[key]
                ref = node.get("$ref") if isinstance(node, dict) else None
                raise InputError(
                    "err_schema_left_recursion",
                    path=index.path(index.nodes[nkey]),
                    ref=str(ref or index.path(nxt))[:120],
                )
            if not state.get(nkey):
                state[nkey] = 1
                stack.append((nkey, iter(edges.get(nkey, ()))))


_INF = math.inf


def _types(node: dict[str, Any]) -> list[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list) and declared:
        return [t for t in declared if isinstance(t, str)]
    if "properties" in node or "required" in node:
        return ["object"]
    if "items" in node or "prefixItems" in node or "minItems" in node:
        return ["array"]
    if "minLength" in node or "maxLength" in node or "pattern" in node:
        return ["string"]
    return ["any"]


def _own_size(node: Any, size: dict[int, float], index: _Index) -> float:
    """The smallest JSON text (in characters) valid for `node`, given the current sizes of its subschemas."""

    def of(sub: Any) -> float:
        if sub is True or sub is None:
            return 1.0
        if sub is False:
            return _INF
        return size.get(id(sub), _INF)

    if node is True:
        return 1.0
    if node is False or not isinstance(node, dict):
        return _INF
    if "const" in node:
        best = float(len(json.dumps(node["const"], ensure_ascii=False)))
    elif isinstance(node.get("enum"), list):
        options = [len(json.dumps(v, ensure_ascii=False)) for v in node["enum"]]
        best = float(min(options)) if options else _INF
    else:
        best = _INF
        for kind in _types(node):
            if kind == "string":
                length = node.get("minLength", 0)
                value = 2.0 + (length if isinstance(length, (int, float)) else 0)
            elif kind in ("integer", "number", "any"):
                value = 1.0
            elif kind in ("boolean", "null"):
                value = 4.0
            elif kind == "array":
                count = node.get("minItems", 0)
                count = int(count) if isinstance(count, (int, float)) and math.isfinite(count) else 0
                prefix = node.get("prefixItems") if isinstance(node.get("prefixItems"), list) else []
                items = node.get("items", True)
                value = 2.0 + max(0, count - 1)
                for i in range(count):
                    value += of(prefix[i]) if i < len(prefix) else of(items if not isinstance(items, list) else True)
                    if value == _INF:
                        break
            elif kind == "object":
                props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
                required = [r for r in node.get("required", []) if isinstance(r, str)]
                required = list(dict.fromkeys(required))
                extra = node.get("additionalProperties", True)
                value = 2.0 + max(0, len(required) - 1)
                for name in required:
                    value += len(json.dumps(name, ensure_ascii=False)) + 1 + of(props.get(name, extra))
                    if value == _INF:
                        break
            else:
                value = _INF
            best = min(best, value)
    target = index.target(node)
    if target is not None:
        best = max(best, of(target))
    members = node.get("allOf")
    if isinstance(members, list):
        for member in members:
            best = max(best, of(member))
    for keyword in ("anyOf", "oneOf"):
        members = node.get(keyword)
        if isinstance(members, list):
            best = max(best, min((of(m) for m in members), default=_INF))
    return best


def _check_finite(index: _Index, budget: int, max_new_tokens: int) -> None:
    """Refuses a schema no finite answer satisfies (recursion without a base case) or whose smallest answer
    exceeds the budget. Sizes are computed as a fixpoint from "infinite" downwards, with a worklist."""
    size: dict[int, float] = {key: _INF for key in index.nodes}
    # who has to be recomputed when a subschema's size drops: the schema holding it and every $ref to it
    dependents: dict[int, list[int]] = {key: [] for key in index.nodes}
    for key, node in index.nodes.items():
        if isinstance(node, dict):
            for _, _, sub in _children(node):
                if id(sub) in dependents:
                    dependents[id(sub)].append(key)
            target = index.target(node)
            if target is not None and id(target) in dependents:
                dependents[id(target)].append(key)
    # a worklist, subschemas first; each size only ever drops, and each recomputation is bounded in number
    pending = deque(list(index.nodes)[::-1])
    queued = set(pending)
    budget_steps = MAX_SIZE_ROUNDS * max(1, len(index.nodes))
    steps = 0
    while pending:
        key = pending.popleft()
        queued.discard(key)
        steps += 1
        if steps > budget_steps:
            raise InputError("err_schema_too_complex", limit=MAX_SIZE_ROUNDS)
        value = min(_own_size(index.nodes[key], size, index), 1e18)
        if value < size[key]:
            size[key] = value
            for dependent in dependents[key]:
                if dependent not in queued:
                    queued.add(dependent)
                    pending.append(dependent)
    root = size.get(id(index.root), _INF)
    if root >= 1e18 or root == _INF:
        stuck = [
            node for key, node in index.nodes.items() if size[key] == _INF and isinstance(node, dict) and "$ref" in node
        ]
        where = index.path(stuck[0]) if stuck else "$"
        raise InputError("err_schema_no_finite_value", path=where)
    if root > budget:
        raise InputError("err_schema_answer_too_big", chars=int(root), limit=budget, tokens=max_new_tokens)


def _check_patterns(index: _Index) -> None:
    """Refuses a pattern that RE2 cannot compile, naming it and where it is."""
    for node in index.nodes.values():
        if not isinstance(node, dict):
            continue
        found = [(node.get("pattern"), index.path(node))]
        if isinstance(node.get("patternProperties"), dict):
            found += [(name, index.path(node) + ".patternProperties") for name in node["patternProperties"]]
        for pattern, where in found:
            if isinstance(pattern, str) and pattern_error(pattern):
                raise InputError("err_schema_pattern_unsupported", pattern=pattern[:120], path=where)


def check_schema_safety(schema: Any, max_new_tokens: int) -> None:
    """Raises InputError (with a message key) for a schema that no engine can compile safely; see the module."""
    check_shape(schema)
    index = _Index(schema)
    index.resolve_all()
    budget = budget_chars(max_new_tokens)
    _check_bounds(index, budget, max_new_tokens)
    _check_patterns(index)
    if mixes_pattern_and_unevaluated_properties(schema):
        raise InputError("err_schema_pattern_unevaluated")
    _check_left_recursion(index)
    _check_finite(index, budget, max_new_tokens)


__all__ = [
    "CHARS_PER_TOKEN",
    "COUNT_KEYWORDS",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_TOTAL_BOUNDS",
    "budget_chars",
    "check_schema_safety",
    "check_shape",
]
