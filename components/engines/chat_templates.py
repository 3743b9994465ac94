"""The chat template a build brings (`prompt_format: model`), read from its files: a GGUF's metadata or a Hub
repository's tokenizer files; cached per file, downloaded with the build's first download.

- GGUF (llama.cpp builds, transformers builds of a .gguf): `tokenizer.chat_template` or, with the family's
  `chat_template: NAME`, `tokenizer.chat_template.NAME`; BOS, EOS, UNK, padding and end-of-turn tokens from
  `tokenizer.ggml.*_token_id`; the control tokens (token type CONTROL) are the special tokens. Read with the
  `gguf` package (requirements.txt), as llama.cpp's own Python tools do.
- A Hub repository or a local folder (transformers builds): `chat_template.jinja` /
  `additional_chat_templates/NAME.jinja`, else `chat_template` of `tokenizer_config.json` (a string, or a list of
  named templates), as transformers 5 loads them; the special tokens from `tokenizer_config.json`'s
  `added_tokens_decoder` and its `bos_token` / `eos_token`; end-of-turn ids from `generation_config.json`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.engines import hub
from components.engines.offline_model import packaged_gguf
from components.vocabulary.catalog import ModelRef, QuantKind, remote_code_allowed
from components.vocabulary.chat_template import END_OF_TURN, ChatTemplate
from components.vocabulary.generation import EngineError, Status

log = logging.getLogger(__name__)

#: GGUF token type of control tokens (gguf.TokenType.CONTROL); llama.cpp parses these as special tokens
_CONTROL = 3
_USER_DEFINED = 4

_cache: dict[tuple[str, float, str | None], ChatTemplate] = {}
_lock = threading.Lock()

#: the tokenizer files that carry a template (besides the weights' GGUF)
TOKENIZER_FILES = ("tokenizer_config.json", "chat_template.jinja", "chat_template.json", "generation_config.json")


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _pick(templates: dict[str, str], name: str | None, where: str) -> str:
    """The named template (or the default one), as transformers' get_chat_template picks it."""
    if name:
        if name in templates:
            return templates[name]
        raise EngineError("err_template_name", name=name, names=", ".join(sorted(templates)) or "–", where=where)
    if "default" in templates:
        return templates["default"]
    if len(templates) == 1:
        return next(iter(templates.values()))
    raise EngineError("err_template_missing", where=where)


def read_gguf(path: Path, name: str | None = None) -> ChatTemplate:
    """The template and tokens of a GGUF file's metadata."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path), "r")

    def value(key: str) -> Any:
        found = reader.get_field(key)
        return None if found is None else found.contents()

    templates: dict[str, str] = {}
    default = value("tokenizer.chat_template")
    if isinstance(default, str):
        templates["default"] = default
    for key in reader.fields:
        if key.startswith("tokenizer.chat_template.") and isinstance(value(key), str):
            templates[key.removeprefix("tokenizer.chat_template.")] = value(key)
    source = _pick(templates, name, path.name)
    tokens = value("tokenizer.ggml.tokens") or []
    types = value("tokenizer.ggml.token_type") or []

    def token(key: str) -> str | None:
        index = value(f"tokenizer.ggml.{key}")
        return tokens[index] if isinstance(index, int) and 0 <= index < len(tokens) else None

    control = tuple(t for t, kind in zip(tokens, types, strict=False) if kind == _CONTROL)
    # user-defined tokens the template writes itself are control tokens too (transformers' sanitize rule)
    added = tuple(t for t, kind in zip(tokens, types, strict=False) if kind == _USER_DEFINED and t in source)
    bos, eos = token("bos_token_id"), token("eos_token_id")
    ends = [eos, token("eot_token_id"), token("eom_token_id")]
    special = {*control, *added}
    ends += [t for t in END_OF_TURN if t in special]
    return ChatTemplate(
        source=source,
        origin=f"GGUF {path.name}" + (f" ({name})" if name else ""),
        name=name,
        bos_token=bos,
        eos_token=eos,
        unk_token=token("unknown_token_id"),
        pad_token=token("padding_token_id"),
        special_tokens=tuple(sorted(t for t in special | {bos, eos} - {None} if t)),
        end_tokens=tuple(dict.fromkeys(t for t in ends if t)),
        names=tuple(sorted(k for k in templates if k != "default")),
    )


def read_tokenizer_folder(folder: Path, name: str | None = None, label: str = "") -> ChatTemplate:
    """The template and tokens of a tokenizer's files in `folder` (a Hub snapshot or a local model folder)."""
    where = label or folder.name
    config: dict[str, Any] = {}
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
    templates: dict[str, str] = {}
    raw = config.get("chat_template")
    if isinstance(raw, str):
        templates["default"] = raw
    elif isinstance(raw, list):
        templates.update({t["name"]: t["template"] for t in raw if isinstance(t, dict) and "name" in t})
    legacy = folder / "chat_template.json"
    if legacy.is_file():
        templates["default"] = json.loads(legacy.read_text(encoding="utf-8")).get("chat_template", "")
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        templates["default"] = jinja.read_text(encoding="utf-8")
    for extra in sorted((folder / "additional_chat_templates").glob("*.jinja")):
        templates[extra.stem] = extra.read_text(encoding="utf-8")
    source = _pick({k: v for k, v in templates.items() if v}, name, where)
    decoder = config.get("added_tokens_decoder") or {}
    by_id = {int(i): t.get("content") for i, t in decoder.items() if isinstance(t, dict) and str(i).isdigit()}
    special = {t["content"] for t in decoder.values() if isinstance(t, dict) and t.get("special") and t.get("content")}
    special |= {t["content"] for t in decoder.values() if isinstance(t, dict) and t.get("content", "\0") in source}
    bos, eos = _token_text(config.get("bos_token")), _token_text(config.get("eos_token"))
    ends: list[str | None] = [eos]
    generation = folder / "generation_config.json"
    if generation.is_file():
        ids = json.loads(generation.read_text(encoding="utf-8")).get("eos_token_id")
        for token_id in ids if isinstance(ids, list) else [ids]:
            ends.append(by_id.get(token_id) if isinstance(token_id, int) else None)
    ends += [t for t in END_OF_TURN if t in special]
    return ChatTemplate(
        source=source,
        origin=f"{where}: tokenizer" + (f" ({name})" if name else ""),
        name=name,
        bos_token=bos,
        eos_token=eos,
        unk_token=_token_text(config.get("unk_token")),
        pad_token=_token_text(config.get("pad_token")),
        special_tokens=tuple(sorted(t for t in special | {bos, eos} if t and not t.isspace())),
        end_tokens=tuple(dict.fromkeys(t for t in ends if t)),
        names=tuple(sorted(k for k in templates if k != "default")),
    )


def read_tokenizer_code(folder: Path, name: str | None, label: str) -> ChatTemplate:
    """The template a tokenizer sets in its repository's own code (Teuken's gptx_tokenizer.py builds its named
    templates "DE", "EN", … in `__init__`): the tokenizer loaded with trust_remote_code, for builds marked so where
    the operator allows it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    raw = getattr(tokenizer, "chat_template", None)
    templates = dict(raw) if isinstance(raw, dict) else ({"default": raw} if isinstance(raw, str) else {})
    source = _pick(templates, name, label)
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special = {str(tok) for tok in added.values() if getattr(tok, "special", False)}
    bos, eos = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "eos_token", None)
    return ChatTemplate(
        source=source,
        origin=f"{label}: tokenizer code" + (f" ({name})" if name else ""),
        name=name,
        bos_token=bos if isinstance(bos, str) else None,
        eos_token=eos if isinstance(eos, str) else None,
        special_tokens=tuple(sorted(t for t in special | {bos, eos} if isinstance(t, str) and t)),
        end_tokens=(eos,) if isinstance(eos, str) else (),
        names=tuple(sorted(k for k in templates if k != "default")),
    )


def gguf_of(ref: ModelRef) -> str | None:
    """The GGUF file a build loads (a llama.cpp build's, a transformers build's .gguf), else None."""
    file = ref.quant.file
    return file if file and file.endswith(".gguf") else None


def carrier(ref: ModelRef) -> Path | None:
    """The file (GGUF) or folder (tokenizer files) on disk that carries the build's template; None when it has
    not been downloaded yet. Never asks the Hub."""
    quant = ref.quant
    if quant.kind is QuantKind.remote:
        return None
    gguf = gguf_of(ref)
    if quant.package:
        return packaged_gguf(quant)
    repo = quant.repo or ""
    if repo.startswith("/"):
        path = Path(repo) / gguf if gguf else Path(repo)
        return path if path.exists() else None
    if gguf:
        return hub.cached_file(repo, gguf)
    for name in ("tokenizer_config.json", "chat_template.jinja"):
        found = hub.cached_file(repo, name)
        if found is not None:
            return found.parent
    return None


def template_for(ref: ModelRef) -> ChatTemplate | None:
    """The build's template from its files on disk (cached per file and change time); None before its first
    download. Raises EngineError when the files hold no (such) template."""
    path = carrier(ref)
    if path is None:
        return None
    name = ref.family.chat_template
    stamp = path.stat().st_mtime
    key = (str(path), stamp, name)
    with _lock:
        found = _cache.get(key)
    if found is not None:
        return found
    label = ref.quant.repo or ""
    try:
        if path.is_file():
            template = read_gguf(path, name)
        else:
            try:
                template = read_tokenizer_folder(path, name, label)
            except EngineError as exc:
                # no template in the files: a tokenizer whose own code sets it, where that code may run
                if exc.key != "err_template_missing" or not (ref.quant.trust_remote_code and remote_code_allowed()):
                    raise
                template = read_tokenizer_code(path, name, label)
    except EngineError:
        raise
    except Exception as exc:  # an unreadable header, broken JSON
        log.warning("could not read the chat template of %s", path, exc_info=True)
        raise EngineError("err_template_unreadable", model=ref.label, detail=f"{type(exc).__name__}") from exc
    with _lock:
        _cache[key] = template
    return template


async def fetch_template(ref: ModelRef, token: str | None, progress: Callable[[Status], None]) -> ChatTemplate:
    """The template, downloading the file that carries it first (the GGUF itself, or the tokenizer files), within
    the operator's download bounds (components/engines/disk.py)."""
    import asyncio

    from components.engines import disk

    found = await asyncio.to_thread(template_for, ref)
    if found is not None:
        return found
    quant = ref.quant
    gguf = gguf_of(ref)
    if quant.package:
        from components.engines.offline_model import ensure_packaged_gguf

        await ensure_packaged_gguf(quant)
    elif quant.repo and not quant.repo.startswith("/"):
        if gguf:
            async with disk.download_slot(ref):
                await hub.download_file(quant.repo, gguf, token=token, progress=progress)
        else:
            from components.engines.transformers_engine import snapshot

            await snapshot(quant.repo, token, progress, weights=False, build=ref)
    found = await asyncio.to_thread(template_for, ref)
    if found is None:
        raise EngineError("err_template_missing", where=ref.label)
    return found


def warm(refs: list[ModelRef]) -> threading.Thread:
    """Reads the templates of `refs` already on disk in a background thread, so that the first question (or the raw
    prompt view) does not wait for a GGUF's header: gguf's reader parses every vocabulary entry (seconds for a
    large vocabulary)."""

    def run() -> None:
        for ref in refs:
            try:
                template_for(ref)
            except Exception:  # reported when the build is asked for
                log.debug("chat template of %s not read ahead", ref.id, exc_info=True)

    thread = threading.Thread(target=run, name="chat-templates", daemon=True)
    thread.start()
    return thread


__all__ = ["carrier", "fetch_template", "read_gguf", "read_tokenizer_folder", "template_for", "warm"]
