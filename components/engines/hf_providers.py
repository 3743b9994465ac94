"""Hugging Face Inference Providers: the router's OpenAI-compatible chat API, with the operator's or visitor's token.

What the router documents (huggingface.co/docs/inference-providers, hub-docs docs/inference-providers/index.md):
- `POST https://router.huggingface.co/v1/chat/completions` in OpenAI's form, `Authorization: Bearer <HF token>`;
  `model` is `<repo>` or `<repo>:<provider>` (e.g. `:featherless-ai`) or a selection policy (`:fastest`,
  `:cheapest`, `:preferred`). Only chat completions: the provider applies the model's chat template, so the family's
  raw prompt cannot be sent as it is (the page says so next to the raw prompt, `note_server_template`).
- The response names the provider that answered (`x-inference-provider` header); a 402 means the account's credits
  are used up.

Differences to the other OpenAI-compatible servers (OpenAICompatEngine): no probing of the server (its
`/v1/models` lists the whole catalog), no server-side token count (the estimate, which errs high, against the
variant's context), only OpenAI's documented sampling fields (`HF_ROUTER` in openai_sampling), and the token: a
signed-in visitor's own (GenerationRequest.credential, sent to the router's origin only, components/engines/
remote.py auth_hook), else the operator's `HF_PROVIDERS_TOKEN`, else the request is refused with a message that
says how to sign in. HF_TOKEN is never sent here: it is the token for downloads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from components.engines.openai_compat import HF_ROUTER, MAX_STOP_SEQUENCES, OpenAICompatEngine
from components.engines.remote import endpoint_name
from components.vocabulary.catalog import Endpoint
from components.vocabulary.generation import EngineDone, EngineError, GenerationRequest, PromptSent, Status, TextDelta

#: the router's public address (used when HF_PROVIDERS_URL is unset)
ROUTER_URL = "https://router.huggingface.co/v1"


class HfProvidersEngine(OpenAICompatEngine):
    """The Inference Providers router (an Endpoint of type `hf_providers`)."""

    name = "hf_providers"
    visitor_credentials = True

    def __init__(self, endpoint: Endpoint, first_token_timeout_s: float | None = None) -> None:
        super().__init__(endpoint, api_mode="chat", first_token_timeout_s=first_token_timeout_s)

    async def server_facts(self) -> dict[str, Any]:
        return {
            "kind": HF_ROUTER,
            "models": [],
            "context": None,
            "max_input": None,
            "max_stop": MAX_STOP_SEQUENCES,
            "version": None,
        }

    async def _count(self, text: str, model_name: str, kind: str) -> int | None:
        return None

    async def server_rendering(self, messages: list[dict[str, str]], model_name: str, kind: str) -> str | None:
        return None

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextDelta | Status | PromptSent | EngineDone]:
        if not request.credential and not self.endpoint.token():
            raise EngineError("err_providers_signin", endpoint=endpoint_name(self.endpoint))
        async for item in super().generate(request):
            yield item

    async def health(self) -> dict[str, Any]:
        """Nothing is asked of the router (it would need a token and bill nothing): its state is its configuration."""
        return {
            "ok": bool(self.endpoint.url()),
            "model_id": None,
            "models": [],
            "version": None,
            "max_total_tokens": None,
            "error": None,
            "error_params": {},
            "api_mode": "chat",
            "server": HF_ROUTER,
        }
