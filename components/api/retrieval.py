"""The `/retrieve` API endpoint: an answer grounded in sources, in the EM German card's retrieval format."""

from __future__ import annotations

import asyncio
from typing import Any

import gradio as gr

from components.api.common import answer_stream, checking, with_settings
from components.core.service import Playground
from components.features.retrieval import check_fit, parse_sources, prepare_retrieval
from components.serving.limits import check_rate


def register(playground: Playground) -> None:
    """Adds `/retrieve` (streaming) to the Blocks being built."""
    default_model = playground.catalog.default.id

    @with_settings()
    async def retrieve(
        question: str,
        sources: list[dict[str, Any]],
        model: str = default_model,
        system_prompt: str | None = None,
        lang: str = "de",
        request: gr.Request | None = None,
        **settings: Any,
    ) -> tuple[str, dict[str, Any]]:  # an async generator: streams (answer so far, info)
        """Streams an answer grounded in `sources`, in the EM German card's retrieval format.

        `sources` is a list of {"text": "...", "metadata": {"Url": "...", "Autor": "...", ...}} (1 to 20);
        `system_prompt` None means the card's retrieval system prompt. Returns (answer, info); info has
        `model`, `prompt` (the exact raw prompt), `fit` (prompt tokens, context, method: tokenizer|estimate),
        `stats` and, on failure, `error` / `error_code`. Sources that do not fit the context are refused
        before anything is generated, with the token counts in the message.
        """
        with checking(lang, "retrieve") as language:
            check_rate(request)

            def prepare() -> tuple[Any, Any]:
                checked = parse_sources(sources)
                return checked, prepare_retrieval(
                    playground,
                    model,
                    question,
                    checked,
                    system_prompt=system_prompt,
                    lang=language,
                    **settings,
                )

            # checks and prompt building off the event loop (up to 400 000 characters of sources)
            checked, prepared = await asyncio.to_thread(prepare)
            fit = await check_fit(playground, prepared, checked)
        info: dict[str, Any] = {"model": prepared.request.model.id, "prompt": prepared.raw_prompt, "fit": fit.as_dict()}
        async for text in answer_stream(playground, prepared, info, language):
            yield text, info

    gr.api(retrieve, api_name="retrieve", concurrency_limit=None)
