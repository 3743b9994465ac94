"""An SGLang server stand-in on loopback, as strict as SGLang's source where the playground's requests could differ.

Each rule names the file of github.com/sgl-project/sglang (python/sglang/srt/) it comes from:
- entrypoints/http_server.py: `GET /get_model_info` (`model_path`, `tokenizer_path`, `is_generation`),
  `GET /get_server_info` (the server args, `context_length` among them, and `version`), `GET /health`,
  `GET /v1/models` (ModelCard with `owned_by: "sglang"`, `root`, `max_model_len`), `POST /v1/tokenize` and its
  alias `/tokenize`; no `/version` route. A RequestValidationError is answered 400, not FastAPI's 422.
- entrypoints/openai/protocol.py: ErrorResponse is flat, `{"object": "error", "message", "type", "param",
  "code"}`; CompletionRequest reads `json_schema` as a *string* (`Optional[str]`: an object fails validation),
  `top_k` (-1 = off), `min_p`, `repetition_penalty`, `stop` (a string or a list, no count limit), `seed`;
  ChatCompletionRequest reads `response_format` (OpenAI's json_schema form; `json_schema.name` required).
- entrypoints/openai/serving_tokenize.py: TokenizeRequest {model, prompt, add_special_tokens} ->
  {tokens, count, max_model_len}.
- sampling/sampling_params.py `verify`: temperature >= 0, top_p in (0, 1], top_k -1 or >= 1, min_p in [0, 1],
  repetition_penalty in (0, 2].
- managers/tokenizer_manager.py `_validate_one_request`: input >= context_len is refused ("The input (N tokens)
  is longer than the model's context length (M tokens)."), and so is input + max_new_tokens >= context_len.
- streams (serving_completions.py, serving_chat.py): `data: {chunk}`, an error as `data: {"error": {...}}`, then
  `data: [DONE]`.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.tgi_standin import tokenize
from tests.vllm_standin import OpenAIServerConfig, VllmStandin, main


class SglangStandin(VllmStandin):
    """SGLang: the same streaming, its own routes, validation and error bodies."""

    server_name = "SGLang"

    def __init__(self, config: OpenAIServerConfig | None = None) -> None:
        super().__init__(config or OpenAIServerConfig(version="0.5.6"))

    def reset(self, **changes: Any) -> None:
        super().reset(**{"version": "0.5.6", **changes})

    def routes(self) -> list[Route]:
        return [
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/tokenize", self.tokenize, methods=["POST"]),
            Route("/tokenize", self.tokenize, methods=["POST"]),
            Route("/get_model_info", self.get_model_info, methods=["GET"]),
            Route("/get_server_info", self.get_server_info, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
        ]

    # ---- SGLang's shapes --------------------------------------------------------------------------------
    def error(
        self, message: str, param: str | None = None, status: int = 400, kind: str = "BadRequestError"
    ) -> Response:
        return JSONResponse(
            {"object": "error", "message": message, "type": kind, "param": param, "code": status}, status
        )

    def validation_error(self, loc: str, msg: str, value: Any) -> Response:
        return self.error(f"1 validation error for request\n{loc}\n  {msg} [input_value={value!r:.80}]")

    def unauthorized(self, request: Request) -> Response | None:
        """utils add_api_key_middleware: every route but /health needs the key when one is set."""
        key = self.config.api_key
        if not key or request.url.path == "/health":
            return None
        if request.headers.get("authorization", "") != f"Bearer {key}":
            return JSONResponse({"error": "Unauthorized"}, 401)
        return None

    def served(self, model: Any) -> bool:
        return True  # SGLang answers whatever `model` says (one model per server)

    async def models(self, request: Request) -> Response:
        await self._record(request)
        if (refused := self.unauthorized(request)) is not None:
            return refused
        card = {
            "id": self.config.model_id,
            "object": "model",
            "created": 0,
            "owned_by": "sglang",
            "root": self.config.model_id,
            "max_model_len": self.config.max_model_len,
        }
        return JSONResponse({"object": "list", "data": [card]})

    async def get_model_info(self, request: Request) -> Response:
        await self._record(request)
        if (refused := self.unauthorized(request)) is not None:
            return refused
        return JSONResponse(
            {"model_path": self.config.model_id, "tokenizer_path": self.config.model_id, "is_generation": True}
        )

    async def get_server_info(self, request: Request) -> Response:
        await self._record(request)
        if (refused := self.unauthorized(request)) is not None:
            return refused
        return JSONResponse(
            {
                "model_path": self.config.model_id,
                "context_length": self.config.max_model_len,
                "served_model_name": self.config.model_id,
                "max_total_num_tokens": 100_000,
                "version": self.config.version,
            }
        )

    async def tokenize(self, request: Request) -> Response:
        body = await self._record(request)
        if (refused := self.unauthorized(request)) is not None:
            return refused
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return self.validation_error("prompt", "Field required", body)
        ids = [tok[0] for tok in tokenize(body["prompt"])]
        if body.get("add_special_tokens", True):
            ids = [1, *ids]
        return JSONResponse({"tokens": ids, "count": len(ids), "max_model_len": self.config.max_model_len})

    def check_sampling(self, body: dict[str, Any]) -> Response | None:
        schema = body.get("json_schema")
        if schema is not None and not isinstance(schema, str):
            return self.validation_error("json_schema", "Input should be a valid string", schema)
        if isinstance(schema, str):
            try:
                json.loads(schema)
            except ValueError:
                return self.error(f"Invalid JSON schema: {schema[:80]}")
        form = body.get("response_format")
        if isinstance(form, dict) and form.get("type") == "json_schema":
            inner = form.get("json_schema")
            if not isinstance(inner, dict) or not isinstance(inner.get("name"), str):
                return self.validation_error("response_format.json_schema.name", "Field required", inner)
        stop = body.get("stop")
        if stop is not None and not isinstance(stop, str | list):
            return self.validation_error("stop", "Input should be a valid list", stop)
        temperature = body.get("temperature", 1.0)
        if temperature < 0.0:
            return self.error(f"temperature must be non-negative, got {temperature}.")
        top_p = body.get("top_p", 1.0)
        if not 0.0 < top_p <= 1.0:
            return self.error(f"top_p must be in (0, 1], got {top_p}.")
        top_k = body.get("top_k", -1)
        if not isinstance(top_k, int) or (top_k < 1 and top_k != -1):
            return self.error(f"top_k must be -1 (disable) or at least 1, got {top_k}.")
        min_p = body.get("min_p", 0.0)
        if not 0.0 <= min_p <= 1.0:
            return self.error(f"min_p must be in [0, 1], got {min_p}.")
        penalty = body.get("repetition_penalty", 1.0)
        if not 0.0 < penalty <= 2.0:
            return self.error(f"repetition_penalty must be in (0, 2] (1.0 = no penalty), got {penalty}.")
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and max_tokens <= 0:
            return self.validation_error("max_tokens", "Value error, max_tokens must be positive", max_tokens)
        return None

    def constrained(self, body: dict[str, Any], chat: bool) -> bool:
        if not chat:
            return isinstance(body.get("json_schema"), str)
        form = body.get("response_format")
        return isinstance(form, dict) and form.get("type") in ("json_schema", "json_object")

    def check_context(self, prompt_tokens: int, max_tokens: int) -> Response | None:
        """tokenizer_manager._validate_one_request: both checks use >=, so the last token of the context is never
        usable."""
        context = self.config.max_model_len
        if prompt_tokens >= context:
            return self.error(
                f"The input ({prompt_tokens} tokens) is longer than the model's context length ({context} tokens)."
            )
        if prompt_tokens + max_tokens >= context:
            return self.error(
                f"Requested token count exceeds the model's maximum context length of {context} tokens. You "
                f"requested a total of {prompt_tokens + max_tokens} tokens: {prompt_tokens} tokens from the input "
                f"messages and {max_tokens} tokens for the completion. Please reduce the number of tokens in the "
                "input messages or the completion to fit within the limit."
            )
        return None


if __name__ == "__main__":
    main(SglangStandin, 30000)
