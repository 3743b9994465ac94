"""The chat tab: model pickers, system prompt, settings, streaming chat with Stop, Retry and Clear."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.core.saved_chat import pack, unpack
from components.core.service import Playground
from components.core.streaming import batched
from components.serving.limits import check_rate
from components.ui.common import (
    CancelFlags,
    Pickers,
    SettingsControls,
    Translations,
    build_pickers,
    credential_of,
    family_picked,
    family_settings,
    guard_picker,
    inert_html,
    live_update,
    max_new_tokens_for,
    max_new_update,
    model_info,
    offline_name,
    picked_id,
    picked_ref,
    pickers_relabelled,
    raw_prompt_box,
    sendable,
    session_of,
    settings_accordion,
    settings_values,
    variant_picked,
    warn,
    wire_settings_reset,
)
from components.ui.token_view import CSS as TOKEN_CSS
from components.ui.token_view import probs_view
from components.vocabulary.answer import Answer, stats_line
from components.vocabulary.generation import InputError
from components.vocabulary.messages import in_every_language, normalize_language, shown_in, t
from components.vocabulary.prompts import Turn
from components.vocabulary.settings import SETTING_NAMES, settings_by_name

log = logging.getLogger(__name__)

SLOT = "chat"
#: while an answer streams, the browser keeps the conversation at most this often (s): a reload (F5) then brings
#: back the question and the answer so far, marked interrupted, with the model, system prompt and settings
SAVE_EVERY_S = 1.0
#: the browser's localStorage key of the saved chat (a new shape gets a new key)
STORAGE_KEY = "playground-chat-v1"


def browser_secret() -> str | None:
    """The key Gradio encrypts the saved chat with: PLAYGROUND_BROWSER_KEY, else None (Gradio draws one per
    start, so a restarted server finds nothing it can read and the chat starts empty)."""
    return os.environ.get("PLAYGROUND_BROWSER_KEY") or None


def to_turns(conversation: list[dict[str, Any]]) -> list[Turn]:
    """The model's view of a conversation: every exchange that produced answer text."""
    return [Turn(c["user"], c["assistant"]) for c in conversation if c.get("assistant")]


def render(conversation: list[dict[str, Any]], lang: str) -> list[dict[str, str]]:
    """Chatbot messages: the answer, then its error or stats line in small print. What the visitor or a model
    wrote is Markdown without HTML elements (inert_html): a typed or generated form shows as text."""
    out: list[dict[str, str]] = []
    for c in conversation:
        out.append({"role": "user", "content": inert_html(c["user"])})
        text = inert_html(c.get("assistant", ""))
        status = c.get("status")
        if not text and status:
            text = f"*{inert_html(status)}*"
        notes = []
        error = shown_in(c.get("error_by_lang"), lang, c.get("error"))
        if error:
            notes.append(t("err_prefix", lang) + inert_html(error))
        stats = c.get("stats")
        # an answer that failed or was stopped before its first token has no figures worth a line ("– · 0 Tokens")
        if stats and (stats.get("completion_tokens") or not (c.get("error") or stats.get("ttft_s") is None)):
            notes.append(f"<sub>{stats_line(stats, lang, c)}</sub>")  # c's language, register: its warnings
        elif stats and stats.get("finish_reason") == "stopped" and not c.get("error"):
            notes.append(f"*{t('err_stopped_partial', lang)}*")
        if notes:
            text = (text + "\n\n" if text else "") + "\n\n".join(notes)
        out.append({"role": "assistant", "content": text or "…"})
    return out


def probs_html(conv: list[dict[str, Any]] | None, lang: str) -> str:
    """The probabilities view of every answer that has them (or the note why they are missing)."""
    answers = [
        (t("probs_answer", lang, n=i + 1), e.get("token_probs"), shown_in(e.get("probs_note_by_lang"), lang))
        for i, e in enumerate(conv or [])
    ]
    return probs_view(answers, lang)


@dataclass
class ChatTab:
    family: Any
    variant: Any
    quant: Any
    info: Any
    system: Any
    chatbot: Any
    message: Any
    conversation: Any
    settings: SettingsControls


@dataclass
class _Controls:
    """The tab's controls, made by its layout and wired by its events."""

    pickers: Pickers
    system: Any
    reset_system: Any
    settings: SettingsControls
    offline_note: Any
    chatbot: Any
    message: Any
    send: Any
    stop: Any
    retry: Any
    clear: Any
    examples: Any
    raw_prompt: Any
    conversation: Any
    #: the conversation, model and system prompt kept in the visitor's browser (gr.BrowserState)
    saved: Any
    #: the answers' tokens tinted by probability (when asked for: the top_tokens setting)
    probs: Any = None

    @property
    def outputs(self) -> list[Any]:
        """What an answer updates: the chat, its state, the message box, the raw prompt, Stop."""
        return [self.chatbot, self.conversation, self.message, self.raw_prompt, self.stop]


def _layout_side(playground: Playground, tr: Translations) -> tuple[Pickers, Any, Any, SettingsControls]:
    """The left column: pickers, system prompt and its reset, settings."""
    default = playground.catalog.default
    pickers = build_pickers(playground, tr, "chat")
    system = tr.add(
        gr.Textbox(
            value=default.family.system_prompt,
            lines=4,
            max_lines=12,
            label=t("system_prompt"),
            elem_id="chat-system",
        ),
        "system_prompt",
    )
    reset_system = tr.add(gr.Button(t("reset_system"), size="sm", elem_id="chat-reset-system"), "reset_system", "value")
    return pickers, system, reset_system, settings_accordion(tr, "chat", default)


def _layout(playground: Playground, tr: Translations) -> _Controls:
    """Pickers and settings on the left; the offline note, the chat, the message box, buttons, examples and the
    raw prompt on the right."""
    default = playground.catalog.default
    with gr.Row(elem_id="chat-row"):
        with gr.Column(scale=1, min_width=280):
            pickers, system, reset_system, settings = _layout_side(playground, tr)
        with gr.Column(scale=3):
            offline_note = tr.add(
                gr.Markdown(
                    t("offline_note", model=default.variant.name),
                    visible=default.variant.offline,
                    elem_id="chat-offline-note",
                ),
                "offline_note",
                "value",
                model=offline_name(playground),
            )
            chatbot = tr.add(
                gr.Chatbot(
                    label=t("chatbot"),
                    placeholder=t("chat_welcome"),
                    elem_id="chat-bot",
                    height=520,
                    buttons=["copy"],
                ),
                "chatbot",
            )
            with gr.Row(elem_id="chat-ask-row"):
                message = tr.add(
                    gr.Textbox(
                        label=t("message"),  # read by screen readers (Gradio names an unlabelled box "Textbox")
                        placeholder=t("message_placeholder"),
                        show_label=False,
                        lines=1,
                        max_lines=10,
                        scale=5,
                        elem_id="chat-input",
                    ),
                    "message_placeholder",
                    "placeholder",
                )
                tr.add(message, "message")
                send = tr.add(
                    gr.Button(
                        t("send"),
                        variant="primary",
                        scale=1,
                        interactive=sendable(playground, default),
                        elem_id="chat-send",
                    ),
                    "send",
                    "value",
                )
            with gr.Row(elem_id="chat-buttons-row"):
                stop = tr.add(
                    gr.Button(t("stop"), variant="stop", interactive=False, elem_id="chat-stop"), "stop", "value"
                )
                retry = tr.add(gr.Button(t("retry"), elem_id="chat-retry"), "retry", "value")
                clear = tr.add(gr.Button(t("clear"), elem_id="chat-clear"), "clear", "value")
            probs = gr.HTML("", elem_id="chat-probs", css_template=TOKEN_CSS, padding=False)
            examples = tr.add(
                gr.Dataset(
                    components=[message],
                    samples=[[e] for e in default.family.examples],
                    label=t("examples"),
                    elem_id="chat-examples",
                ),
                "examples",
            )
            raw_prompt = raw_prompt_box(tr, "chat", lines=8, max_lines=30, copy=False)
    conversation = gr.State([])
    saved = gr.BrowserState(None, storage_key=STORAGE_KEY, secret=browser_secret())
    return _Controls(
        pickers,
        system,
        reset_system,
        settings,
        offline_note,
        chatbot,
        message,
        send,
        stop,
        retry,
        clear,
        examples,
        raw_prompt,
        conversation,
        saved,
        probs,
    )


def selection_updates(playground: Playground, ref: Any) -> list[Any]:
    """The offline note, Send and max new tokens for the build `ref`, in that order: the note shows only above the
    offline model; Send works only for builds that can be sent to; max new tokens leaves room for the prompt."""
    return [
        gr.update(visible=ref.variant.offline),
        gr.update(interactive=sendable(playground, ref)),
        gr.update(maximum=max_new_tokens_for(ref)),
    ]


def _events_pickers(c: _Controls, playground: Playground, lang_state: Any) -> None:
    """Family → variants → builds; a family brings its system prompt, examples and settings; a build decides the
    offline note, Send and the max-new-tokens range; the language relabels the pickers and the chat."""
    family, variant, quant, info = c.pickers.family, c.pickers.variant, c.pickers.quant, c.pickers.info
    system, examples, settings, chatbot = c.system, c.examples, c.settings, c.chatbot

    def on_family(family_id: str, lang: str) -> list[Any]:
        fam, ref, dropdowns = family_picked(playground, family_id, lang)
        return [
            *dropdowns,
            model_info(playground, ref, lang),
            fam.system_prompt,
            gr.update(samples=[[e] for e in fam.examples]),
            *family_settings(fam),
            *selection_updates(playground, ref),
        ]

    selection_outputs = [c.offline_note, c.send, settings.max_new_tokens]
    family_outputs = [variant, quant, info, system, examples, *settings.inputs, *selection_outputs]
    family.input(guard_picker(on_family, family_outputs), [family, lang_state], family_outputs, queue=False)

    def on_variant(variant_id: str, lang: str) -> list[Any]:
        ref, quants = variant_picked(playground, variant_id, lang)
        return [quants, model_info(playground, ref, lang), *selection_updates(playground, ref)]

    variant_outputs = [quant, info, *selection_outputs]
    variant.input(guard_picker(on_variant, variant_outputs), [variant, lang_state], variant_outputs, queue=False)

    def on_quant(variant_id: str, quant_id: str, lang: str) -> list[Any]:
        ref = picked_ref(playground, variant_id, quant_id)
        return [model_info(playground, ref, lang), *selection_updates(playground, ref)]

    quant.input(on_quant, [variant, quant, lang_state], [info, *selection_outputs], queue=False)

    def on_lang(family_id: str, variant_id: str, quant_id: str, lang: str, conv: list[dict[str, Any]]) -> list[Any]:
        ref = picked_ref(playground, variant_id, quant_id)
        return [
            *pickers_relabelled(playground, family_id, variant_id, quant_id, lang),
            model_info(playground, ref, lang),
            # an empty conversation leaves the chat's messages alone: a chat restored from the browser may be
            # drawn while this runs
            gr.update(value=render(conv, lang), placeholder=t("chat_welcome", lang))
            if conv
            else gr.update(placeholder=t("chat_welcome", lang)),
        ]

    lang_state.change(
        guard_picker(on_lang, [variant, quant, info, chatbot]),
        [family, variant, quant, lang_state, c.conversation],
        [variant, quant, info, chatbot],
        queue=False,
    )

    def reset_system_prompt(family_id: str) -> str:
        return playground.catalog.family(family_id).system_prompt

    c.reset_system.click(guard_picker(reset_system_prompt, [system]), [family], [system], queue=False)
    wire_settings_reset(playground, family, settings)


def _events_preview(c: _Controls, playground: Playground, lang_state: Any) -> None:
    """The raw-prompt view follows the message, the system prompt and the build; an example fills the box."""

    def preview(
        variant_id: str, quant_id: str, text: str, sys_prompt: str, conv: list[dict[str, Any]], lang: str = "de"
    ) -> Any:
        """The prompt the next message would get. Without a message nothing would be sent, so the view keeps the
        prompt that was sent last (no empty user turn); an answer still being written is not history yet."""
        if not (text or "").strip():
            return gr.update()
        turns = to_turns([x for x in conv if x.get("stats") or x.get("error")])
        return playground.render_prompt(picked_id(variant_id, quant_id), text or "", sys_prompt, turns, lang)

    def preview_message(
        variant_id: str, quant_id: str, text: str, sys_prompt: str, conv: list[dict[str, Any]], lang: str = "de"
    ) -> Any:
        # An empty box is what sending leaves behind: keep showing the prompt that was just sent.
        if not (text or "").strip():
            return gr.update()
        return preview(variant_id, quant_id, text, sys_prompt, conv, lang)

    inputs = [c.pickers.variant, c.pickers.quant, c.message, c.system, c.conversation, lang_state]
    live_update([c.system.change, c.pickers.quant.change], preview, inputs, [c.raw_prompt])
    live_update([c.message.change], preview_message, inputs, [c.raw_prompt])
    c.examples.click(
        lambda sample: sample[0] if isinstance(sample, list) else sample, [c.examples], [c.message], queue=False
    )


def _apply(
    entry: dict[str, Any], answer: Answer, batch: list[Any], first_message: bool, prepared: Any, lang: str
) -> Any:
    """One batch of stream events folded into `answer` and written into the conversation's entry. Returns the
    raw-prompt view's update (the server's rendering where it built the prompt)."""
    before, sent = len(answer.text), answer.sent
    answer.add_all(batch)
    entry["assistant"] = answer.text
    if answer.status is not None:
        entry["status"] = answer.status_text(lang)
    elif len(answer.text) > before:
        entry.pop("status", None)
    if answer.stats:
        entry["stats"] = answer.stats
    entry.update(answer.traits())
    if answer.done and answer.probs:
        entry["token_probs"] = answer.token_probs()
    elif answer.done and answer.probs_note is not None:
        entry["probs_note_by_lang"] = in_every_language(answer.probs_note.key, **answer.probs_note.params)
    if answer.failed is not None:
        key, params = answer.failed.key, answer.failed.params
        if key == "err_context" and first_message:
            key = "err_context_single"  # nothing to clear: the message itself is too long
        entry["error"] = t(key, lang, **params)
        entry["error_by_lang"] = in_every_language(key, **params)  # a language switch redraws it
    # the server built the prompt: show its rendering, or say that it cannot be shown
    return answer.prompt_shown(prepared.raw_prompt, lang) if answer.sent is not sent else gr.update()


async def _answer(
    playground: Playground,
    flags: CancelFlags,
    text: str,
    conv: list[dict[str, Any]],
    model_id: str,
    sys_prompt: str,
    lang: str,
    settings_args: dict[str, Any],
    request: gr.Request | None,
    credential: str | None = None,
) -> AsyncIterator[list[Any]]:
    """One message answered, streamed into the conversation; updates for _Controls.outputs. `credential` is the
    signed-in visitor's opaque credential (the service passes it on; it never enters the conversation)."""
    session = session_of(request)
    if flags.running(session, SLOT):
        # one answer at a time per visitor: Enter or Send while one streams neither stops it nor queues
        warn(t("err_busy", lang), lang)
        yield gr.skip()
        return
    try:
        check_rate(request)
        prepared = playground.prepare(
            model_id,
            text,
            system_prompt=sys_prompt,
            history=to_turns(conv),
            lang=lang,
            credential=credential,
            **settings_args,
        )
    except InputError as exc:
        warn(t(exc.key, lang, **exc.params), lang)
        yield [gr.update(), conv, gr.update(), gr.update(), gr.update()]
        return
    flag = flags.start(session, SLOT)
    prepared.request.cancel = flag
    first_message = not to_turns(conv)
    entry: dict[str, Any] = {"user": text, "assistant": "", "model": prepared.request.model.id}
    conv = [*conv, entry]
    yield [render(conv, lang), conv, "", prepared.raw_prompt, gr.update(interactive=True)]
    try:
        answer = Answer()
        async for batch in batched(playground.stream(prepared)):
            shown = _apply(entry, answer, batch, first_message, prepared, lang)
            if answer.done:
                flags.finish(session, SLOT, flag)  # done: the next message may go as soon as this shows
            if getattr(flag, "reason", None) == "clear":
                break
            if entry.get("assistant"):
                entry.pop("status", None)
            yield [render(conv, lang), conv, gr.update(), shown, gr.update()]
    finally:
        flags.finish(session, SLOT, flag)
    idle = gr.update(interactive=False)
    if getattr(flag, "reason", None) == "clear":
        yield [[], [], gr.update(), gr.update(), idle]
        return
    entry.pop("status", None)
    yield [render(conv, lang), conv, gr.update(), gr.update(), idle]


def _events_generation(c: _Controls, playground: Playground, flags: CancelFlags, lang_state: Any) -> None:
    """Enter, Send or Retry: an answer streamed into the chat; Stop ends it; Clear (or the chat's trash icon)
    forgets the conversation."""
    inputs = [c.message, c.conversation, c.pickers.variant, c.pickers.quant, c.system, lang_state, *c.settings.inputs]
    outputs = c.outputs

    async def respond(
        request: gr.Request,
        oauth_token: gr.OAuthToken | None,
        text: str,
        conv: list[dict[str, Any]],
        variant_id: str,
        quant_id: str,
        sys_prompt: str,
        lang: str,
        *sampling: Any,
    ) -> AsyncIterator[list[Any]]:
        args = settings_by_name(sampling)
        model_id = picked_id(variant_id, quant_id)
        credential = credential_of(oauth_token)
        async for update in _answer(
            playground, flags, text, conv or [], model_id, sys_prompt, lang, args, request, credential
        ):
            yield update

    async def retry_last(
        request: gr.Request,
        oauth_token: gr.OAuthToken | None,
        text: str,
        conv: list[dict[str, Any]],
        variant_id: str,
        quant_id: str,
        sys_prompt: str,
        lang: str,
        *sampling: Any,
    ) -> AsyncIterator[list[Any]]:
        if not conv:
            warn(t("err_nothing_to_retry", lang), lang)
            yield [gr.update(), conv, gr.update(), gr.update(), gr.update()]
            return
        last = conv[-1]
        args = settings_by_name(sampling)
        model_id = picked_id(variant_id, quant_id)
        credential = credential_of(oauth_token)
        async for update in _answer(
            playground, flags, last["user"], conv[:-1], model_id, sys_prompt, lang, args, request, credential
        ):
            if isinstance(update, list):
                update[2] = gr.update()  # keep whatever the user is typing
            yield update

    # "multiple": Enter or Send while an answer streams reaches the server, which says why it does not send
    events = {"api_visibility": "private", "concurrency_limit": None, "trigger_mode": "multiple"}
    probs = {
        "fn": probs_html,
        "inputs": [c.conversation, lang_state],
        "outputs": [c.probs],
        "queue": False,
        "show_progress": "hidden",
        "api_visibility": "private",
    }
    for trigger, handler in ((c.message.submit, respond), (c.send.click, respond), (c.retry.click, retry_last)):
        # while the answer streams and once it has ended (done, stopped, failed), the browser keeps the conversation
        trigger(_saving(handler), inputs, [*outputs, c.saved], **events).then(**_save_args(c)).then(**probs)
    lang_state.change(**probs)

    def stop_now(request: gr.Request) -> None:
        flags.stop(session_of(request), SLOT)

    c.stop.click(stop_now, None, None, queue=False, api_visibility="private")

    def clear_all(request: gr.Request) -> list[Any]:
        flags.stop(session_of(request), SLOT, reason="clear")
        return [[], [], "", "", gr.update(interactive=False)]

    c.clear.click(clear_all, None, outputs, queue=False, api_visibility="private").then(**_save_args(c)).then(**probs)
    # the chatbot's own trash icon must forget the conversation too, not only hide it
    c.chatbot.clear(clear_all, None, outputs, queue=False, api_visibility="private").then(**_save_args(c)).then(**probs)


def _saving(handler: Any) -> Any:
    """`handler`'s updates with one more output, the browser-kept chat: written when a question is added and then
    at most every SAVE_EVERY_S while its answer streams (the answer's end is written by the event after it)."""

    async def saving(
        request: gr.Request,
        oauth_token: gr.OAuthToken | None,
        text: str,
        conv: list[dict[str, Any]],
        variant_id: str,
        quant_id: str,
        sys_prompt: str,
        lang: str,
        *sampling: Any,
    ) -> AsyncIterator[Any]:
        last = -SAVE_EVERY_S
        args = (text, conv, variant_id, quant_id, sys_prompt, lang, *sampling)
        # a signed-in visitor's token (Gradio's OAuth, None otherwise) goes to the service, never into `pack`
        async for update in handler(request, oauth_token, *args):
            if not isinstance(update, list):  # gr.skip(): nothing changes
                yield update
                continue
            now_conv = update[1]
            streaming = isinstance(now_conv, list) and bool(now_conv)
            streaming = streaming and not (now_conv[-1].get("stats") or now_conv[-1].get("error"))
            if streaming and time.monotonic() - last >= SAVE_EVERY_S:
                last = time.monotonic()
                model_id = picked_id(str(variant_id), str(quant_id))
                yield [*update, pack(now_conv, model_id, sys_prompt, list(sampling))]
            else:
                yield [*update, gr.skip()]

    saving.__name__ = getattr(handler, "__name__", "saving")
    return saving


def _save_args(c: _Controls) -> dict[str, Any]:
    """The event that writes the conversation (its last exchanges), the model, the system prompt and the settings
    into the browser."""

    def save(conv: list[dict[str, Any]], variant_id: str, quant_id: str, sys_prompt: str, *settings: Any) -> Any:
        return pack(conv or [], picked_id(str(variant_id), str(quant_id)), sys_prompt, list(settings))

    return {
        "fn": save,
        "inputs": [c.conversation, c.pickers.variant, c.pickers.quant, c.system, *c.settings.inputs],
        "outputs": [c.saved],
        "queue": False,
        "show_progress": "hidden",
        "api_visibility": "private",
    }


def _events_restore(c: _Controls, playground: Playground, page: Any) -> None:
    """A page (re)loaded in a browser that kept a chat: the conversation, drawn in the page's language, the model
    (if the catalog still has it; else the default), the system prompt and the settings (each one that passes the
    checks; the family's recommendation for the others, max new tokens within the build's context).

    The page's load event brings the stored value (Gradio's store reads localStorage when it is mounted, before
    the load event; measured in Chromium), so a save, which changes the store, restores nothing."""
    p, settings = c.pickers, c.settings
    outputs = [
        p.family,
        p.variant,
        p.quant,
        p.info,
        c.system,
        c.examples,
        *settings.inputs,
        c.offline_note,
        c.send,
        settings.max_new_tokens,
        c.chatbot,
        c.conversation,
    ]

    def restore(request: gr.Request, value: Any) -> list[Any]:
        saved = unpack(value)
        lang = normalize_language(request.query_params.get("lang") if request else None)
        if saved.empty:
            # the default build as it stands now (the offline model's file may have failed to arrive since the
            # page was built): its picker entry, model line, note and Send
            ref = playground.catalog.default
            note, send, _ = selection_updates(playground, ref)
            fresh = [
                *pickers_relabelled(playground, ref.family.id, ref.variant.id, ref.quant.id, lang),
                model_info(playground, ref, lang),
            ]
            updates: list[Any] = [gr.skip() for _ in outputs]
            refreshed = (p.variant, p.quant, p.info, c.offline_note, c.send)
            for component, update in zip(refreshed, [*fresh, note, send], strict=True):
                updates[outputs.index(component)] = update
            return updates
        ref = (playground.catalog.get(saved.model_id) if saved.model_id else None) or playground.catalog.default
        fam = ref.family
        system = fam.system_prompt if saved.system is None else saved.system
        # the kept settings where they passed the checks, the family's recommendation for the others
        recommended = zip(SETTING_NAMES, settings_values(fam), strict=True)
        values = [saved.settings.get(name, value) for name, value in recommended]
        at = SETTING_NAMES.index("max_new_tokens")
        slider = max_new_update(ref, values[at])  # room for the prompt in this build
        values[at] = slider["value"]
        note, send, _ = selection_updates(playground, ref)
        return [
            fam.id,
            *pickers_relabelled(playground, fam.id, ref.variant.id, ref.quant.id, lang),
            model_info(playground, ref, lang),
            system,
            gr.update(samples=[[e] for e in fam.examples]),
            *values,
            note,
            send,
            slider,
            render(saved.conversation, lang),
            saved.conversation,
        ]

    page.load(
        restore,
        [c.saved],
        outputs,
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )


def build_chat_tab(playground: Playground, tr: Translations, flags: CancelFlags, lang_state: Any, page: Any) -> ChatTab:
    """The chat tab inside `page` (the gr.Blocks whose load restores a chat the browser kept)."""
    c = _layout(playground, tr)
    _events_pickers(c, playground, lang_state)
    _events_preview(c, playground, lang_state)
    _events_generation(c, playground, flags, lang_state)
    _events_restore(c, playground, page)
    p = c.pickers
    return ChatTab(p.family, p.variant, p.quant, p.info, c.system, c.chatbot, c.message, c.conversation, c.settings)
