"""The sources (RAG) tab: sources with metadata, a question, an answer grounded in them."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.core.service import Playground
from components.core.streaming import batched
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
from components.serving.limits import check_rate
from components.ui.common import (
    CancelFlags,
    Pickers,
    SettingsControls,
    Translations,
    apply_events,
    build_pickers,
    credential_of,
    inform,
    live_update,
    picked_id,
    raw_prompt_box,
    run_with_stop,
    session_of,
    settings_accordion,
    status_markdown,
    warn,
    wire_pickers,
)
from components.vocabulary.answer import Answer
from components.vocabulary.generation import InputError
from components.vocabulary.messages import Msg, t
from components.vocabulary.settings import settings_by_name

log = logging.getLogger(__name__)

RETRIEVAL_SLOT = "retrieval"


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


@dataclass
class RetrievalTab:
    pickers: Pickers
    sources: Any
    question: Any
    answer: Any
    status: Any
    raw_prompt: Any
    settings: SettingsControls


@dataclass
class _Controls:
    """The tab's controls, made by its layout and wired by its events."""

    sources: Any
    pickers: Pickers
    system: Any
    reset_system: Any
    answer: Any
    status: Any
    settings: SettingsControls
    sources_view: Any
    source_text: Any
    files: Any
    extra: Any
    question: Any
    ask: Any
    stop: Any
    raw_prompt: Any
    pick: Any
    remove: Any
    clear: Any
    url: Any
    author: Any
    add: Any
    example: Any


def _layout_side(playground: Playground, tr: Translations) -> tuple[Pickers, Any, Any, SettingsControls]:
    """The left column: pickers, the system prompt and its reset, settings."""
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
    return pickers, system, reset_system, settings_accordion(tr, "retrieval", playground.catalog.default)


def _layout_sources(tr: Translations) -> tuple[Any, ...]:
    """The list of sources with pick, remove and clear; the form that adds one (text, files, metadata, example)."""
    sources_view = gr.HTML(sources_html([], "de"), elem_id="retrieval-sources")
    # buttons that look like buttons (inside a gr.Group they were drawn flat, as text), usable once there are sources
    with gr.Row(equal_height=True, elem_id="retrieval-source-row"):
        pick = tr.add(
            gr.Dropdown(choices=[], value=None, label=t("source_pick"), elem_id="retrieval-pick", scale=3),
            "source_pick",
        )
        remove = tr.add(
            gr.Button(t("source_remove"), variant="secondary", interactive=False, elem_id="retrieval-remove", scale=1),
            "source_remove",
            "value",
        )
        clear = tr.add(
            gr.Button(t("sources_clear"), variant="secondary", interactive=False, elem_id="retrieval-clear", scale=1),
            "sources_clear",
            "value",
        )
    with gr.Accordion(t("source_add"), open=True, elem_id="retrieval-add-box") as add_acc:
        source_text = tr.add(
            gr.Textbox(lines=5, max_lines=20, label=t("source_text"), elem_id="retrieval-source-text"), "source_text"
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
                lines=2, label=t("source_extra"), placeholder=t("source_extra_placeholder"), elem_id="retrieval-extra"
            ),
            "source_extra",
        )
        with gr.Row():
            add = tr.add(
                gr.Button(t("source_add"), variant="secondary", elem_id="retrieval-add"), "source_add", "value"
            )
            example = tr.add(
                gr.Button(t("retrieval_example"), size="sm", elem_id="retrieval-example"), "retrieval_example", "value"
            )
    tr.add(add_acc, "source_add")
    return sources_view, pick, remove, clear, source_text, files, url, author, extra, add, example


def _layout_answer(tr: Translations) -> tuple[Any, ...]:
    """The question with Ask and Stop; the answer, its status line and the raw prompt."""
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
            gr.Button(t("retrieval_ask"), variant="primary", scale=1, elem_id="retrieval-ask"), "retrieval_ask", "value"
        )
        stop = tr.add(
            gr.Button(t("stop"), variant="stop", scale=1, interactive=False, elem_id="retrieval-stop-button"),
            "stop",
            "value",
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
    raw_prompt = raw_prompt_box(tr, "retrieval", lines=10, max_lines=40)
    return question, ask, stop, answer, status, raw_prompt


def _layout(playground: Playground, tr: Translations) -> _Controls:
    """Pickers and settings, the sources box, the question, the answer and its raw prompt."""
    tr.add(gr.Markdown(t("retrieval_intro"), elem_id="retrieval-intro"), "retrieval_intro", "value")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            pickers, system, reset_system, settings = _layout_side(playground, tr)
        with gr.Column(scale=3):
            sources_view, pick, remove, clear, source_text, files, url, author, extra, add, example = _layout_sources(
                tr
            )
            question, ask, stop, answer, status, raw_prompt = _layout_answer(tr)
    sources = gr.State([])

    return _Controls(
        sources,
        pickers,
        system,
        reset_system,
        answer,
        status,
        settings,
        sources_view,
        source_text,
        files,
        extra,
        question,
        ask,
        stop,
        raw_prompt,
        pick,
        remove,
        clear,
        url,
        author,
        add,
        example,
    )


# ---- the sources' handlers (the list lives in the page's state) ------------------------------------------
def add_sources(
    text: str | None,
    paths: list[str] | None,
    url_text: str | None,
    author_text: str | None,
    extra_text: str | None,
    items: list[dict[str, Any]],
    lang: str,
) -> list[Any]:
    """The typed text and the uploaded files as sources with the form's metadata, checked; the form empties."""
    items = list(items or [])
    try:
        new: list[Source] = []
        # a refused candidate is named as what it is ("in the text box", its file name), not by the number it
        # would have had: "Quelle 2 enthält ENDINPUT" named a source the list did not show
        in_box = Msg("source_new_text")
        if text and text.strip():
            new.append(check_source(text, form_metadata(url_text, author_text, extra_text), in_box))
        for path in paths or []:
            name, body = read_upload(path)
            meta = form_metadata(url_text, author_text, extra_text, file_name=name)
            new.append(check_source(body, meta, Msg("source_new_file", name=name)))
        if not new:
            raise InputError("err_source_empty", index=in_box)
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


def remove_source(index: Any, items: list[dict[str, Any]], lang: str) -> list[Any]:
    items = list(items or [])
    if isinstance(index, int) and 1 <= index <= len(items):
        del items[index - 1]
    return [items, sources_html(items, lang), gr.update(choices=source_choices(items), value=None)]


def clear_sources(lang: str) -> list[Any]:
    # the old answer and its status line go with the sources they were about
    return [[], sources_html([], lang), gr.update(choices=[], value=None), "", ""]


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


def _events_sources(c: _Controls, playground: Playground, lang_state: Any) -> None:
    """Sources added (typed or uploaded), removed, cleared, the example; pickers; the raw-prompt preview."""
    sources, pickers, system, reset_system, answer = c.sources, c.pickers, c.system, c.reset_system, c.answer
    status, settings, sources_view, source_text, files = c.status, c.settings, c.sources_view, c.source_text, c.files
    extra, question, raw_prompt, pick, remove = c.extra, c.question, c.raw_prompt, c.pick, c.remove
    clear, url, author, add, example = c.clear, c.url, c.author, c.add, c.example
    wire_pickers(playground, pickers, settings, lang_state)
    reset_system.click(lambda: RAG_SYSTEM_PROMPT, None, [system], queue=False, api_visibility="private")

    form = [source_text, files, url, author, extra]
    add.click(add_sources, [*form, sources, lang_state], [sources, sources_view, pick, *form], api_visibility="private")
    remove.click(
        remove_source, [pick, sources, lang_state], [sources, sources_view, pick], queue=False, api_visibility="private"
    )
    # a file is a source as soon as it is uploaded (with the metadata typed so far)
    files.upload(
        add_sources, [*form, sources, lang_state], [sources, sources_view, pick, *form], api_visibility="private"
    )
    clear.click(
        clear_sources,
        [lang_state],
        [sources, sources_view, pick, answer, status],
        queue=False,
        api_visibility="private",
    )
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
    # Remove and Clear only where there is something to remove
    sources.change(
        lambda items: [gr.update(interactive=bool(items))] * 2,
        [sources],
        [remove, clear],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
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
        return preview_prompt(playground, picked_id(variant_id, quant_id), chosen, text, sys_prompt, lang)

    live_update(
        [question.change, system.change, pickers.quant.change, sources.change],
        preview,
        [pickers.variant, pickers.quant, sources, question, system, lang_state],
        [raw_prompt],
        api_visibility="private",
    )


def _events_generation(c: _Controls, playground: Playground, flags: CancelFlags, lang_state: Any) -> None:
    """Ask or Enter: a grounded answer after the context-fit check, streamed; Stop ends it."""
    sources, pickers, system, answer, status = c.sources, c.pickers, c.system, c.answer, c.status
    settings, question, ask, stop, raw_prompt = c.settings, c.question, c.ask, c.stop, c.raw_prompt

    async def respond(
        request: gr.Request,
        oauth_token: gr.OAuthToken | None,
        text: str,
        items: list[dict[str, Any]],
        variant_id: str,
        quant_id: str,
        sys_prompt: str,
        lang: str,
        *sampling: Any,
    ) -> AsyncIterator[list[Any]]:
        args = settings_by_name(sampling)
        chosen = sources_from_state(items or [])
        try:
            check_rate(request)
            prepared = await asyncio.to_thread(
                lambda: prepare_retrieval(
                    playground,
                    picked_id(variant_id, quant_id),
                    text,
                    chosen,
                    system_prompt=sys_prompt,
                    lang=lang,
                    # a signed-in visitor's token: an opaque credential for the service, never shown or kept
                    credential=credential_of(oauth_token),
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
        reply = Answer()
        yield ["", status_markdown(parts), prepared.raw_prompt]
        try:
            try:
                fit = await check_fit(playground, prepared, chosen)
            except InputError as exc:
                message = t(exc.key, lang, **exc.params)
                warn(message, lang)
                yield ["", f"**✗** {message}", gr.update()]
                return
            parts = {"fit": f"<sub>{fit.describe(lang)}</sub>"}
            yield [gr.update(), status_markdown(parts), gr.update()]
            async for batch in batched(playground.stream(prepared)):
                prompt_update = apply_events(reply, batch, parts, prepared.raw_prompt, lang)
                yield [reply.text, status_markdown(parts), prompt_update]
        finally:
            flags.finish(session, RETRIEVAL_SLOT, flag)
        parts.pop("status", None)
        yield [reply.text, status_markdown(parts), gr.update()]

    inputs = [question, sources, pickers.variant, pickers.quant, system, lang_state, *settings.inputs]
    outputs = [answer, status, raw_prompt]
    run_with_stop([question.submit, ask.click], respond, inputs, outputs, stop)

    def stop_now(request: gr.Request) -> None:
        flags.stop(session_of(request), RETRIEVAL_SLOT)

    stop.click(stop_now, None, None, queue=False, api_visibility="private")


def build_retrieval_tab(playground: Playground, tr: Translations, flags: CancelFlags, lang_state: Any) -> RetrievalTab:
    c = _layout(playground, tr)
    _events_sources(c, playground, lang_state)
    _events_generation(c, playground, flags, lang_state)
    return RetrievalTab(c.pickers, c.sources, c.question, c.answer, c.status, c.raw_prompt, c.settings)
