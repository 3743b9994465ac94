"""The `/chat` and `/models` API endpoints, with parameters named for what they are."""

from __future__ import annotations

import asyncio
from typing import Any

import gradio as gr

from components.api.common import answer_stream, api_language, checking, refused, with_settings
from components.core import availability
from components.core.service import Playground
from components.core.validation import parse_history
from components.serving.endpoints import fleet_rows, waiting_texts
from components.serving.limits import check_rate
from components.vocabulary.generation import InputError
from components.vocabulary.messages import t


def register(playground: Playground) -> None:
    """Adds `/chat` and `/models` to the Blocks being built."""
    default_model = playground.catalog.default.id

    @with_settings()
    async def chat(
        message: str,
        model: str = default_model,
        system_prompt: str | None = None,
        history: list[list[str]] | None = None,
        lang: str = "de",
        request: gr.Request | None = None,
        **settings: Any,
    ) -> tuple[str, dict[str, Any]]:  # an async generator: streams (answer so far, info)
        """Streams an answer. Returns (answer, info); info has `stats`, `model`, `prompt` and, on failure, `error`.

        `model` is a `variant/quantization` id from `/models` (default: the offline model);
        `system_prompt` None means the family's default; `history` is a list of [question, answer]
        pairs; unset settings use the family's recommended values; out-of-range settings are refused.
        With `top_tokens` 1-5, info gets `token_probs` (one {token, prob, top} per generated token) once the
        answer is done, or `token_probs_note` where the engine gave none.
        """
        with checking(lang, "chat") as language:
            check_rate(request)
            # checks and prompt building off the event loop: they are bounded, but not free
            prepared = await asyncio.to_thread(
                lambda: playground.prepare(
                    model,
                    message,
                    system_prompt=system_prompt,
                    history=parse_history(history),
                    lang=language,
                    **settings,
                )
            )
        info: dict[str, Any] = {"model": prepared.request.model.id, "prompt": prepared.raw_prompt}
        async for text in answer_stream(playground, prepared, info, language):
            yield text, info

    gr.api(chat, api_name="chat", concurrency_limit=None)

    def models(lang: str = "de") -> list[dict[str, Any]]:
        """Every model id with its family, label, engine, context length and whether it runs here.

        `state` is `ready` (runs now), `download` (runs after a download of `download_gb` GB; `hub` says
        whether the Hub is `reachable`, `unreachable` or switched off with HF_HUB_OFFLINE, `offline`) or
        `unavailable` (`why_not` says why). `available` is true only for `ready`; `why_not` is set whenever
        a request would be refused now. `server` (remote builds only) is `answers` or `silent`: whether the
        build's server gave an HTTP answer at the last look (at most 15 s old); a silent server is still sent
        to, and `server_note` says so. A remote build also has `served_model` (what its server reports) and
        `replicas` (each server's `name`, `state` up/down and `open_streams`). A server that has not said yet
        which model it serves is a row with `state` `waiting`, `id` null, its name in `label` and the
        "waiting for …" text in `why_not`; its build appears once it answers.
        """
        try:
            language = api_language(lang)
        except InputError as exc:
            raise refused(exc, "de", "models") from None
        out = []
        fleet = {row["id"]: row for row in fleet_rows(playground.catalog)}
        for ref in playground.catalog.refs():
            avail = playground.availability(ref)
            served = fleet.get(ref.id)
            out.append(
                {
                    "id": ref.id,
                    "family": ref.family.id,
                    "label": ref.label,
                    "engine": ref.engine_kind,
                    "context_length": ref.variant.context_length,
                    "state": avail.state,
                    "available": avail.ok and avail.state == availability.READY,
                    "download_gb": None if avail.download_gb is None else round(avail.download_gb, 2),
                    "hub": avail.hub,
                    "why_not": None if avail.ok else t(avail.key, language, **avail.params),
                    "server": avail.server,
                    "server_note": t(avail.key, language, **avail.params)
                    if avail.server == availability.SERVER_SILENT
                    else None,
                    **(
                        {"served_model": served["served_model"], "replicas": served["replicas"]}
                        if served is not None
                        else {}
                    ),
                }
            )
        for name, text in waiting_texts(playground.catalog, language):
            out.append({"id": None, "label": name, "state": "waiting", "available": False, "why_not": text})
        return out

    gr.api(models, api_name="models", queue=False)
