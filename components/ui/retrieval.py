"""The retrieval (RAG) and JSON-output tabs (their API endpoints live in components/api/)."""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.core.messages import t
from components.core.service import Playground, format_stats, prompt_shown
from components.core.streaming import batched
from components.core.validation import InputError
from components.engines.base import Failed, Finished, PromptSent, Status, TextDelta
from components.features.retrieval import (
    CARD_QUESTION,
    CARD_SOURCE_TEXT,
    CARD_SOURCE_URL,
    RAG_SYSTEM_PROMPT,
    SOURCE_LIMITS,
    UPLOAD_SUFFIXES,
    URL_KEY,
    Source,
    check_fit,
    check_source,
    check_total,
    form_metadata,
    prepare_retrieval,
    preview_prompt,
    read_upload,
    sources_from_state,
)
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
    build_pickers,
    first_runnable,
    guard_picker,
    inform,
    model_info,
    quant_choices,
    session_of,
    settings_kwargs,
    settings_panel,
    settings_values,
    variant_choices,
    warn,
)

log = logging.getLogger(__name__)

RETRIEVAL_SLOT = "retrieval"
STRUCTURED_SLOT = "structured"


def _model_id(variant_id: str, quant_id: str) -> str:
    return f"{variant_id}/{quant_id}"


# ---- model pickers shared by both tabs ----------------------------------------------------------------


def wire_pickers(
    playground: Playground,
    pickers: Pickers,
    settings: SettingsControls,
    lang_state: Any,
    extra_outputs: list[Any] | None = None,
    extra_values: Callable[[Any], list[Any]] | None = None,
) -> None:
    """Family → variants → builds, like the chat tab; a family change also loads its recommended settings."""
    catalog = playground.catalog
    extra_outputs = extra_outputs or []

    def on_family(family_id: str, lang: str) -> list[Any]:
        fam = catalog.family(family_id)
        v = fam.variants[0].id
        q = first_runnable(playground, v)
        ref = catalog.get(_model_id(v, q)) or catalog.default
        return [
            gr.update(choices=variant_choices(playground, family_id, lang), value=v),
            gr.update(choices=quant_choices(playground, v, lang), value=q),
            model_info(playground, ref, lang),
            *settings_values(fam),
            *(extra_values(fam) if extra_values else []),
        ]

    family_outputs = [pickers.variant, pickers.quant, pickers.info, *settings.inputs, *extra_outputs]
    pickers.family.input(
        guard_picker(on_family, family_outputs),
        [pickers.family, lang_state],
        family_outputs,
        queue=False,
        api_visibility="private",
    )

    def on_variant(variant_id: str, lang: str) -> list[Any]:
        q = first_runnable(playground, variant_id)
        ref = catalog.get(_model_id(variant_id, q)) or catalog.default
        return [
            gr.update(choices=quant_choices(playground, variant_id, lang), value=q),
            model_info(playground, ref, lang),
        ]

    pickers.variant.input(
        guard_picker(on_variant, [pickers.quant, pickers.info]),
        [pickers.variant, lang_state],
        [pickers.quant, pickers.info],
        queue=False,
        api_visibility="private",
    )

    def on_quant(variant_id: str, quant_id: str, lang: str) -> str:
        return model_info(playground, catalog.get(_model_id(variant_id, quant_id)) or catalog.default, lang)

    pickers.quant.input(
        on_quant, [pickers.variant, pickers.quant, lang_state], [pickers.info], queue=False, api_visibility="private"
    )

    def on_lang(family_id: str, variant_id: str, quant_id: str, lang: str) -> list[Any]:
        ref = catalog.get(_model_id(variant_id, quant_id)) or catalog.default
        return [
            gr.update(choices=variant_choices(playground, family_id, lang), value=variant_id),
            gr.update(choices=quant_choices(playground, variant_id, lang), value=quant_id),
            model_info(playground, ref, lang),
        ]

    lang_state.change(
        on_lang,
        [pickers.family, pickers.variant, pickers.quant, lang_state],
        [pickers.variant, pickers.quant, pickers.info],
        queue=False,
        api_visibility="private",
    )

    def reset_settings(family_id: str) -> list[Any]:
        return settings_values(catalog.family(family_id))

    settings.reset.click(
        guard_picker(reset_settings, settings.inputs),
        [pickers.family],
        settings.inputs,
        queue=False,
        api_visibility="private",
    )


# ---- retrieval tab ----------------------------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def _md(text: str) -> str:
    """Visitor text shown in Markdown, literally."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def sources_html(items: list[dict[str, Any]], lang: str) -> str:
    """The list of sources; visitor text is HTML-escaped (Markdown would turn URLs into links and eat escapes)."""
    if not items:
        return f"<p><em>{html.escape(t('sources_none', lang))}</em></p>"
    lines = []
    for i, item in enumerate(items, start=1):
        meta = " · ".join(f"{k}: {v}" for k, v in item.get("metadata", [])) or t("source_no_metadata", lang)
        text = " ".join(item["text"].split())
        preview = text[:160] + ("…" if len(text) > 160 else "")
        line = t("source_line", lang, index=i, meta=meta, chars=len(item["text"]), preview=preview)
        lines.append(f"<div>{html.escape(line)}</div>")
    return "".join(lines)


def source_choices(items: list[dict[str, Any]]) -> list[tuple[str, int]]:
    out = []
    for i, item in enumerate(items, start=1):
        meta = dict(item.get("metadata", []))
        label = meta.get(URL_KEY) or next(iter(meta.values()), None) or " ".join(item["text"].split())[:40]
        out.append((f"{i}: {label}", i))
    return out


def _state_item(source: Source) -> dict[str, Any]:
    return {"text": source.text, "metadata": [list(pair) for pair in source.metadata]}


def _status_markdown(parts: dict[str, str]) -> str:
    order = ("fit", "status", "error", "stats")
    return "\n\n".join(parts[k] for k in order if parts.get(k))


@dataclass
class RetrievalTab:
    pickers: Pickers
    sources: Any
    question: Any
    answer: Any
    status: Any
    raw_prompt: Any
    settings: SettingsControls


def build_retrieval_tab(playground: Playground, tr: Translations, flags: CancelFlags, lang_state: Any) -> RetrievalTab:
    default = playground.catalog.default
    tr.add(gr.Markdown(t("retrieval_intro"), elem_id="retrieval-intro"), "retrieval_intro", "value")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            pickers = build_pickers(playground, tr, "retrieval")
            system = tr.add(
                gr.Textbox(
                    value=RAG_SYSTEM_PROMPT, lines=5, max_lines=14, label=t("system_prompt"), elem_id="retrieval-system"
                ),
                "system_prompt",
            )
            reset_system = tr.add(
                gr.Button(t("reset_system"), size="sm", elem_id="retrieval-reset-system"), "reset_system", "value"
            )
            with gr.Accordion(t("settings"), open=False, elem_id="retrieval-settings") as acc:
                settings = settings_panel(default.family, tr, "retrieval")
            tr.add(acc, "settings")
        with gr.Column(scale=3):
            with gr.Group():
                sources_view = gr.HTML(sources_html([], "de"), elem_id="retrieval-sources")
                with gr.Row():
                    pick = tr.add(
                        gr.Dropdown(choices=[], value=None, label=t("source_pick"), elem_id="retrieval-pick", scale=3),
                        "source_pick",
                    )
                    remove = tr.add(
                        gr.Button(t("source_remove"), size="sm", elem_id="retrieval-remove", scale=1),
                        "source_remove",
                        "value",
                    )
                    clear = tr.add(
                        gr.Button(t("sources_clear"), size="sm", elem_id="retrieval-clear", scale=1),
                        "sources_clear",
                        "value",
                    )
            with gr.Accordion(t("source_add"), open=True, elem_id="retrieval-add-box") as add_acc:
                source_text = tr.add(
                    gr.Textbox(lines=5, max_lines=20, label=t("source_text"), elem_id="retrieval-source-text"),
                    "source_text",
                )
                files = tr.add(
                    gr.File(
                        file_count="multiple",
                        file_types=list(UPLOAD_SUFFIXES),
                        type="filepath",
                        label=t("source_files"),
                        elem_id="retrieval-files",
                        height=120,
                    ),
                    "source_files",
                )
                with gr.Row():
                    url = tr.add(gr.Textbox(label=t("source_url"), elem_id="retrieval-url"), "source_url")
                    author = tr.add(gr.Textbox(label=t("source_author"), elem_id="retrieval-author"), "source_author")
                extra = tr.add(
                    gr.Textbox(
                        lines=2,
                        label=t("source_extra"),
                        placeholder=t("source_extra_placeholder"),
                        elem_id="retrieval-extra",
                    ),
                    "source_extra",
                )
                with gr.Row():
                    add = tr.add(
                        gr.Button(t("source_add"), variant="secondary", elem_id="retrieval-add"), "source_add", "value"
                    )
                    example = tr.add(
                        gr.Button(t("retrieval_example"), size="sm", elem_id="retrieval-example"),
                        "retrieval_example",
                        "value",
                    )
            tr.add(add_acc, "source_add")
            with gr.Row():
                question = tr.add(
                    gr.Textbox(
                        label=t("retrieval_question"),
                        placeholder=t("retrieval_question_placeholder"),
                        lines=1,
                        max_lines=6,
                        scale=5,
                        elem_id="retrieval-question",
                    ),
                    "retrieval_question",
                )
                ask = tr.add(
                    gr.Button(t("retrieval_ask"), variant="primary", scale=1, elem_id="retrieval-ask"),
                    "retrieval_ask",
                    "value",
                )
                stop = tr.add(
                    gr.Button(t("stop"), variant="stop", scale=1, elem_id="retrieval-stop-button"), "stop", "value"
                )
            answer = tr.add(
                gr.Textbox(
                    label=t("retrieval_answer"),
                    lines=6,
                    max_lines=30,
                    interactive=False,
                    buttons=["copy"],
                    elem_id="retrieval-answer",
                ),
                "retrieval_answer",
            )
            status = gr.Markdown("", elem_id="retrieval-status")
            with gr.Accordion(t("raw_prompt"), open=False, elem_id="retrieval-raw-prompt-box") as raw_acc:
                raw_prompt = gr.Textbox(
                    value="",
                    lines=10,
                    max_lines=40,
                    interactive=False,
                    show_label=False,
                    buttons=["copy"],
                    elem_id="retrieval-raw-prompt",
                )
            tr.add(raw_acc, "raw_prompt")
    sources = gr.State([])

    wire_pickers(playground, pickers, settings, lang_state)
    reset_system.click(lambda: RAG_SYSTEM_PROMPT, None, [system], queue=False, api_visibility="private")

    # ---- sources -------------------------------------------------------------------------------------
    def add_sources(
        text: str | None,
        paths: list[str] | None,
        url_text: str | None,
        author_text: str | None,
        extra_text: str | None,
        items: list[dict[str, Any]],
        lang: str,
    ) -> list[Any]:
        items = list(items or [])
        try:
            new: list[Source] = []
            if text and text.strip():
                new.append(check_source(text, form_metadata(url_text, author_text, extra_text), len(items) + 1))
            for path in paths or []:
                name, body = read_upload(path)
                meta = form_metadata(url_text, author_text, extra_text, file_name=name)
                new.append(check_source(body, meta, len(items) + len(new) + 1))
            if not new:
                raise InputError("err_source_empty", index=len(items) + 1)
            if len(items) + len(new) > SOURCE_LIMITS.max_sources:
                raise InputError("err_too_many_sources", count=len(items) + len(new), limit=SOURCE_LIMITS.max_sources)
            check_total([*sources_from_state(items), *new])
        except InputError as exc:
            warn(t(exc.key, lang, **exc.params), lang)
            return [items, *[gr.update()] * 7]
        items += [_state_item(s) for s in new]
        inform(t("sources_added", lang, count=len(new)), lang)
        return [
            items,
            sources_html(items, lang),
            gr.update(choices=source_choices(items), value=len(items)),
            "",
            None,
            "",
            "",
            "",
        ]

    add.click(
        add_sources,
        [source_text, files, url, author, extra, sources, lang_state],
        [sources, sources_view, pick, source_text, files, url, author, extra],
        api_visibility="private",
    )

    def remove_source(index: Any, items: list[dict[str, Any]], lang: str) -> list[Any]:
        items = list(items or [])
        if isinstance(index, int) and 1 <= index <= len(items):
            del items[index - 1]
        return [items, sources_html(items, lang), gr.update(choices=source_choices(items), value=None)]

    remove.click(
        remove_source, [pick, sources, lang_state], [sources, sources_view, pick], queue=False, api_visibility="private"
    )

    # a file is a source as soon as it is uploaded (with the metadata typed so far)
    files.upload(
        add_sources,
        [source_text, files, url, author, extra, sources, lang_state],
        [sources, sources_view, pick, source_text, files, url, author, extra],
        api_visibility="private",
    )

    def clear_sources(lang: str) -> list[Any]:
        # the old answer and its status line go with the sources they were about
        return [[], sources_html([], lang), gr.update(choices=[], value=None), "", ""]

    clear.click(
        clear_sources,
        [lang_state],
        [sources, sources_view, pick, answer, status],
        queue=False,
        api_visibility="private",
    )

    def fill_example(items: list[dict[str, Any]], lang: str) -> list[Any]:
        """The card's example as a source of the list (not only in the form), and its question."""
        items = list(items or [])
        example_item = {"text": CARD_SOURCE_TEXT, "metadata": [[URL_KEY, CARD_SOURCE_URL]]}
        if example_item not in items and len(items) < SOURCE_LIMITS.max_sources:
            items.append(example_item)
        return [
            items,
            sources_html(items, lang),
            gr.update(choices=source_choices(items), value=len(items)),
            CARD_QUESTION,
        ]

    example.click(
        fill_example,
        [sources, lang_state],
        [sources, sources_view, pick, question],
        queue=False,
        api_visibility="private",
    )

    lang_state.change(
        lambda items, lang: sources_html(items, lang), [sources, lang_state], [sources_view], api_visibility="private"
    )
    # placeholders of boxes whose label already follows the language
    lang_state.change(
        lambda lang: [
            gr.update(placeholder=t("retrieval_question_placeholder", lang)),
            gr.update(placeholder=t("source_extra_placeholder", lang)),
        ],
        [lang_state],
        [question, extra],
        queue=False,
        api_visibility="private",
    )

    def preview(
        variant_id: str, quant_id: str, items: list[dict[str, Any]], text: str, sys_prompt: str, lang: str = "de"
    ) -> str:
        if not items:
            return ""
        chosen = sources_from_state(items)
        return preview_prompt(playground, _model_id(variant_id, quant_id), chosen, text, sys_prompt, lang)

    for trigger in (question.change, system.change, pickers.quant.change, sources.change):
        trigger(
            preview,
            [pickers.variant, pickers.quant, sources, question, system, lang_state],
            [raw_prompt],
            queue=False,
            show_progress="hidden",
            trigger_mode="always_last",
            api_visibility="private",
        )

    # ---- generation ------------------------------------------------------------------------------------
    async def respond(
        text: str,
        items: list[dict[str, Any]],
        variant_id: str,
        quant_id: str,
        sys_prompt: str,
        lang: str,
        temperature: Any,
        top_p: Any,
        top_k: Any,
        max_new: Any,
        rep: Any,
        seed: Any,
        stop_text: Any,
        request: gr.Request,
    ) -> AsyncIterator[list[Any]]:
        args = settings_kwargs(temperature, top_p, top_k, max_new, rep, seed, stop_text)
        chosen = sources_from_state(items or [])
        try:
            check_rate(request)
            prepared = await asyncio.to_thread(
                lambda: prepare_retrieval(
                    playground,
                    _model_id(variant_id, quant_id),
                    text,
                    chosen,
                    system_prompt=sys_prompt,
                    lang=lang,
                    **args,
                )
            )
        except InputError as exc:
            warn(t(exc.key, lang, **exc.params), lang)
            yield [gr.update(), gr.update(), gr.update()]
            return
        session = session_of(request)
        flag = flags.start(session, RETRIEVAL_SLOT)
        prepared.request.cancel = flag
        parts: dict[str, str] = {"status": f"*{t('status_counting_tokens', lang)}*"}
        answer_text = ""
        yield ["", _status_markdown(parts), prepared.raw_prompt]
        try:
            try:
                fit = await check_fit(playground, prepared, chosen)
            except InputError as exc:
                message = t(exc.key, lang, **exc.params)
                warn(message, lang)
                yield ["", f"**✗** {message}", gr.update()]
                return
            parts = {"fit": f"<sub>{fit.describe(lang)}</sub>"}
            yield [gr.update(), _status_markdown(parts), gr.update()]
            async for batch in batched(playground.stream(prepared)):
                prompt_update: Any = gr.update()
                for event in batch:
                    if isinstance(event, TextDelta):
                        answer_text += event.text
                        parts.pop("status", None)
                    elif isinstance(event, PromptSent):  # the server built the prompt (chat mode)
                        prompt_update = prompt_shown(event, prepared.raw_prompt, lang)
                    elif isinstance(event, Status):
                        parts["status"] = f"*{t(event.key, lang, **event.params)}*"
                    elif isinstance(event, Finished):
                        parts["stats"] = f"<sub>{format_stats(event.stats.as_dict(), lang)}</sub>"
                    elif isinstance(event, Failed):
                        parts["error"] = t("err_prefix", lang) + t(event.key, lang, **event.params)
                        if event.stats:
                            parts["stats"] = f"<sub>{format_stats(event.stats.as_dict(), lang)}</sub>"
                yield [answer_text, _status_markdown(parts), prompt_update]
        finally:
            flags.finish(session, RETRIEVAL_SLOT, flag)
        parts.pop("status", None)
        yield [answer_text, _status_markdown(parts), gr.update()]

    inputs = [question, sources, pickers.variant, pickers.quant, system, lang_state, *settings.inputs]
    outputs = [answer, status, raw_prompt]
    question.submit(respond, inputs, outputs, api_visibility="private", concurrency_limit=None)
    ask.click(respond, inputs, outputs, api_visibility="private", concurrency_limit=None)

    def stop_now(request: gr.Request) -> None:
        flags.stop(session_of(request), RETRIEVAL_SLOT)

    stop.click(stop_now, None, None, queue=False, api_visibility="private")
    return RetrievalTab(pickers, sources, question, answer, status, raw_prompt, settings)


# ---- structured-output tab --------------------------------------------------------------------------------
def verdict_markdown(check: AnswerCheck, lang: str) -> str:
    if check.valid:
        return t("json_valid", lang)
    if check.error_key == "json_not_json":
        return t("json_not_json", lang, detail=_md(check.errors[0] if check.errors else ""))
    lines = [t(check.error_key or "json_invalid", lang)]
    lines += [f"- `{e.replace('`', 'ʼ')}`" for e in check.errors]
    return "\n".join(lines)


def schema_status(text: str, lang: str) -> str:
    if not (text or "").strip():
        return ""
    try:
        parse_schema(text)
    except InputError as exc:
        return f"**✗** {_md(t(exc.key, lang, **exc.params))}"
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


def build_structured_tab(
    playground: Playground, tr: Translations, flags: CancelFlags, lang_state: Any
) -> StructuredTab:
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
            with gr.Accordion(t("settings"), open=False, elem_id="structured-settings") as acc:
                settings = settings_panel(default.family, tr, "structured")
            tr.add(acc, "settings")
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
                stop = tr.add(gr.Button(t("stop"), variant="stop", elem_id="structured-stop-button"), "stop", "value")
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
            with gr.Accordion(t("raw_prompt"), open=False, elem_id="structured-raw-prompt-box") as raw_acc:
                raw_prompt = gr.Textbox(
                    value="",
                    lines=8,
                    max_lines=30,
                    interactive=False,
                    show_label=False,
                    buttons=["copy"],
                    elem_id="structured-raw-prompt",
                )
            tr.add(raw_acc, "raw_prompt")

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
    for trigger in (schema.change, lang_state.change):
        trigger(
            schema_status,
            [schema, lang_state],
            [schema_note],
            queue=False,
            show_progress="hidden",
            trigger_mode="always_last",
            api_visibility="private",
        )

    async def respond(
        body: str,
        schema_text: str,
        variant_id: str,
        quant_id: str,
        sys_prompt: str,
        lang: str,
        temperature: Any,
        top_p: Any,
        top_k: Any,
        max_new: Any,
        rep: Any,
        seed: Any,
        stop_text: Any,
        request: gr.Request,
    ) -> AsyncIterator[list[Any]]:
        args = settings_kwargs(temperature, top_p, top_k, max_new, rep, seed, stop_text)
        try:
            check_rate(request)
            prepared, checked = await asyncio.to_thread(
                lambda: prepare_structured(
                    playground, _model_id(variant_id, quant_id), body, schema_text, sys_prompt, lang, **args
                )
            )
            await check_compiles(prepared)
        except InputError as exc:
            message = t(exc.key, lang, **exc.params)
            warn(message, lang)
            yield [gr.update(), gr.update(), f"**✗** {_md(message)}", gr.update()]
            return
        session = session_of(request)
        flag = flags.start(session, STRUCTURED_SLOT)
        prepared.request.cancel = flag
        answer_text = ""
        notes: dict[str, str] = {}
        yield ["", None, "", prepared.raw_prompt]
        try:
            async for batch in batched(playground.stream(prepared)):
                prompt_update: Any = gr.update()
                for event in batch:
                    if isinstance(event, TextDelta):
                        answer_text += event.text
                        notes.pop("status", None)
                    elif isinstance(event, PromptSent):  # the server built the prompt (chat mode)
                        prompt_update = prompt_shown(event, prepared.raw_prompt, lang)
                    elif isinstance(event, Status):
                        notes["status"] = f"*{t(event.key, lang, **event.params)}*"
                    elif isinstance(event, Finished):
                        notes["stats"] = f"<sub>{format_stats(event.stats.as_dict(), lang)}</sub>"
                    elif isinstance(event, Failed):
                        notes["error"] = t("err_prefix", lang) + t(event.key, lang, **event.params)
                        if event.stats:
                            notes["stats"] = f"<sub>{format_stats(event.stats.as_dict(), lang)}</sub>"
                yield [answer_text, gr.update(), _status_markdown(notes), prompt_update]
        finally:
            flags.finish(session, STRUCTURED_SLOT, flag)
        notes.pop("status", None)
        check = check_answer(answer_text, checked, lang)
        notes["verdict"] = verdict_markdown(check, lang)
        shown = "\n\n".join(notes[k] for k in ("verdict", "error", "stats") if notes.get(k))
        yield [answer_text, check.value if check.parsed else None, shown, gr.update()]

    inputs = [text, schema, pickers.variant, pickers.quant, system, lang_state, *settings.inputs]
    outputs = [raw, parsed, verdict, raw_prompt]
    run.click(respond, inputs, outputs, api_visibility="private", concurrency_limit=None)

    def stop_now(request: gr.Request) -> None:
        flags.stop(session_of(request), STRUCTURED_SLOT)

    stop.click(stop_now, None, None, queue=False, api_visibility="private")
    return StructuredTab(pickers, text, schema, raw, parsed, verdict, raw_prompt, settings)
