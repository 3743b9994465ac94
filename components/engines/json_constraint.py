"""JSON-schema constrained decoding for the transformers engine, through xgrammar when it is installed."""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Optional: `pip install -r requirements-gpu.txt` (or `pip install xgrammar`) enables JSON output on transformers.
LIBRARY = "xgrammar"


def available() -> bool:
    """Whether xgrammar can be imported (checked without importing it: the import loads native code)."""
    return importlib.util.find_spec(LIBRARY) is not None


class SchemaNotSupported(ValueError):
    """xgrammar cannot compile this schema (e.g. a keyword it does not implement); the message says why."""


_compile_lock = threading.Lock()


def _compiler(loaded: Any) -> Any:
    """One xgrammar GrammarCompiler per loaded model (it caches compiled grammars), kept in `loaded.meta`."""
    with _compile_lock:
        compiler = loaded.meta.get("xgrammar_compiler")
        if compiler is None:
            import xgrammar as xgr

            # The model's vocabulary can be larger than the tokenizer's (padding rows); the bitmask must cover it.
            vocab_size = getattr(getattr(loaded.model, "config", None), "vocab_size", None)
            info = xgr.TokenizerInfo.from_huggingface(
                loaded.tokenizer,
                vocab_size=max(int(vocab_size or 0), len(loaded.tokenizer)),
                stop_token_ids=sorted(loaded.eos_ids) or None,
            )
            compiler = xgr.GrammarCompiler(info, max_threads=2)
            loaded.meta["xgrammar_compiler"] = compiler
        return compiler


def compile_schema(loaded: Any, schema_json: str) -> Any:
    """The schema compiled for this model's tokenizer. Compact JSON only (no free whitespace): with
    whitespace allowed, small models are known to emit newlines until the token budget runs out."""
    try:
        return _compiler(loaded).compile_json_schema(schema_json, any_whitespace=False)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise SchemaNotSupported(str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__) from None


@dataclass(frozen=True)
class SchemaConstraint:
    """A picklable description of the constraint (it crosses into a ZeroGPU worker); `build` makes the
    logits processor there, from the model found in that process. A processor serves one generate() call."""

    schema_json: str

    @classmethod
    def of(cls, schema: dict[str, Any]) -> SchemaConstraint:
        return cls(json.dumps(schema, ensure_ascii=False, sort_keys=True))

    def build(self, loaded: Any) -> Any:
        import xgrammar as xgr

        return xgr.contrib.hf.LogitsProcessor(compile_schema(loaded, self.schema_json))


def materialize(processors: list[Any] | None, loaded: Any) -> list[Any]:
    """Logits processors for generate(): SchemaConstraint entries built for `loaded`, others as they are."""
    return [p.build(loaded) if isinstance(p, SchemaConstraint) else p for p in processors or []]


__all__ = ["LIBRARY", "SchemaConstraint", "SchemaNotSupported", "available", "compile_schema", "materialize"]
