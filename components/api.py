"""Named API endpoints for gradio_client (`/chat`, `/models`), with parameters named for what they are."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from components.core.messages import normalize_language, t
from components.core.service import Playground, Prepared
from components.core.streaming import batched
from components.core.validation import InputError, parse_history
from components.engines.base import Failed, Finished, PromptSent, TextDelta
from components.serving.limits import check_rate

log = logging.getLogger("playground.api")


async def answer_stream(
    playground: Playground, prepared: Prepared, info: dict[str, Any], language: str
) -> AsyncIterator[str]:
    """The answer so far, once per batch of events, for the streaming API endpoints; puts `stats` and, on
    failure, `error` (in `language`) and `error_code` into `info` as they arrive. Where a server built the
    prompt (chat mode), `prompt` becomes the server's rendering, or `prompt_note` says it cannot be shown."""
    text = ""
    async for batch in batched(playground.stream(prepared)):
        for event in batch:
            if isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, PromptSent):
                if event.prompt is not None:
                    info["prompt"] = event.prompt
                if event.note:
                    info["prompt_note"] = t(event.note, language, **event.params)
            elif isinstance(event, Finished):
                info["stats"] = event.stats.as_dict()
            elif isinstance(event, Failed):
                info["error"] = t(event.key, language, **event.params)
                info["error_code"] = event.key
                if event.stats:
                    info["stats"] = event.stats.as_dict()
        yield text


def api_language(value: Any) -> str:
    """The `lang` parameter: "de"/"en" (anything else that is text: German); not text at all is refused."""
    if value is not None and not isinstance(value, str):
        raise InputError("err_wrong_type", name="lang", kind=type(value).__name__, expected='"de" or "en"')
    return normalize_language(value)


def refused(exc: InputError, language: str, endpoint: str) -> gr.Error:
    """The gr.Error for refused input: its message in `language` to the client, one JSON line to the log, and no
    traceback (Gradio prints one for every gr.Error unless told not to)."""
    log.info("request refused", extra={"endpoint": endpoint, "reason": exc.key})
    return gr.Error(t(exc.key, language, **exc.params), print_exception=False)


def failed(exc: BaseException, language: str, endpoint: str) -> gr.Error:
    """The gr.Error for an unexpected failure while checking a request: a message, never `{"error": null}`; the
    log gets one JSON line (the traceback inside it, redacted)."""
    log.error(
        "request failed", extra={"endpoint": endpoint, "error": type(exc).__name__}, exc_info=(type(exc), exc, None)
    )
    return gr.Error(t("err_request_failed", language, detail=type(exc).__name__), print_exception=False)


def register_api(playground: Playground) -> None:
    """Adds the API endpoints to the Blocks being built."""
    default_model = playground.catalog.default.id

    async def chat(
        message: str,
        model: str = default_model,
        system_prompt: str | None = None,
        history: list[list[str]] | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        max_new_tokens: int | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
        stop: list[str] | None = None,
        lang: str = "de",
        request: gr.Request | None = None,
    ) -> tuple[str, dict[str, Any]]:  # an async generator: streams (answer so far, info)
        """Streams an answer. Returns (answer, info); info has `stats`, `model`, `prompt` and, on failure, `error`.

        `model` is a `variant/quantization` id from `/models` (default: the offline model);
        `system_prompt` None means the family's default; `history` is a list of [question, answer]
        pairs; unset settings use the family's recommended values; out-of-range settings are refused.
        """
        language = normalize_language(lang if isinstance(lang, str) else None)
        try:
            language = api_language(lang)
            check_rate(request)
            # checks and prompt building off the event loop: they are bounded, but not free
            prepared = await asyncio.to_thread(
                lambda: playground.prepare(
                    model,
                    message,
                    system_prompt=system_prompt,
                    history=parse_history(history),
                    lang=language,
                    temperature=temperature,
                    top_p=top_p,
                    top_k=top_k,
                    max_new_tokens=max_new_tokens,
                    repetition_penalty=repetition_penalty,
                    seed=seed,
                    stop=stop,
                )
            )
        except InputError as exc:
            raise refused(exc, language, "chat") from None
        except Exception as exc:
            raise failed(exc, language, "chat") from None
        info: dict[str, Any] = {"model": prepared.request.model.id, "prompt": prepared.raw_prompt}
        async for text in answer_stream(playground, prepared, info, language):
            yield text, info

    gr.api(chat, api_name="chat", concurrency_limit=None)

    def models(lang: str = "de") -> list[dict[str, Any]]:
        """Every model id with its family, label, engine, context length and whether it runs here."""
        try:
            language = api_language(lang)
        except InputError as exc:
            raise refused(exc, "de", "models") from None
        out = []
        for ref in playground.catalog.refs():
            why = playground.why_not(ref, language)
            out.append(
                {
                    "id": ref.id,
                    "family": ref.family.id,
                    "label": ref.label,
                    "engine": ref.engine_kind,
                    "context_length": ref.variant.context_length,
                    "available": why is None,
                    "why_not": why,
                }
            )
        return out

    gr.api(models, api_name="models", queue=False)
