"""OpenAI-compatible engine: streamed chat or raw completions from TGI's Messages API, vLLM, SGLang or llama.cpp.

The engine first asks the server what it is (cached for a few minutes), because these servers differ where it
matters (README, "What each server gets"):
- `GET /info` answering `router: "text-generation-router"`: TGI (router/src/server.rs, lib.rs).
- `GET /props` answering `default_generation_settings`: llama.cpp's C++ server (`llama-server`, xllamacpp).
- `GET /get_model_info` answering `model_path`: SGLang (python/sglang/srt/entrypoints/http_server.py); its version
  and context from `GET /get_server_info`. Asked before /version, which says too little about who answers.
- `GET /version` answering `{"version": ...}`: vLLM.
- anything else: a plain OpenAI-compatible server, sent OpenAI's documented form.

Two API modes per request:
- `completions` (/v1/completions with `request.prompt`): the family's exact raw prompt. Default for every
  family, LeoLM's ChatML included: no server template is trusted to reproduce a card's format.
- `chat` (/v1/chat/completions with `request.messages`): the server applies the model's chat template. Taken
  for a ChatML family only when the server can show its rendering (llama.cpp `POST /apply-template`, TGI
  `POST /chat_tokenize`) and that rendering is byte for byte the card's prompt. With OPENAI_API_MODE=chat
  the engine reports what the server rendered (a PromptSent event), or, where the server cannot show it,
  says so (`note_server_template`).
OPENAI_API_MODE=chat|completions overrides the choice for all requests.

JSON output (request.json_schema), by server and mode:
- TGI chat: TGI's own grammar type `response_format: {"type": "json_schema", "value": {"name", "schema"}}`
  (router/src/lib.rs GrammarType; OpenAI's form fails deserialisation there). TGI /v1/completions has no
  constraint at all (lib.rs CompletionRequest has no response_format), so a JSON request in completions mode
  goes to TGI's native route (`/` with `grammar`, components/engines/tgi.py) with the same exact prompt.
  Either way a schema without top-level `properties` is refused before sending (TGI refuses it).
- llama.cpp: chat reads `response_format` (OpenAI's `json_schema` form); /v1/completions ignores it and reads a
  top-level `json_schema` (server-common.cpp / server-task.cpp), which is what it gets there.
- vLLM: chat gets OpenAI's `response_format`; /v1/completions gets vLLM's own field (`guided_json` up to
  0.11, `structured_outputs: {"json": ...}` from 0.12; version from GET /version). vLLM accepts unknown fields
  (OpenAIBaseModel, extra="allow"), so the wrong one for its version is not refused but silently unconstrained.
- SGLang: chat gets OpenAI's `response_format`; /v1/completions a top-level `json_schema` holding the schema as a
  JSON string (entrypoints/openai/protocol.py CompletionRequest: `json_schema: Optional[str]`).
- unknown servers: OpenAI's `response_format: {"type": "json_schema", "json_schema": {...}}`.
  llama-cpp-python's server only knows `{"type": "json_object", "schema": ...}` and answers the standard form
  with an error naming response_format; the engine then switches to that form for this endpoint and retries
  once. OPENAI_JSON_FORMAT=json_schema|json_object fixes the form.
Whatever comes back is validated against the schema by components/features/structured.py.

Token counts (for refusing a prompt too long for the server before sending): TGI `POST /tokenize {"inputs"}`,
llama.cpp `POST /tokenize {"content", "add_special": true}`, vLLM `POST /tokenize {"model", "prompt"}`
(`count`), SGLang `POST /v1/tokenize {"model", "prompt", "add_special_tokens": true}` (`count`;
entrypoints/openai/serving_tokenize.py), llama-cpp-python `POST /extras/tokenize/count`; else an estimate that
errs high. SGLang refuses input + max_tokens >= its context length (managers/tokenizer_manager.py), so one
token less is usable there.

Sampling fields go where each server reads them: llama.cpp `top_k`, `repeat_penalty`, `min_p`; vLLM and SGLang
`top_k`, `repetition_penalty`, `min_p`; vLLM takes at most 4 stop strings (VLLM_MAX_STOP_STRINGS, a 400
otherwise: the rest are enforced here, as for TGI), llama.cpp and SGLang any number; TGI `repetition_penalty`
on /v1/completions only and neither on chat (its chat route has no such fields). top_p is left out at 1.0 (TGI
refuses 1.0); temperature 0 means greedy on all.
TGI's /v1/completions streams the end-of-sequence token's text (`</s>`) in its last chunk; it is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from components.engines.base import Engine, check_context
from components.engines.remote import (
    INFO_TTL_S,
    SIDE_TIMEOUT_S,
    VISITOR_CREDENTIAL,
    LoopBound,
    Stopped,
    StopTrimmer,
    Watchdog,
    auth_hook,
    classify_error,
    endpoint_name,
    error_type_from_message,
    estimate_tokens,
    read_error_payload,
    remote_timeout_s,
)
from components.vocabulary.catalog import Endpoint, ModelRef
from components.vocabulary.generation import (
    EngineDone,
    EngineError,
    GenerationRequest,
    PromptSent,
    Status,
    TextDelta,
    TokenProb,
    from_logprob,
    token_prob,
)
from components.vocabulary.prompts import get_format
from components.vocabulary.settings import SamplingSettings

log = logging.getLogger(__name__)

API_MODES = ("chat", "completions")
JSON_FORMATS = ("json_schema", "json_object")
#: What server_facts() can tell a server to be.
TGI, LLAMA_CPP, VLLM, SGLANG, OPENAI = "tgi", "llama.cpp", "vllm", "sglang", "openai"
#: the Hugging Face Inference Providers router (components/engines/hf_providers.py): OpenAI's documented fields only
HF_ROUTER = "hf-router"
#: OpenAI's documented maximum number of stop sequences (TGI's default too).
MAX_STOP_SEQUENCES = 4


def api_mode_for(model: ModelRef, override: str | None = None) -> str:
    """`chat`, `completions` or `auto` for this build: override, then OPENAI_API_MODE, then the family.

    `auto` (ChatML families): completions with the exact prompt unless the server's own chat template is
    shown to render the card's prompt (OpenAICompatEngine decides per request); other families always get
    completions, because no server template has their format.
    """
    for choice in (override, os.environ.get("OPENAI_API_MODE")):
        mode = (choice or "").strip().lower()
        if mode in API_MODES:
            return mode
    return "auto" if get_format(model.family.prompt_format).server_template else "completions"


def response_format(schema: dict[str, Any], dialect: str) -> dict[str, Any]:
    """OpenAI-style `response_format` for a schema. `tgi` is TGI's own grammar type (router/src/lib.rs
    GrammarType: adjacently tagged, `{"type": "json_schema", "value": {"name", "schema"}}`)."""
    if dialect == "tgi":
        return {"type": "json_schema", "value": {"name": "answer", "schema": schema}}
    if dialect == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def openai_sampling(
    settings: SamplingSettings, server: str = OPENAI, mode: str = "completions", max_stop: int | None = None
) -> dict[str, Any]:
    """Sampling fields of a chat/completions body, in the fields `server` reads (module docstring)."""
    sampling = settings.temperature > 0
    body: dict[str, Any] = {
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature if sampling else 0.0,
    }
    if sampling and 0 < settings.top_p < 1:
        body["top_p"] = settings.top_p
    if server == TGI:
        # router/src/lib.rs: CompletionRequest has repetition_penalty, ChatRequest neither it nor top_k
        if mode == "completions":
            body["repetition_penalty"] = settings.repetition_penalty
    elif server == LLAMA_CPP:
        body["repeat_penalty"] = settings.repetition_penalty
        body["min_p"] = 0.0
    elif server == HF_ROUTER:
        pass  # the router forwards to many providers: only the fields OpenAI's API documents
    else:
        body["repetition_penalty"] = settings.repetition_penalty
        if server == OPENAI:
            body["repeat_penalty"] = settings.repetition_penalty  # llama-cpp-python's name
        body["min_p"] = 0.0
    if sampling and settings.top_k > 0 and server not in (TGI, HF_ROUTER):
        body["top_k"] = settings.top_k
    if settings.seed is not None:
        body["seed"] = settings.seed
    if settings.stop:
        limit = max_stop if max_stop is not None else MAX_STOP_SEQUENCES
        # vLLM: StopParam = list[str] with max_length=VLLM_MAX_STOP_STRINGS, default 4
        # (vllm/entrypoints/generate/base/protocol.py); the StopTrimmer enforces the rest
        stops = list(settings.stop) if server in (LLAMA_CPP, SGLANG) else list(settings.stop[: max(0, limit)])
        if stops:
            body["stop"] = stops
    return body


def _version(text: Any) -> tuple[int, ...]:
    """(major, minor, ...) of a version string like "0.11.2" or "0.12.0rc1"; () when it is not one."""
    parts: list[int] = []
    for piece in str(text or "").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def openai_token_probs(logprobs: Any) -> list[TokenProb]:
    """TokenProbs of one streamed choice's `logprobs`, in either of OpenAI's forms: chat's `{"content": [{"token",
    "logprob", "top_logprobs": [{"token", "logprob"}]}]}` (also llama.cpp's and vLLM's chat, vllm/entrypoints/
    openai/protocol.py ChatCompletionLogProbs) or completions' `{"tokens", "token_logprobs", "top_logprobs":
    [{token: logprob}]}` (vLLM's CompletionLogProbs). A missing or null field gives none."""
    if not isinstance(logprobs, dict):
        return []
    out = []
    content = logprobs.get("content")
    if isinstance(content, list):
        for entry in content:
            if not isinstance(entry, dict) or entry.get("logprob") is None:
                continue
            top = [(alt["token"], from_logprob(alt["logprob"])) for alt in entry.get("top_logprobs") or ()]
            out.append(token_prob(entry.get("token", ""), from_logprob(entry["logprob"]), top))
        return out
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    for i, (token, value) in enumerate(zip(tokens, values, strict=False)):
        if value is None:
            continue
        alternatives = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        top = [(text, from_logprob(lp)) for text, lp in alternatives.items() if lp is not None]
        out.append(token_prob(token, from_logprob(value), top))
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class OpenAICompatEngine(Engine):
    """One OpenAI-compatible server (an Endpoint of type `openai`)."""

    name = "openai"
    #: whether a visitor's own credential (GenerationRequest.credential) replaces the endpoint's token
    visitor_credentials = False

    def label(self, model: ModelRef) -> str:
        return endpoint_name(self.endpoint)

    def __init__(
        self, endpoint: Endpoint, api_mode: str | None = None, first_token_timeout_s: float | None = None
    ) -> None:
        self.endpoint = endpoint
        self.api_mode = api_mode
        self._timeout_override = first_token_timeout_s
        self._http = LoopBound(self._new_http)
        self._json_dialect: str | None = None
        self._facts: dict[str, Any] | None = None
        self._facts_at = 0.0
        #: which token-counting route works here: None not tried yet, "" none does
        self._count_route: str | None = None
        #: whether the server can show its chat-template rendering: None not tried yet
        self._can_render: bool | None = None
        self._native: Any = None

    # ---- plumbing ----------------------------------------------------------------------------
    @property
    def timeout_s(self) -> float:
        return self._timeout_override if self._timeout_override else remote_timeout_s()

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            event_hooks={"request": [auth_hook(self.endpoint, self.visitor_credentials)]},
            follow_redirects=False,
            timeout=httpx.Timeout(self.timeout_s + 5, connect=SIDE_TIMEOUT_S),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
        )

    def _urls(self) -> tuple[str, str]:
        """(server root, API base ending in /v1)."""
        url = self.endpoint.url()
        if not url:
            raise EngineError(
                "err_remote_not_configured", endpoint=endpoint_name(self.endpoint), env=self.endpoint.url_env
            )
        parts = urlsplit(url)
        path = parts.path.rstrip("/")
        root_path = path[: -len("/v1")] if path.endswith("/v1") else path
        root = urlunsplit((parts.scheme, parts.netloc, root_path, "", ""))
        return root, root + "/v1"

    def json_dialect(self) -> str:
        env = os.environ.get("OPENAI_JSON_FORMAT", "").strip().lower()
        if env in JSON_FORMATS:
            return env
        return self._json_dialect or "json_schema"

    def native_tgi(self) -> Any:
        """TGI's native route on the same server, endpoint and token (JSON output in completions mode)."""
        if self._native is None:
            from components.engines.tgi import TgiEngine

            self._native = TgiEngine(self.endpoint, first_token_timeout_s=self._timeout_override, strip_v1=True)
        return self._native

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._native is not None:
            await self._native.aclose()

    # ---- server facts ------------------------------------------------------------------------
    async def server_facts(self) -> dict[str, Any]:
        """What the server is (`kind`: tgi, llama.cpp, vllm, sglang or openai), its model ids, context limit, input
        limit, stop-sequence limit and version. Cached for a few minutes."""
        if self._facts is not None and time.monotonic() - self._facts_at < INFO_TTL_S:
            return self._facts
        root, api = self._urls()
        http = self._http.get()
        facts: dict[str, Any] = {
            "kind": OPENAI,
            "models": [],
            "context": None,
            "max_input": None,
            "max_stop": None,
            "version": None,
        }

        async def get_json(url: str) -> Any:
            try:
                response = await http.get(url, timeout=SIDE_TIMEOUT_S)
                return response.json() if response.status_code == 200 else None
            except httpx.ConnectError as exc:
                raise EngineError("err_remote_unreachable", endpoint=endpoint_name(self.endpoint)) from exc
            except (httpx.HTTPError, ValueError):
                return None

        listing = await get_json(api + "/models")
        if isinstance(listing, dict) and isinstance(listing.get("data"), list):
            for item in listing["data"]:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    facts["models"].append(item["id"])
                    facts["context"] = facts["context"] or _int(item.get("max_model_len"))
        info = await get_json(root + "/info")
        if isinstance(info, dict) and info.get("router") == "text-generation-router":
            facts["kind"] = TGI
            facts["context"] = _int(info.get("max_total_tokens")) or facts["context"]
            # servers before 2.1 call it max_input_length
            facts["max_input"] = _int(info.get("max_input_tokens")) or _int(info.get("max_input_length"))
            facts["max_stop"] = _int(info.get("max_stop_sequences"))
            facts["version"] = info.get("version")
        else:
            props = await get_json(root + "/props")
            if isinstance(props, dict) and isinstance(props.get("default_generation_settings"), dict):
                facts["kind"] = LLAMA_CPP
                settings = props["default_generation_settings"]
                # n_ctx of one slot: what one request can use
                facts["context"] = _int(settings.get("n_ctx")) or _int(props.get("n_ctx")) or facts["context"]
                facts["version"] = props.get("build_info")
            else:
                model_info = await get_json(root + "/get_model_info")
                if isinstance(model_info, dict) and isinstance(model_info.get("model_path"), str):
                    facts["kind"] = SGLANG
                    server_info = await get_json(root + "/get_server_info")
                    if isinstance(server_info, dict):
                        facts["version"] = server_info.get("version")
                        facts["context"] = facts["context"] or _int(server_info.get("context_length"))
                    if not facts["models"]:
                        facts["models"].append(model_info["model_path"])
                else:
                    version = await get_json(root + "/version")
                    if isinstance(version, dict) and isinstance(version.get("version"), str):
                        facts["kind"] = VLLM
                        facts["version"] = version["version"]
        self._facts, self._facts_at = facts, time.monotonic()
        return facts

    async def _model_name(self, model: ModelRef, kind: str) -> str:
        if model.quant.served_model:
            return model.quant.served_model
        if kind == TGI:
            # TGI reads any other `model` as a LoRA adapter id (router/src/lib.rs, server.rs: adapter_id)
            return "tgi"
        models = (await self.server_facts())["models"]
        return models[0] if models else "default"

    async def _count(self, text: str, model_name: str, kind: str) -> int | None:
        """The server's own token count of `text` (module docstring), or None when no route works."""
        if not text:
            return 0  # llama.cpp answers [] for it, which must not read as "this route cannot count"
        if self._count_route == "":
            return None
        root, _ = self._urls()
        http = self._http.get()
        bodies: list[tuple[str, dict[str, Any]]]
        if kind == TGI:
            bodies = [("/tokenize", {"inputs": text})]
        elif kind == LLAMA_CPP:
            # llama.cpp reads `content`; without add_special it leaves out the BOS token a completion gets
            bodies = [("/tokenize", {"content": text, "add_special": True})]
        elif kind == VLLM:
            bodies = [("/tokenize", {"model": model_name, "prompt": text})]
        elif kind == SGLANG:
            bodies = [("/v1/tokenize", {"model": model_name, "prompt": text, "add_special_tokens": True})]
        else:
            bodies = [
                ("/tokenize", {"model": model_name, "prompt": text, "content": text, "inputs": text}),
                ("/extras/tokenize/count", {"input": text}),
            ]
        if self._count_route:
            bodies = [b for b in bodies if b[0] == self._count_route] or bodies
        for route, body in bodies:
            try:
                response = await http.post(root + route, json=body, timeout=SIDE_TIMEOUT_S)
                data = response.json() if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                return None  # the server is unhappy now; ask again next time
            count: int | None = None
            if isinstance(data, list) and data:
                count = len(data)
            elif isinstance(data, dict):
                count = _int(data.get("count"))
                if count is None and isinstance(data.get("tokens"), list) and data["tokens"]:
                    count = len(data["tokens"])
            if count is not None:
                self._count_route = route
                return count
        self._count_route = ""
        return None

    async def count_tokens(self, model: ModelRef, text: str) -> int | None:
        kind = (await self.server_facts())["kind"]
        return await self._count(text, await self._model_name(model, kind), kind)

    def context_length(self, model: ModelRef) -> int:
        facts = self._facts or {}
        return facts.get("context") or model.variant.context_length

    async def server_rendering(self, messages: list[dict[str, str]], model_name: str, kind: str) -> str | None:
        """The prompt the server's chat template makes of `messages` (llama.cpp /apply-template, TGI
        /chat_tokenize), or None when the server cannot show it."""
        if kind not in (LLAMA_CPP, TGI) or self._can_render is False:
            return None
        root, _ = self._urls()
        if kind == LLAMA_CPP:
            route, body, field = "/apply-template", {"messages": messages}, "prompt"
        else:
            route, body, field = "/chat_tokenize", {"model": model_name, "messages": messages}, "templated_text"
        try:
            response = await self._http.get().post(root + route, json=body, timeout=SIDE_TIMEOUT_S)
            data = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        rendered = data.get(field) if isinstance(data, dict) else None
        if response.status_code in (404, 405):
            self._can_render = False
        return rendered if isinstance(rendered, str) else None

    # ---- generation --------------------------------------------------------------------------
    def _timeout_error(self, first: bool) -> EngineError:
        key = "err_remote_timeout" if first else "err_remote_stalled"
        return EngineError(key, endpoint=endpoint_name(self.endpoint), seconds=round(self.timeout_s, 1))

    def _body(self, request: GenerationRequest, mode: str, model_name: str, facts: dict[str, Any]) -> dict[str, Any]:
        kind = facts["kind"]
        body: dict[str, Any] = {"model": model_name, "stream": True, "stream_options": {"include_usage": True}}
        if mode == "chat":
            body["messages"] = request.messages
        else:
            body["prompt"] = request.prompt
        body.update(openai_sampling(request.settings, kind, mode, facts.get("max_stop")))
        if request.settings.top_tokens:
            # OpenAI's fields, which vLLM, TGI's chat route and llama.cpp's server read too: chat `logprobs` and
            # `top_logprobs` (at most 20), completions `logprobs` as the number of alternatives (at most 5)
            if mode == "chat":
                body.update(logprobs=True, top_logprobs=request.settings.top_tokens)
            else:
                body["logprobs"] = request.settings.top_tokens
        schema = request.json_schema
        if schema:
            if kind == TGI:
                body["response_format"] = response_format(schema, "tgi")
            elif kind == LLAMA_CPP and mode == "completions":
                body["json_schema"] = schema  # llama.cpp's /v1/completions ignores response_format
            elif kind == VLLM and mode == "completions":
                # vLLM's completions constrain through its own extra field: guided_json up to 0.11,
                # structured_outputs.json from 0.12 (where guided_json was removed)
                if _version(facts.get("version")) >= (0, 12):
                    body["structured_outputs"] = {"json": schema}
                else:
                    body["guided_json"] = schema
            elif kind == SGLANG and mode == "completions":
                body["json_schema"] = json.dumps(schema, ensure_ascii=False)  # a string there, not an object
            else:
                body["response_format"] = response_format(schema, self.json_dialect())
        return body

    async def _open(
        self, url: str, body: dict[str, Any], has_schema: bool, credential: str | None = None
    ) -> httpx.Response:
        """POSTs and returns the streaming response, or raises the server's error as an EngineError."""
        http = self._http.get()
        extensions = {VISITOR_CREDENTIAL: credential} if credential and self.visitor_credentials else None
        for attempt in range(2):
            response = await http.send(http.build_request("POST", url, json=body, extensions=extensions), stream=True)
            if response.status_code == 200:
                return response
            try:
                raw = (await response.aread()).decode("utf-8", "replace")
            finally:
                await response.aclose()
            try:
                message, error_type, _ = read_error_payload(json.loads(raw))
            except ValueError:
                message, error_type = raw, None
            standard_refused = (
                has_schema
                and attempt == 0
                # llama-cpp-python says so with a 500 carrying pydantic's literal_error
                and response.status_code in (400, 422, 500)
                and "json_schema" in body.get("response_format", {})
                and "response_format" in raw
                and not os.environ.get("OPENAI_JSON_FORMAT")
            )
            if standard_refused:
                # llama-cpp-python: only {"type": "json_object", "schema": ...}; remember for this endpoint
                self._json_dialect = "json_object"
                body = {
                    **body,
                    "response_format": response_format(body["response_format"]["json_schema"]["schema"], "json_object"),
                }
                continue
            raise classify_error(self.endpoint, response.status_code, message, error_type)
        raise AssertionError("unreachable")

    def _map_error(self, exc: BaseException, got_token: bool) -> EngineError:
        name = endpoint_name(self.endpoint)
        if isinstance(exc, httpx.TimeoutException):
            return self._timeout_error(first=not got_token)
        if isinstance(exc, httpx.ConnectError):
            return EngineError("err_remote_unreachable", endpoint=name)
        if isinstance(exc, httpx.TransportError | httpx.StreamError):
            return EngineError("err_remote_cut", endpoint=name)
        if isinstance(exc, ValueError | KeyError | TypeError | AttributeError | IndexError):
            return EngineError("err_remote_malformed", endpoint=name, kind="OpenAI-API")
        return EngineError("err_internal", detail=type(exc).__name__)

    def _check_fits(self, request: GenerationRequest, prompt_tokens: int, facts: dict[str, Any]) -> None:
        """Refuses, before sending, a prompt the server would refuse (or cut) for length."""
        max_new = request.settings.max_new_tokens
        context = facts["context"] or request.model.variant.context_length
        if facts["kind"] == SGLANG and facts["context"]:
            context -= 1  # SGLang refuses input + max_new_tokens >= context_len (module docstring)
        check_context(prompt_tokens, max_new, context, facts.get("max_input"))

    async def _plan(
        self, request: GenerationRequest, wanted: str, watchdog: Watchdog
    ) -> tuple[dict[str, Any], str, str, str | None, bool, int | None]:
        """(server facts, model name, API mode, the server's rendering or None, whether TGI's native route
        takes the request, the server's token count of the prompt or None)."""
        facts = await watchdog.guard(self.server_facts(), None)
        kind = facts["kind"]
        model_name = await watchdog.guard(self._model_name(request.model, kind), None)
        rendered: str | None = None
        if wanted in ("auto", "chat"):
            rendered = await watchdog.guard(self.server_rendering(request.messages, model_name, kind), None)
        if wanted == "auto":
            # the server's template is trusted only when it renders the card's prompt byte for byte
            mode = "chat" if rendered is not None and rendered == request.prompt else "completions"
        else:
            mode = wanted
        delegate = False
        if kind == TGI and request.json_schema:
            from components.engines.tgi import check_tgi_grammar

            check_tgi_grammar(request.json_schema, self.endpoint)
            # TGI's /v1/completions cannot constrain: its native route takes the exact prompt and a grammar
            delegate = mode == "completions"
        if kind == TGI and request.settings.top_tokens and mode == "completions":
            delegate = True  # nor has it logprobs (lib.rs CompletionRequest); the native route has top_n_tokens
        counted = None if delegate else await watchdog.guard(self._count(request.prompt, model_name, kind), None)
        return facts, model_name, mode, rendered, delegate, counted

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextDelta | Status | PromptSent | EngineDone]:
        _root, api = self._urls()
        settings = request.settings
        wanted = api_mode_for(request.model, self.api_mode)
        loop = asyncio.get_running_loop()
        timeout = self.timeout_s
        got_event = False
        watchdog = Watchdog(request.cancel, lambda: self._timeout_error(first=not got_event))
        try:
            facts, model_name, mode, rendered, delegate, counted = await self._plan(request, wanted, watchdog)
        except Stopped:
            watchdog.close()
            yield EngineDone("stopped", None, 0)
            return
        except BaseException:
            watchdog.close()
            raise
        kind = facts["kind"]
        if delegate:
            watchdog.close()
            # closing this stream (Stop, a closed tab) closes the native one and with it the HTTP connection
            async with contextlib.aclosing(self.native_tgi().generate(request)) as native:
                async for item in native:
                    yield item
            return
        try:
            if mode == "chat" and wanted == "chat":
                if rendered is not None:
                    yield PromptSent(rendered)
                else:
                    yield PromptSent(None, "note_server_template", {"endpoint": endpoint_name(self.endpoint)})
            prompt_tokens = counted if counted is not None else estimate_tokens(request.prompt)
            self._check_fits(request, prompt_tokens, facts)

            url = api + ("/chat/completions" if mode == "chat" else "/completions")
            body = self._body(request, mode, model_name, facts)
            trimmer = StopTrimmer(settings.stop)
            first_deadline = loop.time() + timeout
            response: httpx.Response | None = None
            finish: str | None = None
            done = False
            usage_tokens: int | None = None
            usage_prompt: int | None = None
            seen = 0
            unshown = 0
            probs: list[TokenProb] = []  # of the tokens whose text the trimmer still holds
            try:
                try:
                    opened = self._open(url, body, bool(request.json_schema), request.credential)
                    response = await watchdog.guard(opened, first_deadline)
                    lines = response.aiter_lines().__aiter__()
                    while True:
                        deadline = loop.time() + timeout if got_event else first_deadline
                        try:
                            line = await watchdog.guard(lines.__anext__(), deadline)
                        except StopAsyncIteration:
                            break
                        line = line.rstrip("\r")
                        if not line.startswith("data:"):
                            continue  # blank separators, `: ping` keep-alives, event:/id: fields
                        data = line[5:].strip()
                        if data == "[DONE]":
                            done = True
                            break
                        event = json.loads(data)
                        if not isinstance(event, dict):
                            raise ValueError("event is not an object")
                        if event.get("error") is not None:
                            message, error_type, status = read_error_payload(event)
                            # TGI: http_status_code is always 422, the cause is in the message
                            error_type = error_type or error_type_from_message(message)
                            raise classify_error(self.endpoint, status, message, error_type)
                        got_event = True
                        usage = event.get("usage")
                        if isinstance(usage, dict):
                            usage_tokens = _int(usage.get("completion_tokens")) or usage_tokens
                            usage_prompt = _int(usage.get("prompt_tokens")) or usage_prompt
                        choices = event.get("choices") or []
                        if not choices:
                            continue
                        choice = choices[0]
                        piece = choice["delta"].get("content") if mode == "chat" else choice.get("text")
                        reason = choice.get("finish_reason")
                        if kind == TGI and mode == "completions" and reason == "eos_token":
                            # router/src/server.rs completions(): the last chunk carries the last token's text,
                            # here the end-of-sequence token (`</s>`, `<|im_end|>`), which is no answer text
                            piece = ""
                        if settings.top_tokens and piece:
                            probs += openai_token_probs(choice.get("logprobs"))
                        if piece:
                            seen += 1
                            unshown += 1
                            text = trimmer.feed(piece)
                            if text:
                                yield TextDelta(text, unshown, tuple(probs))
                                unshown = 0
                                probs = []
                        if reason:
                            finish = str(reason)
                        elif trimmer.hit:
                            finish = "stop_sequence"  # enforced here: closing the stream ends the generation
                            break
                except Stopped:
                    finish = "stopped"
                except EngineError:
                    raise
                except Exception as exc:
                    raise self._map_error(exc, got_event) from None
            finally:
                if response is not None:
                    # an unfinished response takes its connection with it: the server sees the client leave
                    await response.aclose()
        finally:
            watchdog.close()

        prompt_count = usage_prompt or prompt_tokens
        if finish == "stopped":
            yield EngineDone("stopped", prompt_count, seen)
            return
        rest = trimmer.flush()
        if rest or probs:
            yield TextDelta(rest, unshown, tuple(probs))
        if not done and finish is None:
            raise EngineError("err_remote_cut", endpoint=endpoint_name(self.endpoint))
        yield EngineDone(finish or "unknown", prompt_count, usage_tokens or seen)

    # ---- status ------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """GET /v1/models (and /health where the server has it). No secrets in it."""
        out: dict[str, Any] = {
            "ok": False,
            "model_id": None,
            "models": [],
            "version": None,
            "max_total_tokens": None,
            "error": None,
            "error_params": {},
            "api_mode": (os.environ.get("OPENAI_API_MODE") or self.api_mode or "auto").strip().lower(),
            "server": None,
        }
        name = endpoint_name(self.endpoint)
        if not self.endpoint.url():
            out["error"] = "err_remote_not_configured"
            out["error_params"] = {"endpoint": name, "env": self.endpoint.url_env}
            return out
        root, api = self._urls()
        http = self._http.get()
        try:
            listing = await http.get(api + "/models", timeout=SIDE_TIMEOUT_S)
            health = await http.get(root + "/health", timeout=SIDE_TIMEOUT_S)
        except httpx.ConnectError:
            out["error"], out["error_params"] = "err_remote_unreachable", {"endpoint": name}
            return out
        except httpx.TimeoutException:
            out["error"], out["error_params"] = "err_remote_timeout", {"endpoint": name, "seconds": SIDE_TIMEOUT_S}
            return out
        except httpx.HTTPError:
            out["error"], out["error_params"] = "err_remote_cut", {"endpoint": name}
            return out
        if listing.status_code != 200:
            error = classify_error(self.endpoint, listing.status_code, listing.text[:200])
            out["error"], out["error_params"] = error.key, error.params
            return out
        with contextlib.suppress(EngineError):
            facts = await self.server_facts()
            out["models"] = list(facts["models"])
            out["max_total_tokens"] = facts["context"]
            out["version"] = facts["version"]
            out["server"] = facts["kind"]  # tgi, llama.cpp, vllm, sglang or openai
        out["model_id"] = out["models"][0] if out["models"] else None
        if health.status_code in (200, 404, 405):  # llama-cpp-python has no /health
            out["ok"] = True
        else:
            out["error"] = "err_remote_unhealthy"
            out["error_params"] = {"endpoint": name, "status": health.status_code}
        return out
