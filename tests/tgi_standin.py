"""A protocol-faithful TGI stand-in on loopback for tests and benchmarks (see shared/docs/tgi-protocol.md).

It is as strict as TGI 3.3.x where the playground's requests could differ; each rule names the file of TGI's
router it comes from (github.com/huggingface/text-generation-inference, router/src/): server.rs (routes,
stream forms), lib.rs (request types: what deserialises, what is ignored), validation.rs (parameter and
grammar checks), infer/mod.rs (error messages and types), chat.rs (chat stream chunks).

Starlette app served by uvicorn in a background thread; every stream is a coroutine (no thread per
stream), so 64+ concurrent streams are fine. Behaviour is switched per test through `StandinConfig`;
every request (body and headers) and every early client disconnect is recorded.

Run it alone: `python tests/tgi_standin.py --port 8080 --tokens-per-s 50 [--api-key KEY]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import random
import re
import socket
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import uvicorn
from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

#: Failure modes a test can switch on (StandinConfig.fail).
FAILURES = (
    "overloaded",  # 429 / stream error event, before any token
    "validation",  # 422 / stream error event, before any token
    "generation",  # 424 / stream error event after `fail_after` tokens
    "incomplete",  # after `fail_after` tokens: incomplete_generation_stream (streams), incomplete_generation (500)
    "unknown",  # an error_type the client does not know
    "cut",  # the connection is dropped after `fail_after` tokens (no last event)
    "malformed",  # an event that is not JSON after `fail_after` tokens
    "stall",  # headers and keep-alive comments, but the first token never comes
    "template",  # chat route only: 422 template_error (model without a chat template)
)

STATUS_OF = {"overloaded": 429, "validation": 422, "generation": 424, "incomplete": 500, "unknown": 500}
ERROR_TYPE_OF = {
    "overloaded": "overloaded",
    "validation": "validation",
    "generation": "generation",
    "incomplete": "incomplete_generation",
    "unknown": "mystery",
}
# infer/mod.rs, `impl Display for InferError`
MESSAGE_OF = {
    "overloaded": "Model is overloaded",
    "validation": "Input validation error: `temperature` must be strictly positive",
    "generation": "Request failed during generation: Server error: CUDA out of memory",
    "incomplete": "Incomplete generation",
    "unknown": "Something unexpected happened",
}
#: server.rs generate_stream_internal(): a stream that ends without its last token (since TGI 2.3)
INCOMPLETE_STREAM = {"error": "Incomplete generation stream", "error_type": "incomplete_generation_stream"}
#: validation.rs: a request's max_new_tokens counts for the length check only up to this chunk size
DEFAULT_GENERATION_LENGTH = 1024
#: the chat templates the stand-in can apply (StandinConfig.chat_template); None: the model has none
CHAT_TEMPLATES = ("chatml", "llama2")
EOS_TEXT = "</s>"
EOS_ID = 2
TOKEN_RE = re.compile(r"\s*\S+|\s+")


def tokenize(text: str) -> list[tuple[int, str, int, int]]:
    """The stand-in's tokenizer: a word with its leading whitespace is one token. (id, text, start, stop)."""
    return [
        (zlib.crc32(m.group().encode()) % 32000 + 3, m.group(), m.start(), m.end()) for m in TOKEN_RE.finditer(text)
    ]


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@dataclass
class StandinConfig:
    """What the stand-in serves and how it misbehaves. Tests change fields between requests."""

    #: what `/info` (and `/v1/models`) report: the app binds the server to this model (EM German LeoLM Mistral)
    model_id: str = "jphme/em_german_leo_mistral"
    version: str = "3.3.6-native"
    reply: str = "Berlin ist die Hauptstadt von Deutschland."
    json_reply: str = '{"antwort": "Berlin", "sicher": true}'
    #: repeat the reply until max_new_tokens (finish `length`), for benchmarks
    endless: bool = False
    tokens_per_s: float = 500.0
    max_total_tokens: int = 4096
    max_input_tokens: int = 4095
    max_stop_sequences: int = 4
    max_concurrent_requests: int = 128
    #: servers before 2.1 name max_input_tokens max_input_length and write `data:` without a space
    legacy: bool = False
    keepalive_s: float = 15.0
    api_key: str | None = None
    fail: str | None = None
    #: tokens streamed before a mid-answer failure (generation, incomplete, cut, malformed)
    fail_after: int = 2
    healthy: bool = True
    tokenize_fails: bool = False
    #: the model's chat template: "chatml" (LeoLM's, the card's format), "llama2" (a template that is not the
    #: card's), or None (the model has none: chat requests fail with a template error)
    chat_template: str | None = "chatml"
    #: --disable-grammar-support: every grammar is refused (validation.rs)
    grammar_support: bool = True
    #: --max-top-n-tokens (launcher, default 5): the most alternatives per token a request may ask for
    max_top_n_tokens: int = 5


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


@dataclass
class Disconnect:
    path: str
    at: float
    tokens_sent: int


class Standin:
    """The app plus what it saw. Thread-safe enough for tests: lists are appended from the server thread."""

    def __init__(self, config: StandinConfig | None = None) -> None:
        self.config = config or StandinConfig()
        #: the model this stand-in serves, kept by reset()
        self.model_id = self.config.model_id
        self.requests: list[Recorded] = []
        self.disconnects: list[Disconnect] = []
        self.completed = 0
        self.active = 0
        self.app = Starlette(
            routes=[
                Route("/", self.compat_generate, methods=["POST"]),
                Route("/", self.health, methods=["GET"]),
                Route("/generate", self.generate, methods=["POST"]),
                Route("/generate_stream", self.generate_stream, methods=["POST"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/tokenize", self.tokenize, methods=["POST"]),
                Route("/chat_tokenize", self.chat_tokenize, methods=["POST"]),
                Route("/info", self.info, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
            ]
        )

    # ---- test helpers -----------------------------------------------------------------------------
    def reset(self, **changes: Any) -> None:
        self.config = dataclasses.replace(StandinConfig(model_id=self.model_id), **changes)
        self.requests.clear()
        self.disconnects.clear()
        self.completed = 0

    def calls(self, *paths: str) -> list[Recorded]:
        return [r for r in self.requests if not paths or r.path in paths]

    def generation_calls(self) -> list[Recorded]:
        """Requests that generate: POSTs to TGI's generation routes (a HEAD of "/" is the app asking whether the
        server answers, components/core/availability.py)."""
        paths = ("/", "/generate", "/generate_stream", "/v1/chat/completions", "/v1/completions")
        return [r for r in self.calls(*paths) if r.method == "POST"]

    def wait_disconnect(self, timeout: float = 2.0) -> Disconnect | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.disconnects:
                return self.disconnects[-1]
            time.sleep(0.005)
        return self.disconnects[-1] if self.disconnects else None

    # ---- request plumbing ---------------------------------------------------------------------
    async def _record(self, request: Request) -> tuple[Any, Response | None]:
        """Records the request; returns (parsed body, refusal) where a refusal is TGI's answer to bad input."""
        raw = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.requests.append(Recorded(request.method, request.url.path, headers, body))
        # server.rs: --api-key guards the generation routes and /tokenize; /chat_tokenize, /info, /health,
        # /metrics and /v1/models are in `info_routes`, which stay open
        if request.method == "POST" and request.url.path != "/chat_tokenize" and self._unauthorized(headers):
            return body, Response(status_code=401)  # server.rs: Err(StatusCode::UNAUTHORIZED), no body
        if request.method == "POST":
            # server.rs handlers take axum's Json<...>: its rejections are plain text (415, 400, 422)
            if "json" not in headers.get("content-type", ""):
                return body, PlainTextResponse("Expected request with `Content-Type: application/json`", 415)
            if not isinstance(body, dict):
                return body, PlainTextResponse("Failed to parse the request body as JSON", 400)
        return body, None

    def _unauthorized(self, headers: dict[str, str]) -> bool:
        key = self.config.api_key
        if not key:
            return False
        return headers.get("authorization", "").lower() != f"bearer {key}".lower()

    # ---- validation, as router/src/validation.rs words it ---------------------------------------
    def validate(self, inputs: str, params: dict[str, Any], stream: bool) -> tuple[str | None, dict[str, Any]]:
        """(error message or None, normalized parameters)."""
        cfg = self.config

        def err(text: str) -> tuple[str, dict[str, Any]]:
            return f"Input validation error: {text}", {}

        temperature = params.get("temperature")
        if temperature is not None and temperature <= 0:
            return err("`temperature` must be strictly positive")
        top_p = params.get("top_p")
        if top_p is not None and not 0 < top_p < 1:
            return err("`top_p` must be > 0.0 and < 1.0")
        top_k = params.get("top_k")
        if top_k is not None and top_k <= 0:
            return err("`top_k` must be strictly positive")
        typical_p = params.get("typical_p")
        if typical_p is not None and not 0 < typical_p < 1:
            return err("`typical_p` must be > 0.0 and < 1.0")
        penalty = params.get("repetition_penalty")
        if penalty is not None and penalty <= 0:
            return err("`repetition_penalty` must be strictly positive")
        best_of = params.get("best_of")
        if stream and best_of not in (None, 1):
            return err("`best_of` != 1 is not allowed for this endpoint")
        if stream and params.get("decoder_input_details"):
            return err("`decoder_input_details` == true is not supported when streaming tokens")
        max_new = params.get("max_new_tokens")
        if max_new is not None and max_new <= 0:
            return err("`max_new_tokens` must be strictly positive")
        top_n = params.get("top_n_tokens")
        # lib.rs GenerateParameters.top_n_tokens is an Option<u32> (a negative number does not deserialise);
        # validation.rs refuses more than --max-top-n-tokens
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 0):
            return err(f"`top_n_tokens` must be >= 0 and <= {cfg.max_top_n_tokens}. Given: {top_n}")
        if top_n is not None and top_n > cfg.max_top_n_tokens:
            return err(f"`top_n_tokens` must be >= 0 and <= {cfg.max_top_n_tokens}. Given: {top_n}")
        stop = params.get("stop") or []
        if len(stop) > cfg.max_stop_sequences:
            return err(f"`stop` supports up to {cfg.max_stop_sequences} stop sequences. Given: {len(stop)}")
        grammar = params.get("grammar")
        if grammar is not None:
            problem = self.check_grammar(grammar)
            if problem:
                return err(problem)
        input_length = len(tokenize(inputs))
        # validation.rs validate_input(): max_new_tokens counts up to DEFAULT_GENERATION_LENGTH; unset, it is
        # what is left of max_total_tokens
        if max_new is None:
            max_new = max(1, cfg.max_total_tokens - input_length)
        chunk = min(max_new, DEFAULT_GENERATION_LENGTH)
        if input_length + chunk > cfg.max_total_tokens:
            return err(
                f"`inputs` tokens + `max_new_tokens` must be <= {cfg.max_total_tokens}. "
                f"Given: {input_length} `inputs` tokens and {chunk} `max_new_tokens`"
            )
        if input_length > cfg.max_input_tokens:
            return err(f"`inputs` must have less than {cfg.max_input_tokens} tokens. Given: {input_length}")
        sampling = bool(params.get("do_sample")) or any(
            params.get(k) is not None for k in ("temperature", "top_k", "top_p", "typical_p")
        )
        seed = params.get("seed")
        if sampling and seed is None:
            seed = random.randrange(2**63)
        return None, {
            "max_new_tokens": max_new,
            "stop": list(stop),
            "details": bool(params.get("details")),
            "seed": seed if sampling else None,
            "input_length": input_length,
            "json": grammar is not None,
            "top_n": top_n or 0,
        }

    def check_grammar(self, grammar: Any) -> str | None:
        """validation.rs: what is wrong with a grammar (`Input validation error: ` follows), or None.

        A `json` (alias `json_object`, lib.rs GrammarType) value may be a JSON string; it and a `json_schema`
        value's `schema` must validate against the 2020-12 meta-schema and have a top-level `properties`.
        """
        if not self.config.grammar_support:
            return "grammar is not supported"
        if not isinstance(grammar, dict) or grammar.get("type") not in ("json", "json_object", "regex", "json_schema"):
            return "grammar is not supported"
        value = grammar.get("value")
        if grammar["type"] == "regex":
            return None if isinstance(value, str) else "grammar is not supported"
        if grammar["type"] == "json_schema":
            value = value.get("schema") if isinstance(value, dict) else None
        elif isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                return f"grammar is not valid: {exc}"
        if not isinstance(value, dict):
            return "grammar is not supported"
        try:
            Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            return f"grammar is not valid: {exc.message}"
        if "properties" not in value:
            return "grammar is not valid: Grammar must have a 'properties' field"
        return None

    # ---- token probabilities -----------------------------------------------------------------------
    @staticmethod
    def token_logprobs(tid: int, piece: str, special: bool, top_n: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The streamed token ({id, text, logprob, special}, lib.rs Token) and its `top_tokens`: the top_n likeliest
        tokens of the step, descending (server/text_generation_server/utils/tokens.py batch_top_tokens, torch.topk),
        the generated one first (the stand-in decodes greedily). Its probability (0.30 to 0.95) and the
        alternatives' (each half the rest of the one before) come from the token id: the sum stays below 1."""
        prob = 0.30 + (tid % 66) / 100
        token = {"id": tid, "text": piece, "logprob": math.log(prob), "special": special}
        top = [token]
        rest = 1.0 - prob
        for k in range(1, top_n):
            rest /= 2
            alt_id = (tid * 31 + k) % 32000 + 3
            top.append({"id": alt_id, "text": f" alt{k}", "logprob": math.log(rest), "special": False})
        return token, top[:top_n]

    # ---- the token source ------------------------------------------------------------------------
    async def tokens(
        self, norm: dict[str, Any], fail_after: int | None
    ) -> AsyncIterator[tuple[int, str, bool, str | None]]:
        """Yields (id, text, special, finish_reason-or-None) at the configured speed."""
        cfg = self.config
        base = cfg.json_reply if norm["json"] else cfg.reply
        pieces = tokenize(base)
        delay = 1.0 / cfg.tokens_per_s if cfg.tokens_per_s > 0 else 0.0
        text = ""
        i = 0
        while True:
            if fail_after is not None and i >= fail_after:
                return
            await asyncio.sleep(delay)
            if i >= len(pieces) and not cfg.endless:
                yield EOS_ID, EOS_TEXT, True, "eos_token"
                return
            tid, piece, _, _ = pieces[i % len(pieces)]
            i += 1
            text += piece
            if any(s and s in text[-(len(s) + len(piece)) :] for s in norm["stop"]):
                yield tid, piece, False, "stop_sequence"
                return
            if i >= norm["max_new_tokens"]:
                yield tid, piece, False, "length"
                return
            yield tid, piece, False, None

    # ---- native routes ---------------------------------------------------------------------------
    async def compat_generate(self, request: Request) -> Response:
        body, refusal = await self._record(request)
        if refusal:
            return refusal
        # server.rs compat_generate(): return_full_text defaults to true for a text-generation model
        # (pipeline_tag), so generated_text starts with the prompt; token events are unaffected
        parameters = body.get("parameters")
        if isinstance(parameters, dict) and parameters.get("return_full_text") is None:
            body = {**body, "parameters": {**parameters, "return_full_text": True}}
        elif parameters is None:
            body = {**body, "parameters": {"return_full_text": True}}
        if body.get("stream"):
            return self._stream_native(body, request.url.path)
        result = await self._generate_once(body)
        return result if isinstance(result, Response) else JSONResponse([result])

    async def generate(self, request: Request) -> Response:
        body, refusal = await self._record(request)
        if refusal:
            return refusal
        result = await self._generate_once(body)
        return result if isinstance(result, Response) else JSONResponse(result)

    async def generate_stream(self, request: Request) -> Response:
        body, refusal = await self._record(request)
        if refusal:
            return refusal
        return self._stream_native(body, request.url.path)

    async def _generate_once(self, body: dict[str, Any]) -> dict[str, Any] | Response:
        cfg = self.config
        if not isinstance(body.get("inputs"), str):
            return PlainTextResponse(
                "Failed to deserialize the JSON body into the target type: missing field `inputs`", 422
            )
        if cfg.fail in STATUS_OF and cfg.fail != "unknown":
            return JSONResponse(
                {"error": MESSAGE_OF[cfg.fail], "error_type": ERROR_TYPE_OF[cfg.fail]}, STATUS_OF[cfg.fail]
            )
        error, norm = self.validate(body["inputs"], body.get("parameters") or {}, stream=False)
        if error:
            return JSONResponse({"error": error, "error_type": "validation"}, 422)
        text, count, reason = "", 0, "length"
        async for _tid, piece, special, finish in self.tokens(norm, None):
            count += 1
            if not special:
                text += piece
            reason = finish or reason
        self.completed += 1
        if (body.get("parameters") or {}).get("return_full_text"):
            text = body["inputs"] + text
        out: dict[str, Any] = {"generated_text": text}
        if norm["details"]:
            out["details"] = {
                "finish_reason": reason,
                "generated_tokens": count,
                "seed": norm["seed"],
                "prefill": [],
                "tokens": [],
            }
        return out

    def _stream_native(self, body: dict[str, Any], path: str) -> Response:
        cfg = self.config
        prefix = "data:" if cfg.legacy else "data: "

        def event(obj: Any) -> bytes:
            return f"{prefix}{compact(obj)}\n\n".encode()

        async def produce(state: dict[str, int]) -> AsyncIterator[bytes]:
            if not isinstance(body.get("inputs"), str):
                yield event({"error": "missing field `inputs`", "error_type": "validation"})
                return
            fail = cfg.fail
            if fail == "stall":
                await asyncio.Event().wait()  # queued forever; EventStream sends the keep-alive comments
            if fail in ("overloaded", "validation"):
                yield event({"error": MESSAGE_OF[fail], "error_type": ERROR_TYPE_OF[fail]})
                return
            error, norm = self.validate(body["inputs"], body.get("parameters") or {}, stream=True)
            if error:
                yield event({"error": error, "error_type": "validation"})
                return
            mid = fail in ("generation", "incomplete", "unknown", "cut", "malformed")
            # server.rs generate_stream_internal(): with return_full_text the last event's text has the prompt
            text = body["inputs"] if (body.get("parameters") or {}).get("return_full_text") else ""
            index = 0
            async for tid, piece, special, finish in self.tokens(norm, cfg.fail_after if mid else None):
                index += 1
                state["tokens"] = index
                if not special:
                    text += piece
                last = finish is not None
                details = None
                if last and norm["details"]:
                    details = {
                        "finish_reason": finish,
                        "generated_tokens": index,
                        "seed": norm["seed"],
                        "input_length": norm["input_length"],
                    }
                token, top = self.token_logprobs(tid, piece, special, norm["top_n"])
                streamed: dict[str, Any] = {"index": index, "token": token}
                if top:  # lib.rs StreamResponse: top_tokens is left out when empty (skip_serializing_if)
                    streamed["top_tokens"] = top
                yield event({**streamed, "generated_text": text if last else None, "details": details})
            if fail == "incomplete":
                yield event(INCOMPLETE_STREAM)  # server.rs generate_stream_internal(): no End from the model server
            elif fail in ("generation", "unknown"):
                yield event({"error": MESSAGE_OF[fail], "error_type": ERROR_TYPE_OF[fail]})
            elif fail == "malformed":
                yield f'{prefix}{{"index":{index + 1},"token":{{"id":'.encode() + b"\n\n"
            elif fail == "cut":
                raise _AbortConnection
            else:
                self.completed += 1

        return EventStream(produce, path, self, cfg.keepalive_s)

    # ---- OpenAI-compatible routes (the Messages API) -------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        return await self._openai(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._openai(request, chat=False)

    def render_chat(self, messages: list[Any]) -> str | None:
        """The model's chat template applied to `messages` (infer/chat_template.rs), None without a template."""
        template = self.config.chat_template
        if template == "chatml":
            text = "".join(f"<|im_start|>{m.get('role')}\n{m.get('content')}<|im_end|>\n" for m in messages)
            return text + "<|im_start|>assistant\n"
        if template == "llama2":
            system = next((m.get("content") for m in messages if m.get("role") == "system"), None)
            text = ""
            for m in messages:
                if m.get("role") == "user":
                    content = m.get("content")
                    if system is not None and not text:
                        content = f"<<SYS>>\n{system}\n<</SYS>>\n\n{content}"
                    text += f"<s>[INST] {content} [/INST]"
                elif m.get("role") == "assistant":
                    text += f" {m.get('content')} </s>"
            return text
        return None

    def _chat_request(self, body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None, Response | None]:
        """(templated inputs, grammar, refusal) of a ChatRequest (lib.rs ChatRequest::try_into_generate)."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return None, None, _undeserializable("messages: invalid type")
        grammar, refusal = _grammar_of(body.get("response_format"))
        if refusal:
            return None, None, refusal
        if self.config.fail == "template" or self.config.chat_template is None:
            # infer/mod.rs apply_chat_template(): a model without a template; an HTTP error, before any stream
            return (
                None,
                None,
                JSONResponse({"error": "Template error: template not found", "error_type": "template_error"}, 422),
            )
        return self.render_chat(messages), grammar, None

    async def _openai(self, request: Request, chat: bool) -> Response:
        body, refusal = await self._record(request)
        if refusal:
            return refusal
        cfg = self.config
        stop = body.get("stop")
        # lib.rs: ChatRequest.stop and CompletionRequest.stop are Option<Vec<String>>: a bare string does not
        # deserialise
        if stop is not None and not (isinstance(stop, list) and all(isinstance(x, str) for x in stop)):
            return _undeserializable("stop: invalid type: string, expected a sequence")
        grammar: dict[str, Any] | None = None
        if chat:
            inputs, grammar, refusal = self._chat_request(body)
            if refusal:
                return refusal
            assert inputs is not None
        else:
            # lib.rs CompletionRequest: no response_format, no top_k (both ignored); `prompt` is a string or a
            # list of strings (one request each); server.rs completions() refuses a suffix
            inputs = body.get("prompt")
            if isinstance(inputs, list):
                if len(inputs) > 4:  # info.max_client_batch_size
                    return JSONResponse(
                        {
                            "error": "Number of prompts exceeds the maximum allowed batch size of 4",
                            "error_type": "batch size exceeded",
                        },
                        422,
                    )
                inputs = inputs[0] if inputs else ""
            if not isinstance(inputs, str):
                return _undeserializable("prompt: invalid type")
            if body.get("suffix") is not None:
                return JSONResponse(
                    {
                        "error": "Suffix is not supported and can be achieved by preprocessing the prompt.",
                        "error_type": "suffix not supported",
                    },
                    422,
                )
        temperature = body.get("temperature")
        params = {
            # lib.rs / server.rs: temperature 0 means greedy (do_sample false, no temperature)
            "temperature": temperature if temperature not in (0, 0.0) else None,
            "top_p": body.get("top_p"),
            "max_new_tokens": body.get("max_tokens"),
            "stop": stop,
            "seed": body.get("seed"),
            "grammar": grammar,
            # chat: repetition_penalty comes from presence_penalty + 2 (lib.rs); completions reads it as is
            "repetition_penalty": None if chat else body.get("repetition_penalty"),
            # lib.rs ChatRequest: top_logprobs becomes top_n_tokens; CompletionRequest has neither field (ignored)
            "top_n_tokens": body.get("top_logprobs") if chat and body.get("logprobs") else None,
        }
        logprobs = chat and bool(body.get("logprobs"))
        created = int(time.time())
        # server.rs: the chunks name the model asked for, "tgi" (or none) meaning the server's own
        model = body.get("model") if body.get("model") not in (None, "tgi") else cfg.model_id
        kind = "chat.completion.chunk" if chat else "text_completion"
        fingerprint = f"{cfg.version}-native"

        def chunk(content: str | None, finish: str | None, probs: Any = None) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": content or ""}
                choice = {"index": 0, "delta": delta, "logprobs": probs, "finish_reason": finish}
                out = {"object": kind, "id": "", "created": created, "model": model}
                return {**out, "system_fingerprint": fingerprint, "choices": [choice], "usage": None}
            # server.rs completions(): `finish_reason` is "" until the last chunk
            choice = {"index": 0, "text": content or "", "logprobs": None, "finish_reason": finish or ""}
            out = {"object": kind, "id": "", "created": created, "choices": [choice], "model": model}
            return {**out, "system_fingerprint": fingerprint}

        if cfg.fail in ("overloaded", "validation") and not body.get("stream"):
            return JSONResponse(
                {"error": MESSAGE_OF[cfg.fail], "error_type": ERROR_TYPE_OF[cfg.fail]}, STATUS_OF[cfg.fail]
            )
        error, norm = self.validate(inputs, params, stream=bool(body.get("stream")))
        if error and not body.get("stream"):
            return JSONResponse({"error": error, "error_type": "validation"}, 422)

        if not body.get("stream"):
            text, count, reason = "", 0, "length"
            async for _tid, piece, special, finish in self.tokens(norm, None):
                count += 1
                text += "" if special else piece
                reason = finish or reason
            self.completed += 1
            if chat:
                reason = {"eos_token": "stop"}.get(reason, reason)
            choice = (
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": reason,
                }
                if chat
                else {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
            )
            return JSONResponse(
                {
                    "object": "chat.completion" if chat else "text_completion",
                    "id": "",
                    "created": created,
                    "model": model,
                    "system_fingerprint": fingerprint,
                    "choices": [choice],
                    "usage": {
                        "prompt_tokens": norm["input_length"],
                        "completion_tokens": count,
                        "total_tokens": norm["input_length"] + count,
                    },
                }
            )

        def event(obj: Any) -> bytes:
            return f"data: {compact(obj) if not isinstance(obj, str) else obj}\n\n".encode()

        def error_event(message: str) -> bytes:
            # infer/mod.rs InferError::into_openai_event(): always 422, whatever the cause; the cause is only
            # in the message
            return event({"error": {"message": message, "http_status_code": 422}})

        # lib.rs StreamOptions: chat only; CompletionRequest has no stream_options (its last chunk has usage)
        include_usage = chat and bool((body.get("stream_options") or {}).get("include_usage"))

        async def produce(state: dict[str, int]) -> AsyncIterator[bytes]:
            fail = cfg.fail
            if fail == "stall":
                await asyncio.Event().wait()  # queued forever; EventStream sends the keep-alive comments
            # server.rs generate_stream_internal(): errors before the first token are stream events too
            if fail in ("overloaded", "validation"):
                yield error_event(MESSAGE_OF[fail])
                yield event("[DONE]")
                return
            if error:
                yield error_event(error)
                yield event("[DONE]")
                return
            mid = fail in ("generation", "incomplete", "unknown", "cut", "malformed")
            index = 0
            async for _tid, piece, special, finish in self.tokens(norm, cfg.fail_after if mid else None):
                index += 1
                state["tokens"] = index
                if chat:
                    # chat.rs create_event_from_stream_token(): special tokens have no content; eos -> "stop";
                    # with `logprobs`, ChatCompletionLogprobs from the token and its top_tokens (lib.rs)
                    reason = {"eos_token": "stop"}.get(finish or "", finish)
                    probs = None
                    if logprobs:
                        token, top = self.token_logprobs(_tid, piece, special, norm["top_n"])
                        alternatives = [{"token": alt["text"], "logprob": alt["logprob"]} for alt in top]
                        entry = {"token": piece, "logprob": token["logprob"], "top_logprobs": alternatives}
                        probs = {"content": [entry]}
                    yield event(chunk("" if special else piece, reason, probs))
                elif finish is None:
                    yield event(chunk(piece, None))
                else:
                    # server.rs completions(): the last chunk is the last token's text, special or not (`</s>`),
                    # with the finish reason as TGI names it and the usage
                    last = chunk(piece, finish)
                    usage = {
                        "prompt_tokens": norm["input_length"],
                        "completion_tokens": index,
                        "total_tokens": norm["input_length"] + index,
                    }
                    yield event({**last, "usage": usage})
            if fail == "incomplete":
                yield error_event(INCOMPLETE_STREAM["error"])
                yield event("[DONE]")
                return
            if fail in ("generation", "unknown"):
                yield error_event(MESSAGE_OF[fail])
                yield event("[DONE]")
                return
            if fail == "malformed":
                yield b'data: {"object":"chat.completion.chunk","choices":[{\n\n'
                return
            if fail == "cut":
                raise _AbortConnection
            if include_usage:
                usage = {
                    "prompt_tokens": norm["input_length"],
                    "completion_tokens": index,
                    "total_tokens": norm["input_length"] + index,
                }
                yield event({**chunk(None, None), "choices": [], "usage": usage})
            yield event("[DONE]")
            self.completed += 1

        return EventStream(produce, request.url.path, self, cfg.keepalive_s)

    async def chat_tokenize(self, request: Request) -> Response:
        """server.rs get_chat_tokenize(): the templated ChatRequest and its tokens."""
        body, refusal = await self._record(request)
        if refusal:
            return refusal
        inputs, _grammar, refusal = self._chat_request(body)
        if refusal:
            return refusal
        assert inputs is not None
        tokens = [{"id": tid, "text": text, "start": a, "stop": b} for tid, text, a, b in tokenize(inputs)]
        return JSONResponse({"tokenize_response": tokens, "templated_text": inputs})

    # ---- facts -------------------------------------------------------------------------------------
    async def tokenize(self, request: Request) -> Response:
        body, refusal = await self._record(request)
        if refusal:
            return refusal
        if self.config.tokenize_fails:
            return PlainTextResponse("Not Found", 404)
        # server.rs tokenize(): a GenerateRequest (`inputs` required); [{id, text, start, stop}] (lib.rs SimpleToken)
        inputs = body.get("inputs")
        if not isinstance(inputs, str):
            return PlainTextResponse("Failed to deserialize the JSON body into the target type: inputs", 422)
        return JSONResponse(
            [{"id": tid, "text": text, "start": start, "stop": stop} for tid, text, start, stop in tokenize(inputs)]
        )

    async def info(self, request: Request) -> Response:
        """server.rs get_model_info(): lib.rs Info (before 2.1 `max_input_length`)."""
        await self._record(request)
        cfg = self.config
        info: dict[str, Any] = {
            "model_id": cfg.model_id,
            "model_sha": "0" * 40,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": cfg.max_concurrent_requests,
            "max_best_of": 2,
            "max_stop_sequences": cfg.max_stop_sequences,
            "max_input_tokens": cfg.max_input_tokens,
            "max_total_tokens": cfg.max_total_tokens,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": cfg.version,
            "sha": "standin",
            "docker_label": None,
        }
        if cfg.legacy:
            info["max_input_length"] = info.pop("max_input_tokens")
        return JSONResponse(info)

    async def health(self, request: Request) -> Response:
        """server.rs health(): an empty 200, or 503 {"error": "unhealthy", "error_type": "healthcheck"}."""
        await self._record(request)
        if not self.config.healthy:
            return JSONResponse({"error": "unhealthy", "error_type": "healthcheck"}, 503)
        return Response(status_code=200)

    async def models(self, request: Request) -> Response:
        """server.rs openai_get_model_info(): the one model, `created` 0."""
        await self._record(request)
        model = self.config.model_id
        return JSONResponse(
            {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": model}]}
        )

    async def metrics(self, request: Request) -> Response:
        await self._record(request)
        return PlainTextResponse(f"tgi_request_success {self.completed}\n", media_type="text/plain; version=0.0.4")


def _undeserializable(detail: str) -> Response:
    """axum's Json extractor: a body that does not deserialise into the request type is a plain-text 422."""
    return PlainTextResponse(f"Failed to deserialize the JSON body into the target type: {detail}", 422)


def _grammar_of(response_format: Any) -> tuple[dict[str, Any] | None, Response | None]:
    """(grammar, refusal) of a chat `response_format`: lib.rs GrammarType, `#[serde(tag = "type", content =
    "value")]` with `json` (alias `json_object`), `regex` and `json_schema` ({name?, schema}). OpenAI's forms
    (`{"type": "json_schema", "json_schema": {...}}`, `{"type": "json_object"}`) lack `value`: refused."""
    if response_format is None:
        return None, None
    if not isinstance(response_format, dict):
        return None, _undeserializable("response_format: invalid type")
    kind = response_format.get("type")
    if kind not in ("json", "json_object", "regex", "json_schema"):
        return None, _undeserializable(
            f"response_format: unknown variant `{kind}`, expected one of `json`, `json_object`, `regex`, `json_schema`"
        )
    if "value" not in response_format:
        return None, _undeserializable("response_format: missing field `value`")
    value = response_format["value"]
    if kind == "json_schema" and not (isinstance(value, dict) and "schema" in value):
        return None, _undeserializable("response_format: missing field `schema`")
    if kind == "regex" and not isinstance(value, str):
        return None, _undeserializable("response_format: invalid type, expected a string")
    return {"type": kind, "value": value}, None


class _AbortConnection(Exception):
    """Raised inside a stream to drop the connection without finishing the response (a crashed server)."""


class _QuietAbort(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _AbortConnection))


class EventStream(Response):
    """An SSE response that notices at once when the client goes away (and records it).

    Starlette's StreamingResponse only notices at its next write; TGI notices a closed connection and
    drops the request, so the stand-in listens for http.disconnect while it waits between tokens.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        produce: Callable[[dict[str, int]], AsyncIterator[bytes]],
        path: str,
        owner: Standin,
        keepalive_s: float = 15.0,
    ) -> None:
        super().__init__(status_code=200, media_type=self.media_type)
        self.produce = produce
        self.path = path
        self.owner = owner
        self.keepalive_s = keepalive_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        state = {"tokens": 0}
        closed = asyncio.Event()

        async def listen() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    closed.set()
                    return

        last_write = time.monotonic()

        async def write() -> None:
            nonlocal last_write
            async for chunk in self.produce(state):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                last_write = time.monotonic()
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def keep_alive() -> None:
            nonlocal last_write
            # TGI (axum's Sse keep-alive) writes a `:` comment line when nothing was sent for 15 s
            while True:
                await asyncio.sleep(max(0.01, self.keepalive_s - (time.monotonic() - last_write)))
                if time.monotonic() - last_write >= self.keepalive_s:
                    await send({"type": "http.response.body", "body": b":\n\n", "more_body": True})
                    last_write = time.monotonic()

        self.owner.active += 1
        listener = asyncio.ensure_future(listen())
        writer = asyncio.ensure_future(write())
        pinger = asyncio.ensure_future(keep_alive())
        try:
            done, _ = await asyncio.wait({listener, writer}, return_when=asyncio.FIRST_COMPLETED)
            if writer in done:
                writer.result()  # re-raises _AbortConnection: uvicorn then drops the connection
            else:
                self.owner.disconnects.append(Disconnect(self.path, time.monotonic(), state["tokens"]))
        finally:
            self.owner.active -= 1
            for task in (listener, writer, pinger):
                if not task.done():
                    task.cancel()
            await asyncio.gather(listener, writer, pinger, return_exceptions=True)


class StandinServer:
    """Runs a Standin with uvicorn in a daemon thread on 127.0.0.1 (a free port unless given)."""

    def __init__(self, config: StandinConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.standin = Standin(config)
        self.host = host
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
        # without it every response on a kept-alive connection waits ~40 ms for a delayed ACK.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = int(self._sock.getsockname()[1])
        logging.getLogger("uvicorn.error").addFilter(_QuietAbort())
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.standin.app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=1,
                timeout_keep_alive=30,
                backlog=2048,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> StandinServer:
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        end = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > end or not self._thread.is_alive():
                raise RuntimeError("the TGI stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> StandinServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--tokens-per-s", type=float, default=50.0)
    parser.add_argument("--max-total-tokens", type=int, default=4096)
    parser.add_argument("--model-id", default=StandinConfig.model_id)
    parser.add_argument("--endless", action="store_true", help="answer until max_new_tokens")
    parser.add_argument("--max-concurrent", type=int, default=StandinConfig.max_concurrent_requests)
    args = parser.parse_args()
    config = StandinConfig(
        model_id=args.model_id,
        api_key=args.api_key,
        tokens_per_s=args.tokens_per_s,
        max_total_tokens=args.max_total_tokens,
        max_input_tokens=args.max_total_tokens - 1,
        endless=args.endless,
        max_concurrent_requests=args.max_concurrent,
    )
    server = StandinServer(config, args.host, args.port).start()
    print(f"TGI stand-in on {server.url} (Ctrl+C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
