"""A vLLM OpenAI-server stand-in on loopback, as strict as vLLM's source on every field the playground sends.

Each rule names the file of github.com/vllm-project/vllm it comes from (read in its 2026 layout, release 0.24):
- vllm/entrypoints/serve/engine/protocol.py: OpenAIBaseModel (`extra="allow"`: unknown fields are ignored, only
  logged), ErrorResponse/ErrorInfo (`{"error": {"message", "type", "param", "code"}}`), ModelCard (`max_model_len`).
- vllm/entrypoints/openai/completion/protocol.py, chat_completion/protocol.py: the request fields and their
  `mode="before"` validators (stream_options only with stream, an empty prompt, response_format json_schema
  without its `json_schema`, more than one kind of structured_outputs).
- vllm/entrypoints/generate/base/protocol.py: StopParam (a string or a list of at most VLLM_MAX_STOP_STRINGS,
  default 4), ResponseFormat, structured_outputs_from_response_format.
- vllm/sampling_params.py `_verify_args`: temperature in [0, 2], top_p in (0, 1], top_k >= -1, min_p in [0, 1],
  repetition_penalty > 0, max_tokens >= 1, no empty stop string.
- vllm/entrypoints/serve/exception_handling/handlers/validation.py: a request that fails pydantic is a 400
  (`"N validation error(s):\\n  {...}"`, type "Bad Request"), not FastAPI's 422;
  exception_handling/error_response.py: VLLMValidationError is 400 "BadRequestError", VLLMNotFoundError 404.
- serving (engine/serving.py `_check_model`): a `model` that is not the served name is 404
  "The model `x` does not exist."; the context check (TokenizeParams, `max_total_tokens_param="max_model_len"`) is
  a 400 "This model's maximum context length is …".
- the authentication middleware (serve/middleware/authenticate.py, `--api-key`): only paths under /v1 need the key;
  a wrong one is 401 `{"error": "Unauthorized"}`. /tokenize, /version and /health stay open.
- logprobs (chat_completion/protocol.py `check_logprobs`: `top_logprobs` a positive value or -1, and only with
  `logprobs: true`; completion/protocol.py: `logprobs` a positive value; the engine's `max_logprobs`, 20 by default,
  v1/engine/processor.py): chat chunks carry ChatCompletionLogProbs `{"content": [{"token", "logprob", "bytes",
  "top_logprobs": [...]}]}`, completion chunks CompletionLogProbs `{"text_offset", "token_logprobs", "tokens",
  "top_logprobs": [{token: logprob}]}` whose dict holds the top k and the sampled token
  (entrypoints/openai/chat_completion/serving.py `_create_chat_logprobs`, completion/serving.py
  `_create_completion_logprobs`); the values are the model's raw logprobs (`logprobs_mode` raw_logprobs).
- structured outputs by release: `guided_json` until 0.11 (removed in 0.12, PR #29326: ignored from then on),
  `structured_outputs` from 0.10.2; chat reads `response_format` in OpenAI's json_schema form.

The tokenizer and the streaming machinery are the TGI stand-in's (tests/tgi_standin.py). Run it alone:
`python tests/vllm_standin.py --port 8000`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from tests.tgi_standin import Disconnect, EventStream, Recorded, _QuietAbort, tokenize

#: default of VLLM_MAX_STOP_STRINGS (generate/base/protocol.py StopParam)
MAX_STOP_STRINGS = 4
#: the engine's default `max_logprobs` (config/model.py ModelConfig.max_logprobs)
MAX_LOGPROBS = 20
#: the stand-in's distribution at each step: the sampled (greedy) token first, then made-up alternatives
STEP_PROBS = (0.55, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02)
#: chat_completion serving without a chat template (transformers' wording, passed through as a 400)
NO_TEMPLATE = (
    "As of transformers v4.44, default chat template is no longer allowed, so you must provide a chat template "
    "if the tokenizer does not define one."
)


def version_tuple(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


@dataclass
class OpenAIServerConfig:
    """What the stand-in serves and how. Tests change fields between requests (`reset`)."""

    model_id: str = "jphme/em_german_leo_mistral"
    version: str = "0.24.0"
    max_model_len: int = 4096
    reply: str = "Berlin ist die Hauptstadt von Deutschland."
    json_reply: str = '{"antwort": "Berlin", "sicher": true}'
    tokens_per_s: float = 500.0
    api_key: str | None = None
    #: the model's chat template renders ChatML; None: it has none (chat requests fail)
    chat_template: str | None = "chatml"
    #: "midstream": an error event after `fail_after` tokens
    fail: str | None = None
    fail_after: int = 2
    keepalive_s: float = 15.0
    endless: bool = False


def bad_request(message: str, param: str | None = None, status: int = 400, kind: str = "BadRequestError") -> Response:
    """engine/protocol.py ErrorResponse (nested since 0.10.1)."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}}, status)


class VllmStandin:
    """The vLLM app plus what it saw (every request, every early disconnect)."""

    server_name = "vLLM"

    def __init__(self, config: OpenAIServerConfig | None = None) -> None:
        self.config = config or OpenAIServerConfig()
        self.requests: list[Recorded] = []
        self.disconnects: list[Disconnect] = []
        self.active = 0
        self.app = Starlette(routes=self.routes())

    def routes(self) -> list[Route]:
        return [
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/tokenize", self.tokenize, methods=["POST"]),
            Route("/version", self.version, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
        ]

    # ---- test helpers -----------------------------------------------------------------------------
    def reset(self, **changes: Any) -> None:
        self.config = dataclasses.replace(OpenAIServerConfig(), **changes)
        self.requests.clear()
        self.disconnects.clear()

    def calls(self, *paths: str) -> list[Recorded]:
        return [r for r in self.requests if not paths or r.path in paths]

    def generation_calls(self) -> list[Recorded]:
        return [r for r in self.calls("/v1/completions", "/v1/chat/completions") if r.method == "POST"]

    # ---- plumbing -----------------------------------------------------------------------------------
    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Recorded(request.method, request.url.path, headers, body))
        return body

    def unauthorized(self, request: Request) -> Response | None:
        """serve/middleware/authenticate.py: only /v1 paths are guarded."""
        key = self.config.api_key
        if not key or not request.url.path.startswith("/v1"):
            return None
        if request.headers.get("authorization", "") != f"Bearer {key}":
            return JSONResponse({"error": "Unauthorized"}, 401)
        return None

    def error(
        self, message: str, param: str | None = None, status: int = 400, kind: str = "BadRequestError"
    ) -> Response:
        return bad_request(message, param, status, kind)

    def validation_error(self, loc: str, msg: str, value: Any) -> Response:
        """handlers/validation.py: pydantic's errors as `N validation error(s):` with a 400."""
        shown = value if not isinstance(value, list | dict) else f"<{type(value).__name__} of {len(value)} items>"
        entry = {"type": "value_error", "loc": ("body", loc), "msg": msg, "input": shown}
        return self.error(f"1 validation error:\n  {entry}", f"body.{loc}", kind="Bad Request")

    def served(self, model: Any) -> bool:
        return model is None or model == self.config.model_id

    # ---- info routes ----------------------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        await self._record(request)
        if (refused := self.unauthorized(request)) is not None:
            return refused
        card = {
            "id": self.config.model_id,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": self.config.model_id,
            "parent": None,
            "max_model_len": self.config.max_model_len,
            "permission": [],
        }
        return JSONResponse({"object": "list", "data": [card]})

    async def version(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"version": self.config.version})

    async def health(self, request: Request) -> Response:
        await self._record(request)
        return Response(status_code=200)  # instrumentator/health.py: an empty 200

    async def tokenize(self, request: Request) -> Response:
        """TokenizeCompletionRequest {model?, prompt, add_special_tokens=True} -> {count, max_model_len, tokens,
        token_strs}; a request without `prompt` (nor `messages`) fails validation."""
        body = await self._record(request)
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return self.validation_error("prompt", "Field required", body)
        if not self.served(body.get("model")):
            return self.error(f"The model `{body['model']}` does not exist.", None, 404, "NotFoundError")
        ids = [tok[0] for tok in tokenize(body["prompt"])]
        if body.get("add_special_tokens", True):
            ids = [1, *ids]  # BOS
        return JSONResponse(
            {"count": len(ids), "max_model_len": self.config.max_model_len, "tokens": ids, "token_strs": None}
        )

    # ---- generation ------------------------------------------------------------------------------------
    def check_sampling(self, body: dict[str, Any]) -> Response | None:
        """The request validators and SamplingParams._verify_args, in the order vLLM runs them."""
        if body.get("stream_options") and not body.get("stream"):
            return self.error("Stream options can only be defined when `stream=True`.", "stream_options")
        stop = body.get("stop")
        if stop is not None and not isinstance(stop, str | list):
            return self.validation_error("stop", "Input should be a valid list", stop)
        if isinstance(stop, list) and len(stop) > MAX_STOP_STRINGS:
            msg = f"List should have at most {MAX_STOP_STRINGS} items after validation, not {len(stop)}"
            return self.validation_error("stop", msg, stop)
        response_format = body.get("response_format")
        if isinstance(response_format, dict):
            if response_format.get("type") not in ("text", "json_object", "json_schema", "structural_tag"):
                return self.validation_error("response_format.type", "Input should be 'text', …", response_format)
            if response_format.get("type") == "json_schema":
                inner = response_format.get("json_schema")
                if inner is None:
                    return self.error(
                        "When response_format type is 'json_schema', the 'json_schema' field must be provided.",
                        "response_format",
                    )
                if not isinstance(inner, dict) or not isinstance(inner.get("name"), str):
                    return self.validation_error("response_format.json_schema.name", "Field required", inner)
        structured = body.get("structured_outputs")
        kinds = (
            sum(structured.get(k) is not None for k in ("json", "regex", "choice"))
            if isinstance(structured, dict)
            else 0
        )
        if kinds > 1 and self.knows_structured_outputs():
            return self.error(
                "You can only use one kind of constraints for structured outputs ('json', 'regex' or 'choice').",
                "structured_outputs",
            )
        refused = self.check_logprobs(body)
        if refused is not None:
            return refused
        temperature = body.get("temperature")
        if temperature is not None and not 0.0 <= temperature <= 2.0:
            return self.error(f"temperature must be in [0, 2], got {temperature}.", "temperature")
        top_p = body.get("top_p")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            return self.error(f"top_p must be in (0, 1], got {top_p}.", "top_p")
        top_k = body.get("top_k")
        if top_k is not None and (not isinstance(top_k, int) or top_k < -1):
            return self.error(f"top_k must be 0 (disable), or at least 1, got {top_k}.")
        min_p = body.get("min_p")
        if min_p is not None and not 0.0 <= min_p <= 1.0:
            return self.error(f"min_p must be in [0, 1], got {min_p}.")
        penalty = body.get("repetition_penalty")
        if penalty is not None and penalty <= 0.0:
            return self.error(f"repetition_penalty must be greater than zero, got {penalty}.")
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            return self.error(f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if any(not s for s in stops):
            return self.error("stop cannot contain an empty string.")
        return None

    def check_context(self, prompt_tokens: int, max_tokens: int) -> Response | None:
        """The renderer's length check (TokenizeParams with max_total_tokens=max_model_len)."""
        if prompt_tokens + max_tokens <= self.config.max_model_len:
            return None
        return self.error(
            f"This model's maximum context length is {self.config.max_model_len} tokens. However, you requested "
            f"{max_tokens} output tokens and your prompt contains at least {prompt_tokens} input tokens, for a total "
            f"of at least {prompt_tokens + max_tokens} tokens. Please reduce the length of the input prompt or the "
            "number of requested output tokens.",
            "input_tokens",
        )

    def knows_structured_outputs(self) -> bool:
        return version_tuple(self.config.version) >= (0, 10, 2)

    def constrained(self, body: dict[str, Any], chat: bool) -> bool:
        """Whether this release turns what the request carries into a JSON constraint."""
        version = version_tuple(self.config.version)
        form = body.get("response_format")
        json_form = isinstance(form, dict) and form.get("type") in ("json_schema", "json_object")
        if json_form and (chat or version >= (0, 12)):  # completion/protocol.py: response_format honoured there too
            return True
        structured = body.get("structured_outputs")
        if self.knows_structured_outputs() and isinstance(structured, dict) and structured.get("json") is not None:
            return True
        # guided_json: honoured until 0.11, an ignored unknown field from 0.12 (OpenAIBaseModel extra="allow")
        return version < (0, 12) and body.get("guided_json") is not None

    def render_chat(self, messages: Any) -> str | None:
        if self.config.chat_template != "chatml":
            return None
        out = ""
        for message in messages:
            out += f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n"
        return out + "<|im_start|>assistant\n"

    async def completions(self, request: Request) -> Response:
        return await self.generate(request, chat=False)

    async def chat_completions(self, request: Request) -> Response:
        return await self.generate(request, chat=True)

    async def generate(self, request: Request, chat: bool) -> Response:
        body = await self._record(request)
        if (refused := self.unauthorized(request)) is not None:
            return refused
        return await self.answer(body, chat)

    def check_logprobs(self, body: dict[str, Any]) -> Response | None:
        """chat_completion/protocol.py and completion/protocol.py `check_logprobs`, then the engine's max_logprobs."""
        top = body.get("top_logprobs")
        if top is not None:
            if top < 0 and top != -1:
                return self.error("`top_logprobs` must be a positive value or -1.", "top_logprobs")
            if (top == -1 or top > 0) and not body.get("logprobs"):
                return self.error("when using `top_logprobs`, `logprobs` must be set to true.", "top_logprobs")
        count = body.get("logprobs")
        if isinstance(count, bool):  # chat: a flag; the number is top_logprobs
            count = top if count else None
        elif count is not None and count < 0 and count != -1:
            return self.error("`logprobs` must be a positive value or -1.", "logprobs")
        if count is not None and count > MAX_LOGPROBS:
            return self.error(
                f"Requested sample logprobs of {count}, which is greater than max allowed: {MAX_LOGPROBS}", "logprobs"
            )
        return None

    async def answer(self, body: Any, chat: bool) -> Response:
        """A recorded, authorized request to /v1/completions or /v1/chat/completions."""
        if not isinstance(body, dict):
            return self.validation_error("body", "Input should be a valid dictionary", body)
        if not self.served(body.get("model")):
            return self.error(f"The model `{body['model']}` does not exist.", None, 404, "NotFoundError")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages
            ):
                return self.validation_error("messages", "Field required", messages)
            prompt = self.render_chat(messages)
            if prompt is None:
                return self.error(NO_TEMPLATE)
        else:
            prompt = body.get("prompt")
            if prompt is None or prompt == "":
                return self.error("Either prompt or prompt_embeds must be provided and non-empty.", "prompt")
            if not isinstance(prompt, str):
                return self.validation_error("prompt", "Input should be a valid string", prompt)
        refused = self.check_sampling(body)
        if refused is not None:
            return refused
        max_tokens = body.get("max_tokens") or (16 if not chat else None)
        prompt_tokens = len(tokenize(prompt)) + 1
        budget = max_tokens or (self.config.max_model_len - prompt_tokens)
        refused = self.check_context(prompt_tokens, budget)
        if refused is not None:
            return refused
        text = self.config.json_reply if self.constrained(body, chat) else self.config.reply
        if self.config.endless:
            text = (text + " ") * (budget // max(1, len(tokenize(text))) + 1)
        stops = [body["stop"]] if isinstance(body.get("stop"), str) else list(body.get("stop") or [])
        if not body.get("stream"):
            return self.error("the stand-in streams only", "stream")
        return self.stream(body, chat, text, budget, stops, prompt_tokens)

    def chunk_id(self, chat: bool) -> str:
        return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex

    def stream(
        self, body: dict[str, Any], chat: bool, text: str, budget: int, stops: list[str], prompt_tokens: int
    ) -> Response:
        model = body.get("model") or self.config.model_id
        cid = self.chunk_id(chat)
        created = int(time.time())
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def event(obj: Any) -> bytes:
            return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"

        wants = body.get("logprobs")
        k = (body.get("top_logprobs") or 0) if chat else (wants if isinstance(wants, int) else 0)

        def logprobs_of(piece: str, offset: int) -> dict[str, Any] | None:
            """One token's logprobs in the route's form; the sampled token is the likeliest (greedy)."""
            if not wants:
                return None
            import math

            alts = [(piece, STEP_PROBS[0])] + [(f" alt{i}", p) for i, p in enumerate(STEP_PROBS[1 : k + 1], 1)]
            if chat:
                entry = {
                    "token": piece,
                    "logprob": math.log(STEP_PROBS[0]),
                    "bytes": list(piece.encode()),
                    "top_logprobs": [
                        {"token": tok, "logprob": math.log(p), "bytes": list(tok.encode())} for tok, p in alts[:k]
                    ],
                }
                return {"content": [entry]}
            return {
                "text_offset": [offset],
                "token_logprobs": [math.log(STEP_PROBS[0])],
                "tokens": [piece],
                # the top k, plus the sampled token where it is not among them (greedy: it is)
                "top_logprobs": [{tok: math.log(p) for tok, p in alts[: max(k, 1)]}],
            }

        def chunk(
            piece: str | None, finish: str | None, stop_reason: str | None = None, offset: int = 0
        ) -> dict[str, Any]:
            probs = logprobs_of(piece, offset) if piece else None
            if chat:
                delta = {"role": "assistant", "content": ""} if piece is None else {"content": piece}
                choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": probs, "finish_reason": finish}
                obj = "chat.completion.chunk"
            else:
                choice = {"index": 0, "text": piece or "", "logprobs": probs, "finish_reason": finish}
                obj = "text_completion"
            choice["stop_reason"] = stop_reason
            return {"id": cid, "object": obj, "created": created, "model": model, "choices": [choice]}

        async def produce(state: dict[str, int]) -> AsyncIterator[bytes]:
            delay = 1.0 / self.config.tokens_per_s
            if chat:
                yield event(chunk(None, None))
            pieces = [tok[1] for tok in tokenize(text)]
            sent = ""
            finish, stop_reason = "stop", None
            for i, piece in enumerate(pieces):
                if i >= budget:
                    finish = "length"
                    break
                if self.config.fail == "midstream" and i == self.config.fail_after:
                    yield event(
                        {"error": {"message": "CUDA out of memory", "type": "InternalServerError", "code": 500}}
                    )
                    yield b"data: [DONE]\n\n"
                    return
                hit = next((s for s in stops if s in sent + piece), None)
                if hit is not None:
                    # include_stop_str_in_output=False: the stop string is not sent
                    piece = (sent + piece).split(hit, 1)[0][len(sent) :]
                    if piece:
                        yield event(chunk(piece, None))
                    finish, stop_reason = "stop", hit
                    break
                await asyncio.sleep(delay)
                offset = len(sent)
                sent += piece
                state["tokens"] += 1
                yield event(chunk(piece, None, offset=offset))
            yield event(chunk("", finish, stop_reason))
            if include_usage:
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "total_tokens": prompt_tokens + state["tokens"],
                    "completion_tokens": state["tokens"],
                }
                yield event(
                    {"id": cid, "object": "x", "created": created, "model": model, "choices": [], "usage": usage}
                )
            yield b"data: [DONE]\n\n"

        return TaggedEventStream(produce, "", self, self.config.keepalive_s)  # type: ignore[arg-type]


class TaggedEventStream(EventStream):
    """The TGI stand-in's event stream with extra response headers (`extra_headers`)."""

    extra_headers: tuple[tuple[bytes, bytes], ...] = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], *self.extra_headers]}
            await send(message)

        await super().__call__(scope, receive, tagged)


class LoopbackServer:
    """Runs a stand-in app with uvicorn in a daemon thread on 127.0.0.1 (a free port unless given)."""

    def __init__(self, standin: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.standin = standin
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = int(self._sock.getsockname()[1])
        logging.getLogger("uvicorn.error").addFilter(_QuietAbort())
        config = uvicorn.Config(standin.app, log_level="warning", access_log=False, lifespan="off")
        config.timeout_graceful_shutdown = 1
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        end = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > end or not self._thread.is_alive():
                raise RuntimeError(f"the {self.standin.server_name} stand-in did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        with contextlib.suppress(OSError):
            self._sock.close()


def main(standin_class: type = VllmStandin, default_port: int = 8000) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--model-id", default=OpenAIServerConfig.model_id)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    standin = standin_class(OpenAIServerConfig(model_id=args.model_id, api_key=args.api_key))
    with LoopbackServer(standin, port=args.port) as server:
        print(f"{standin.server_name} stand-in on {server.url} (Ctrl+C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
