"""The JSON tab: a text, a JSON schema, an answer constrained to it and checked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.core.service import Playground
from components.core.streaming import batched
from components.features.structured import (
    EXAMPLE_TEXT,
    AnswerCheck,
    check_answer,
    check_compiles,
    example_schema_text,
    parse_schema,
    prepare_structured,
)
from components.serving.limits import check_rate
from components.ui.common import (
    CancelFlags,
    Pickers,
    SettingsControls,
    Translations,
    apply_events,
    build_pickers,
    credential_of,
    inert_html,
    live_update,
    md_literal,
    picked_id,
    raw_prompt_box,
    run_with_stop,
    session_of,
    settings_accordion,
    status_markdown,
    warn,
    wire_pickers,
)
from components.ui.token_view import CSS as TOKEN_CSS
from components.ui.token_view import probs_view
from components.vocabulary.answer import Answer
from components.vocabulary.generation import InputError
from components.vocabulary.messages import t
from components.vocabulary.settings import settings_by_name

log = logging.getLogger(__name__)

STRUCTURED_SLOT = "structured"


def verdict_markdown(check: AnswerCheck, lang: str) -> str:
    if check.valid:
        return t("json_valid", lang)
    if check.error_key == "json_not_json":
        return t("json_not_json", lang, detail=md_literal(check.errors[0] if check.errors else ""))
    lines = [t(check.error_key or "json_invalid", lang)]
    # each violation quotes the schema's property names and the answer: code, and never an element
    lines += [inert_html(f"- `{e.replace('`', 'ʼ')}`") for e in check.errors]
    return "\n".join(lines)


def schema_status(text: str, lang: str) -> str:
    if not (text or "").strip():
        return ""
    try:
        parse_schema(text)
    except InputError as exc:
        return f"**✗** {md_literal(t(exc.key, lang, **exc.params))}"
    return t("structured_schema_ok", lang)


@dataclass
class StructuredTab:
    pickers: Pickers
    text: Any
    schema: Any
    raw: Any
    parsed: Any
    verdict: Any
    raw_prompt: Any
    settings: SettingsControls


@dataclass
class _Controls:
    """The tab's controls, made by its layout and wired by its events."""

    pickers: Pickers
    system: Any
    text: Any
    schema: Any
    schema_note: Any
    verdict: Any
    settings: SettingsControls
    example: Any
    run: Any
    stop: Any
    raw: Any
    parsed: Any
    raw_prompt: Any
    probs: Any = None


def _layout(playground: Playground, tr: Translations) -> _Controls:
    """Pickers and settings, the text and its schema, the raw answer, the parsed JSON, the verdict."""
    default = playground.catalog.default
    tr.add(gr.Markdown(t("structured_intro"), elem_id="structured-intro"), "structured_intro", "value")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            pickers = build_pickers(playground, tr, "structured")
            system = tr.add(
                gr.Textbox(
                    value=default.family.system_prompt,
                    lines=3,
                    max_lines=10,
                    label=t("system_prompt"),
                    elem_id="structured-system",
                ),
                "system_prompt",
            )
            settings = settings_accordion(tr, "structured", default)
        with gr.Column(scale=3):
            text = tr.add(
                gr.Textbox(lines=4, max_lines=20, label=t("structured_text"), elem_id="structured-text"),
                "structured_text",
            )
            schema = tr.add(
                gr.Textbox(lines=10, max_lines=30, label=t("structured_schema"), elem_id="structured-schema"),
                "structured_schema",
            )
            schema_note = gr.Markdown("", elem_id="structured-schema-status")
            with gr.Row():
                example = tr.add(
                    gr.Button(t("structured_example"), size="sm", elem_id="structured-example"),
                    "structured_example",
                    "value",
                )
                run = tr.add(
                    gr.Button(t("structured_run"), variant="primary", elem_id="structured-run"),
                    "structured_run",
                    "value",
                )
                stop = tr.add(
                    gr.Button(t("stop"), variant="stop", interactive=False, elem_id="structured-stop-button"),
                    "stop",
                    "value",
                )
            with gr.Row():
                raw = tr.add(
                    gr.Textbox(
                        lines=8,
                        max_lines=30,
                        interactive=False,
                        label=t("structured_raw"),
                        buttons=["copy"],
                        elem_id="structured-raw",
                    ),
                    "structured_raw",
                )
                parsed = tr.add(gr.JSON(label=t("structured_parsed"), elem_id="structured-json"), "structured_parsed")
            verdict = gr.Markdown("", elem_id="structured-verdict")
            probs = gr.HTML("", elem_id="structured-probs", css_template=TOKEN_CSS, padding=False)
            raw_prompt = raw_prompt_box(tr, "structured", lines=8, max_lines=30)

    return _Controls(
        pickers,
        system,
        text,
        schema,
        schema_note,
        verdict,
        settings,
        example,
        run,
        stop,
        raw,
        parsed,
        raw_prompt,
        probs,
    )


def _events_inputs(c: _Controls, playground: Playground, lang_state: Any) -> None:
    """The inputs: pickers (a family brings its system prompt), the example, the schema's live check."""
    pickers, system, text, schema, schema_note = c.pickers, c.system, c.text, c.schema, c.schema_note
    settings, example = c.settings, c.example
    wire_pickers(
        playground,
        pickers,
        settings,
        lang_state,
        extra_outputs=[system],
        extra_values=lambda fam: [fam.system_prompt],
    )
    example.click(
        lambda: [EXAMPLE_TEXT, example_schema_text()], None, [text, schema], queue=False, api_visibility="private"
    )
    live_update(
        [schema.change, lang_state.change], schema_status, [schema, lang_state], [schema_note], api_visibility="private"
    )


def _events_generation(c: _Controls, playground: Playground, flags: CancelFlags, lang_state: Any) -> None:
    """Extract: the answer constrained to the schema, streamed, then checked against it; Stop ends it."""
    pickers, system, text, schema, verdict = c.pickers, c.system, c.text, c.schema, c.verdict
    settings, run, stop, raw, parsed = c.settings, c.run, c.stop, c.raw, c.parsed
    raw_prompt = c.raw_prompt

    async def respond(
        request: gr.Request,
        oauth_token: gr.OAuthToken | None,
        body: str,
        schema_text: str,
        variant_id: str,
        quant_id: str,
        sys_prompt: str,
        lang: str,
        *sampling: Any,
    ) -> AsyncIterator[list[Any]]:
        args = settings_by_name(sampling)
        try:
            check_rate(request)
            prepared, checked = await asyncio.to_thread(
                lambda: prepare_structured(
                    playground,
                    picked_id(variant_id, quant_id),
                    body,
                    schema_text,
                    sys_prompt,
                    lang,
                    credential=credential_of(oauth_token),  # the signed-in visitor's, opaque
                    **args,
                )
            )
            await check_compiles(prepared)
        except InputError as exc:
            message = t(exc.key, lang, **exc.params)
            warn(message, lang)
            yield [gr.update(), gr.update(), f"**✗** {md_literal(message)}", gr.update(), gr.update()]
            return
        session = session_of(request)
        flag = flags.start(session, STRUCTURED_SLOT)
        prepared.request.cancel = flag
        reply = Answer()
        notes: dict[str, str] = {}
        yield ["", None, "", prepared.raw_prompt, ""]
        try:
            async for batch in batched(playground.stream(prepared)):
                prompt_update = apply_events(reply, batch, notes, prepared.raw_prompt, lang)
                yield [reply.text, gr.update(), status_markdown(notes), prompt_update, gr.update()]
        finally:
            flags.finish(session, STRUCTURED_SLOT, flag)
        notes.pop("status", None)
        check = await asyncio.to_thread(check_answer, reply.text, checked, lang)  # bounded, but off the loop
        notes["verdict"] = verdict_markdown(check, lang)
        shown = "\n\n".join(notes[k] for k in ("verdict", "error", "stats") if notes.get(k))
        view = probs_view([(t("probs_heading", lang), reply.token_probs(), reply.probs_note_text(lang))], lang)
        yield [reply.text, check.value if check.parsed else None, shown, gr.update(), view]

    inputs = [text, schema, pickers.variant, pickers.quant, system, lang_state, *settings.inputs]
    outputs = [raw, parsed, verdict, raw_prompt, c.probs]
    run_with_stop([run.click], respond, inputs, outputs, stop)

    def stop_now(request: gr.Request) -> None:
        flags.stop(session_of(request), STRUCTURED_SLOT)

    stop.click(stop_now, None, None, queue=False, api_visibility="private")


def build_structured_tab(
    playground: Playground, tr: Translations, flags: CancelFlags, lang_state: Any
) -> StructuredTab:
    c = _layout(playground, tr)
    _events_inputs(c, playground, lang_state)
    _events_generation(c, playground, flags, lang_state)
    return StructuredTab(c.pickers, c.text, c.schema, c.raw, c.parsed, c.verdict, c.raw_prompt, c.settings)
