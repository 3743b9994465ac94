"""OpenAI-compatible engine: streamed chat or raw completions from TGI's Messages API, vLLM or llama.cpp's server.

Two API modes per request:
- `chat` (/v1/chat/completions with `request.messages`): the server applies the model's chat template.
  Default for ChatML families, whose template servers know.
- `completions` (/v1/completions with `request.prompt`): the family's exact raw prompt. Default for
  every other family (IGEL, EM German), whose formats no server template reproduces.
OPENAI_API_MODE=chat|completions overrides the choice for all requests.

The endpoint URL may end in /v1 (OpenAI convention: OPENAI_BASE_URL=http://host:8000/v1) or not (TGI
convention: http://host:8080); routes are built for both. The model name sent is the build's
`served_model`, else the first id of GET /v1/models.

JSON output (request.json_schema) is sent in the OpenAI standard form
`response_format: {"type": "json_schema", "json_schema": {"name": "answer", "schema": ...}}` (vLLM, TGI,
llama.cpp's C++ server). llama-cpp-python's server only knows `{"type": "json_object", "schema": ...}` and
answers the standard form with an error naming response_format (HTTP 500); the engine then switches to
that form for this endpoint and retries once. OPENAI_JSON_FORMAT=json_schema|json_object fixes the form.
llama-cpp-python ignores response_format on /v1/completions, so JSON output from it needs chat mode.

Sampling fields beyond OpenAI's (top_k, repetition_penalty for vLLM, repeat_penalty and min_p for
llama.cpp) are sent because these servers honour them and the others ignore unknown fields. top_p is
left out at 1.0 (TGI refuses 1.0); temperature 0 means greedy on all of them.
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

from components.catalog import Endpoint, ModelRef
from components.engines.base import (
    Engine,
    EngineDone,
    EngineError,
    GenerationRequest,
    SamplingSettings,
    Status,
    TextDelta,
    check_context,
)
from components.engines.remote import (
    INFO_TTL_S,
    SIDE_TIMEOUT_S,
    LoopBound,
    Stopped,
    StopTrimmer,
    Watchdog,
    auth_hook,
    classify_error,
    endpoint_name,
    estimate_tokens,
    read_error_payload,
    remote_timeout_s,
)

log = logging.getLogger(__name__)

API_MODES = ("chat", "completions")
JSON_FORMATS = ("json_schema", "json_object")
#: OpenAI's documented maximum number of stop sequences (TGI's default too).
MAX_STOP_SEQUENCES = 4


def api_mode_for(model: ModelRef, override: str | None = None) -> str:
    """`chat` or `completions` for this build: override, then OPENAI_API_MODE, then the family's format."""
    for choice in (override, os.environ.get("OPENAI_API_MODE")):
        mode = (choice or "").strip().lower()
        if mode in API_MODES:
            return mode
    return "chat" if model.family.prompt_format == "chatml" else "completions"


def response_format(schema: dict[str, Any], dialect: str) -> dict[str, Any]:
    if dialect == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def openai_sampling(settings: SamplingSettings) -> dict[str, Any]:
    """Sampling fields of a chat/completions body (see the module docstring for the choices)."""
    sampling = settings.temperature > 0
    body: dict[str, Any] = {
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature if sampling else 0.0,
        "repetition_penalty": settings.repetition_penalty,
        "repeat_penalty": settings.repetition_penalty,
        "min_p": 0.0,
    }
    if sampling and 0 < settings.top_p < 1:
        body["top_p"] = settings.top_p
    if sampling and settings.top_k > 0:
        body["top_k"] = settings.top_k
    if settings.seed is not None:
        body["seed"] = settings.seed
    if settings.stop:
        body["stop"] = list(settings.stop[:MAX_STOP_SEQUENCES])
    return body


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class OpenAICompatEngine(Engine):
    """One OpenAI-compatible server (an Endpoint of type `openai`)."""

    name = "openai"

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

    # ---- plumbing ----------------------------------------------------------------------------
    @property
    def timeout_s(self) -> float:
        return self._timeout_override if self._timeout_override else remote_timeout_s()

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            event_hooks={"request": [auth_hook(self.endpoint)]},
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

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- server facts ------------------------------------------------------------------------
    async def server_facts(self) -> dict[str, Any]:
        """Model ids, context limit and version, from whichever of /v1/models (vLLM: max_model_len),
        /info (TGI) and /props (llama.cpp's C++ server) the server has. Cached for a few minutes."""
        if self._facts is not None and time.monotonic() - self._facts_at < INFO_TTL_S:
            return self._facts
        root, api = self._urls()
        http = self._http.get()
        facts: dict[str, Any] = {"models": [], "context": None, "version": None}

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
        if facts["context"] is None:
            info = await get_json(root + "/info")
            if isinstance(info, dict) and info.get("router") == "text-generation-router":
                facts["context"] = _int(info.get("max_total_tokens"))
                facts["version"] = info.get("version")
        if facts["context"] is None:
            props = await get_json(root + "/props")
            if isinstance(props, dict):
                settings = props.get("default_generation_settings")
                n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else props.get("n_ctx")
                facts["context"] = _int(n_ctx)
        self._facts, self._facts_at = facts, time.monotonic()
        return facts

    async def _model_name(self, model: ModelRef) -> str:
        if model.quant.served_model:
            return model.quant.served_model
        models = (await self.server_facts())["models"]
        return models[0] if models else "default"

    async def _count(self, text: str, model_name: str) -> int | None:
        """The server's own token count: vLLM and TGI answer POST /tokenize (each reads its own fields of
        one body), llama-cpp-python POST /extras/tokenize/count. None when no route works."""
        if self._count_route == "":
            return None
        root, _ = self._urls()
        routes = [self._count_route] if self._count_route else ["/tokenize", "/extras/tokenize/count"]
        http = self._http.get()
        for route in routes:
            if route == "/tokenize":
                body: dict[str, Any] = {"model": model_name, "prompt": text, "inputs": text}
            else:
                body = {"input": text}
            try:
                response = await http.post(root + route, json=body, timeout=SIDE_TIMEOUT_S)
                data = response.json() if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                return None  # the server is unhappy now; ask again next time
            count: int | None = None
            if isinstance(data, list):
                count = len(data)
            elif isinstance(data, dict):
                count = _int(data.get("count"))
                if count is None and isinstance(data.get("tokens"), list):
                    count = len(data["tokens"])
            if count is not None:
                self._count_route = route
                return count
        self._count_route = ""
        return None

    async def count_tokens(self, model: ModelRef, text: str) -> int | None:
        return await self._count(text, await self._model_name(model))

    def context_length(self, model: ModelRef) -> int:
        facts = self._facts or {}
        return facts.get("context") or model.variant.context_length

    # ---- generation --------------------------------------------------------------------------
    def _timeout_error(self, first: bool) -> EngineError:
        key = "err_remote_timeout" if first else "err_remote_stalled"
        return EngineError(key, endpoint=endpoint_name(self.endpoint), seconds=round(self.timeout_s, 1))

    def _body(self, request: GenerationRequest, mode: str, model_name: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model_name, "stream": True, "stream_options": {"include_usage": True}}
        if mode == "chat":
            body["messages"] = request.messages
        else:
            body["prompt"] = request.prompt
        body.update(openai_sampling(request.settings))
        if request.json_schema:
            body["response_format"] = response_format(request.json_schema, self.json_dialect())
        return body

    async def _open(self, url: str, body: dict[str, Any], has_schema: bool) -> httpx.Response:
        """POSTs and returns the streaming response, or raises the server's error as an EngineError."""
        http = self._http.get()
        for attempt in range(2):
            response = await http.send(http.build_request("POST", url, json=body), stream=True)
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
                and body.get("response_format", {}).get("type") == "json_schema"
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

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextDelta | Status | EngineDone]:
        _root, api = self._urls()
        settings = request.settings
        mode = api_mode_for(request.model, self.api_mode)
        loop = asyncio.get_running_loop()
        timeout = self.timeout_s
        got_event = False
        watchdog = Watchdog(request.cancel, lambda: self._timeout_error(first=not got_event))
        try:
            try:
                model_name = await watchdog.guard(self._model_name(request.model), None)
                counted = await watchdog.guard(self._count(request.prompt, model_name), None)
                facts = await watchdog.guard(self.server_facts(), None)
            except Stopped:
                yield EngineDone("stopped", None, 0)
                return
            prompt_tokens = counted if counted is not None else estimate_tokens(request.prompt)
            context = facts["context"] or request.model.variant.context_length
            check_context(prompt_tokens, settings.max_new_tokens, context)

            url = api + ("/chat/completions" if mode == "chat" else "/completions")
            body = self._body(request, mode, model_name)
            trimmer = StopTrimmer(settings.stop)
            first_deadline = loop.time() + timeout
            response: httpx.Response | None = None
            finish: str | None = None
            done = False
            usage_tokens: int | None = None
            usage_prompt: int | None = None
            seen = 0
            unshown = 0
            try:
                try:
                    response = await watchdog.guard(self._open(url, body, bool(request.json_schema)), first_deadline)
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
                        if piece:
                            seen += 1
                            unshown += 1
                            text = trimmer.feed(piece)
                            if text:
                                yield TextDelta(text, unshown)
                                unshown = 0
                        if choice.get("finish_reason"):
                            finish = str(choice["finish_reason"])
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
        if rest:
            yield TextDelta(rest, unshown)
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
        out["model_id"] = out["models"][0] if out["models"] else None
        if health.status_code in (200, 404, 405):  # llama-cpp-python has no /health
            out["ok"] = True
        else:
            out["error"] = "err_remote_unhealthy"
            out["error_params"] = {"endpoint": name, "status": health.status_code}
        return out
