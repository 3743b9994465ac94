"""A stand-in for the Hugging Face Inference Providers router, speaking its documented OpenAI form (the real one,
https://router.huggingface.co/v1, cannot be reached from here).

From the router's documentation (huggingface.co/docs/inference-providers: index, "Provider selection", the chat
completion task page; hub-docs docs/inference-providers/):
- `POST /v1/chat/completions` in OpenAI's form, `Authorization: Bearer <Hugging Face token>` on every request
  (401 without a valid one); `model` is `<repo>`, `<repo>:<provider>` or `<repo>:fastest|cheapest|preferred`; an
  unknown model or provider is a 400 naming it.
- the documented chat-completion parameters (frequency_penalty, logprobs, max_tokens, messages, model,
  presence_penalty, response_format, seed, stop, stream, stream_options, temperature, tool_choice, tool_prompt,
  tools, top_logprobs, top_p); the stand-in refuses any other field with a 400, which holds the engine to them.
- the answer names the provider that served it in the `x-inference-provider` header; a 402 when the account's
  credits are used up.
Tokens it accepts are set per test (`tokens`); every request's headers are recorded, so a test can show where a
token went.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.vllm_standin import OpenAIServerConfig, TaggedEventStream, VllmStandin

DOCUMENTED = {
    "frequency_penalty",
    "logprobs",
    "max_tokens",
    "messages",
    "model",
    "presence_penalty",
    "response_format",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tool_prompt",
    "tools",
    "top_logprobs",
    "top_p",
}
POLICIES = ("fastest", "cheapest", "preferred")


class RouterStandin(VllmStandin):
    """The router: chat completions only, every route behind a Bearer token."""

    server_name = "Inference Providers router"

    def __init__(self, config: OpenAIServerConfig | None = None) -> None:
        super().__init__(config)
        self.tokens: set[str] = {"hf_operator_token"}
        self.repos: dict[str, list[str]] = {
            "jphme/em_german_leo_mistral": ["featherless-ai", "novita"],
            "LeoLM/leo-hessianai-13b-chat": ["featherless-ai"],
        }
        self.out_of_credits = False

    def reset(self, **changes: Any) -> None:
        super().reset(**changes)
        self.tokens = {"hf_operator_token"}
        self.out_of_credits = False

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ]

    def unauthorized(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or header[7:] not in self.tokens:
            return JSONResponse({"error": "Invalid credentials in Authorization header"}, 401)
        if self.out_of_credits:
            return JSONResponse(
                {"error": "You have exceeded your monthly included credits for Inference Providers."}, 402
            )
        return None

    def served(self, model: Any) -> bool:
        if not isinstance(model, str):
            return False
        repo, _, provider = model.partition(":")
        return repo in self.repos and (not provider or provider in POLICIES or provider in self.repos[repo])

    def error(
        self, message: str, param: str | None = None, status: int = 400, kind: str = "BadRequestError"
    ) -> Response:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": status}}, status)

    async def generate(self, request: Request, chat: bool) -> Response:
        body = await self._record(request)
        if (refused := self.unauthorized(request)) is not None:
            return refused
        if isinstance(body, dict):
            extra = sorted(set(body) - DOCUMENTED)
            if extra:
                return self.error(f"Unsupported parameter(s): {', '.join(extra)}")
            if not self.served(body.get("model")):
                return self.error(
                    f"The requested model '{body.get('model')}' is not supported by any provider you have enabled."
                )
        response = await self.answer(body, chat)
        if isinstance(response, TaggedEventStream):
            repo, _, provider = str(body.get("model")).partition(":")
            chosen = provider if provider and provider not in POLICIES else self.repos[repo][0]
            response.extra_headers = ((b"x-inference-provider", chosen.encode()),)
        return response
