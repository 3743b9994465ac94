"""Which model a remote server serves, asked of the server itself, and which catalog build that model is.

What each server says (read from the servers' sources):
- TGI: `GET /info` → `model_id` (router/src/server.rs `get_model_info`, the `Info` struct of router/src/lib.rs;
  `"router": "text-generation-router"` marks it), `max_total_tokens`.
- SGLang: `GET /get_model_info` → `model_path` (python/sglang/srt/entrypoints/http_server.py `get_model_info`:
  `{"model_path", "tokenizer_path", "is_generation", ...}`), the path or Hub id given to `--model-path`.
- llama.cpp's server: `GET /props` → `model_path` (the GGUF file it loaded) and `default_generation_settings`
  with `n_ctx` (tools/server/server.cpp `handle_props`); `GET /v1/models` → `data[].id`, the `--alias` or the
  file's path (`handle_models`). A GGUF file name such as `em_german_leo_mistral.Q4_K_M.gguf` is that
  quantization of the catalog.
- vLLM and plain OpenAI-compatible servers: `GET /v1/models` → `data[].id` (the served model name) and, in vLLM,
  `root` (the model path behind an alias) and `parent` (set for a LoRA adapter) (vllm/entrypoints/openai/protocol.py
  `ModelCard`), `max_model_len`; vLLM also answers `GET /version`. Where a server lists nothing, `OPENAI_MODEL`
  names the served model.

Only the endpoint's own token is sent, and only to the endpoint's own URL; redirects are not followed.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from components.vocabulary.catalog import Catalog, ModelRef, Quantization, QuantKind

#: How long each question to a server may take at start and in the background retries.
ASK_TIMEOUT_S = 3.0
TGI, LLAMA_CPP, VLLM, SGLANG, OPENAI = "tgi", "llama.cpp", "vllm", "sglang", "openai"
#: How the page names each kind of server (a name, the same in German and English).
SERVER_LABELS = {TGI: "TGI", LLAMA_CPP: "llama.cpp-Server", VLLM: "vLLM", SGLANG: "SGLang", OPENAI: "OpenAI API"}
#: Base kinds: a variant's own (not quantized) repository.
BASE_KINDS = (QuantKind.fp16, QuantKind.bf16, QuantKind.fp32, QuantKind.int8, QuantKind.int4)


@dataclass(frozen=True)
class ServedModel:
    """What a server said it serves: `model_id` as it reports it, the kind of `server`, every name it gave for the
    model (for finding it in the catalog), the `request_name` to send as `model` (OpenAI form) and its context."""

    model_id: str
    server: str
    names: tuple[str, ...]
    request_name: str | None = None
    context: int | None = None


class ServerSilent(Exception):
    """The server gave no usable answer (not reachable, an error status, nothing that names a model). `key` is a
    message key saying why."""

    def __init__(self, key: str = "err_remote_unreachable") -> None:
        super().__init__(key)
        self.key = key


def _roots(url: str) -> tuple[str, str]:
    """(server root, API base ending in /v1) of a URL that may end in /v1."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    root_path = path[: -len("/v1")] if path.endswith("/v1") else path
    root = urlunsplit((parts.scheme, parts.netloc, root_path, "", ""))
    return root, root + "/v1"


#: The most characters of a served model's name that are kept (a Hub id is at most 96).
MAX_NAME_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _name(value: Any) -> str | None:
    """A name a server gave, without control characters and within MAX_NAME_CHARS; None when there is none."""
    if not isinstance(value, str):
        return None
    text = _CONTROL.sub("", value).strip()[:MAX_NAME_CHARS]
    return text or None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def ask_server(
    url: str, kind: str, token: str | None = None, model_hint: str | None = None, timeout_s: float = ASK_TIMEOUT_S
) -> ServedModel:
    """Asks the server at `url` (an endpoint of type `kind`: tgi or openai) which model it serves. Raises
    ServerSilent when it cannot tell (not reachable, an error status, no model named)."""

    def own_token_only(request: httpx.Request) -> None:
        # as the engines' auth_hook: credentials in the URL or from elsewhere never go out, the endpoint's token does
        request.headers.pop("authorization", None)
        if token:
            request.headers["authorization"] = f"Bearer {token}"

    root, api = _roots(url)
    answered = False
    refused: int | None = None
    hooks = {"request": [own_token_only]}
    with httpx.Client(timeout=timeout_s, follow_redirects=False, event_hooks=hooks) as http:

        def get(path_url: str) -> Any:
            nonlocal answered, refused
            try:
                response = http.get(path_url)
            except httpx.ConnectError as exc:
                raise ServerSilent("err_remote_unreachable") from exc
            except httpx.TimeoutException as exc:
                raise ServerSilent("err_remote_timeout") from exc
            except httpx.HTTPError:
                return None
            if response.status_code < 500:
                answered = True
            if response.status_code in (401, 403):
                refused = response.status_code
            if response.status_code != 200:
                return None
            try:
                return response.json()
            except ValueError:
                return None

        info = get((url.split("?", 1)[0].rstrip("/") if kind == TGI else root) + "/info")
        model = _name(info.get("model_id")) if isinstance(info, dict) else None
        if model:
            return ServedModel(model, TGI, (model,), None, _int(info.get("max_total_tokens")))
        if kind == TGI:
            raise ServerSilent("err_remote_unauthorized" if refused else "err_remote_unreachable")
        sglang = get(root + "/get_model_info")
        path = _name(sglang.get("model_path")) if isinstance(sglang, dict) else None
        if path:
            listing = get(api + "/models")
            ids = _listed(listing)
            return ServedModel(path, SGLANG, (path, *ids), ids[0] if ids else path, _context(listing))
        props = get(root + "/props")
        listing = get(api + "/models")
        ids = _listed(listing)
        if isinstance(props, dict) and isinstance(props.get("default_generation_settings"), dict):
            path = _name(props.get("model_path")) or ""
            names = tuple(n for n in (path, posixpath.basename(path.replace("\\", "/")), *ids) if n)
            if not names:
                raise ServerSilent("err_remote_unreachable")
            settings = props["default_generation_settings"]
            context = _int(settings.get("n_ctx")) or _int(props.get("n_ctx"))
            return ServedModel(names[1] if path else names[0], LLAMA_CPP, names, ids[0] if ids else None, context)
        chosen = _choose(listing, model_hint)
        if chosen is not None:
            version = get(root + "/version")
            server = VLLM if isinstance(version, dict) and isinstance(version.get("version"), str) else OPENAI
            return ServedModel(chosen[0], server, chosen, chosen[0], _context(listing, chosen[0]))
        if model_hint and answered and not refused:
            return ServedModel(model_hint, OPENAI, (model_hint,), model_hint, None)
    raise ServerSilent("err_remote_unauthorized" if refused else "err_remote_unreachable")


def _listed(listing: Any) -> list[str]:
    data = listing.get("data") if isinstance(listing, dict) else None
    names = [_name(item.get("id")) for item in data or [] if isinstance(item, dict)]
    return [name for name in names if name]


def _context(listing: Any, model_id: str | None = None) -> int | None:
    data = listing.get("data") if isinstance(listing, dict) else None
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict) and (model_id is None or item.get("id") == model_id):
            return _int(item.get("max_model_len"))
    return None


def _choose(listing: Any, hint: str | None) -> tuple[str, ...] | None:
    """(id, root) of the served model in a /v1/models listing: `hint` (OPENAI_MODEL) where listed, else the first
    that is no LoRA adapter (vLLM sets `parent` for those)."""
    data = listing.get("data") if isinstance(listing, dict) else None
    items = [item for item in data or [] if isinstance(item, dict) and _name(item.get("id"))]
    if not items:
        return None
    wanted = [i for i in items if hint and i["id"] == hint] or [i for i in items if not i.get("parent")] or items
    item = wanted[0]
    model, root = _name(item["id"]) or "", _name(item.get("root"))
    return (model, root) if root and root != model else (model,)


# ---- the catalog build a served model is --------------------------------------------------------------------
@dataclass(frozen=True)
class Match:
    """A served model found in the catalog: its variant's `ref` (a build of that variant) and `quant`, the build it
    is (None: the variant's own repository; a GGUF repository whose file is not known: `gguf_repo`)."""

    ref: ModelRef
    quant: Quantization | None
    gguf_repo: bool = False


_HUB_CACHE = re.compile(r"models--([^/]+?)--([^/]+)")


def _repo_names(name: str) -> tuple[set[str], str | None]:
    """The Hub repository ids a served name may stand for (lower case), and a GGUF quantization tag
    (`repo:Q4_K_M`, llama.cpp's `-hf` form)."""
    low = name.strip().lower().replace("\\", "/").rstrip("/")
    tag = None
    if ":" in low and "://" not in low:
        low, tag = low.split(":", 1)
    out = {low}
    cache = _HUB_CACHE.search(low)
    if cache:  # a Hub cache path: …/models--owner--name/snapshots/<hash>
        out.add(f"{cache.group(1)}/{cache.group(2)}")
    parts = [p for p in low.split("/") if p]
    if len(parts) >= 2:  # a local path ending in owner/name
        out.add("/".join(parts[-2:]))
    return out, tag


def catalog_match(catalog: Catalog, served: ServedModel) -> Match | None:
    """The catalog variant (and build) the served model is: a GGUF file name is that quantization; a repository id
    (case does not matter; a local path or Hub cache path ending in it too) is the build with that repository —
    the variant's own repository, or one of its quantized repositories (GPTQ, AWQ, GGUF). None: not in the catalog."""
    refs = [r for r in catalog.refs() if r.quant.kind is not QuantKind.remote]
    for name in served.names:
        base = posixpath.basename(name.strip().replace("\\", "/")).lower()
        if base.endswith(".gguf"):
            for ref in refs:
                if ref.quant.file and ref.quant.file.lower() == base:
                    return Match(ref, ref.quant)
    for name in served.names:
        repos, tag = _repo_names(name)
        hits = [r for r in refs if r.quant.repo and r.quant.repo.lower() in repos]
        if not hits:
            continue
        ggufs = [r for r in hits if r.quant.kind is QuantKind.gguf]
        if ggufs and len(ggufs) == len(hits):
            tagged = [r for r in ggufs if tag and f".{tag}." in (r.quant.file or "").lower()]
            if tagged:
                return Match(tagged[0], tagged[0].quant)
            return Match(ggufs[0], None, gguf_repo=True)
        if all(r.quant.kind in BASE_KINDS for r in hits):
            return Match(hits[0], None)
        return Match(hits[0], hits[0].quant)
    return None
