"""The `/structured` API endpoint: JSON extracted from a text, following a JSON schema, and checked."""

from __future__ import annotations

import asyncio
from typing import Any

import gradio as gr

from components.api.common import answer_stream, checking, with_settings
from components.core.service import Playground
from components.features.structured import check_answer, check_compiles, prepare_structured
from components.serving.limits import check_rate, holds_visitor_slot


def register(playground: Playground) -> None:
    """Adds `/structured` to the Blocks being built."""
    default_model = playground.catalog.default.id

    @with_settings()
    async def structured(
        text: str,
        schema: dict[str, Any] | str,
        model: str = default_model,
        system_prompt: str | None = None,
        lang: str = "de",
        request: gr.Request | None = None,
        **settings: Any,
    ) -> tuple[str, Any, dict[str, Any]]:
        """Extracts JSON from `text` following `schema` (a JSON schema, Draft 2020-12, as an object or a string).

        The engine constrains decoding to the schema where it can (llama.cpp grammar, TGI grammar,
        response_format). Returns (raw answer, parsed JSON or null, info); info has `valid`, `errors`
        (`$.path: message` lines), `error_code`, `model`, `prompt`, `schema`, `stats` and, when generation
        failed, `error`. An invalid schema is refused with a message before anything is generated.
        """
        with checking(lang, "structured") as language:
            check_rate(request)
            # schema checks off the event loop, then the compile in the grammar worker
            # (components/features/structured.py)
            prepared, checked = await asyncio.to_thread(
                lambda: prepare_structured(
                    playground,
                    model,
                    text,
                    schema,
                    system_prompt,
                    language,
                    **settings,
                )
            )
            await check_compiles(prepared)
        answer = ""
        info: dict[str, Any] = {"model": prepared.request.model.id, "prompt": prepared.raw_prompt, "schema": checked}
        # not streamed: only the whole answer can be checked against the schema
        async for so_far in answer_stream(playground, prepared, info, language):
            answer = so_far
        # off the event loop: the check is bounded (components/core/linear_schema.py) but may take a while
        check = await asyncio.to_thread(check_answer, answer, checked, language)
        info.update(check.as_info())
        return answer, (check.value if check.parsed else None), info

    # not a generator, yet it runs an answer: the per-visitor cap holds it too (components/serving/launch.py)
    gr.api(holds_visitor_slot(structured), api_name="structured", concurrency_limit=None)
