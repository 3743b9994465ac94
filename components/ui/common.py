"""Shared page pieces: model pickers, settings controls, language switching, per-session cancel flags."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from components.core import availability
from components.core.service import Playground
from components.core.validation import LIMITS, RANGES
from components.serving.limits import preview_gate, visitor_key
from components.vocabulary.answer import Answer, stats_line
from components.vocabulary.catalog import RECOMMENDED_SETTINGS, Family, ModelRef
from components.vocabulary.messages import t
from components.vocabulary.settings import SETTING_NAMES, SamplingSettings

log = logging.getLogger(__name__)


# ---- language ------------------------------------------------------------------------------------
@dataclass
class Translations:
    """Components whose texts follow the page language: (component, message key, attribute)."""

    items: list[tuple[Any, str, str]] = field(default_factory=list)
    #: placeholders of a message, by the item's index
    params: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: every family picker of the page: their choices are refreshed when a page loads (a server that answered
    #: after the start may have added a family; Gradio serves the choices the page was built with)
    families: list[Any] = field(default_factory=list)

    def add(self, component: Any, key: str, attr: str = "label", **params: Any) -> Any:
        if params:
            self.params[len(self.items)] = params
        self.items.append((component, key, attr))
        return component

    @property
    def components(self) -> list[Any]:
        """Each component once (one may have several texts: a label and a placeholder), in the order added."""
        return list({id(c): c for c, _, _ in self.items}.values())

    def updates(self, lang: str) -> list[Any]:
        """One update per component of `components`, with all its texts in `lang`."""
        texts: dict[int, dict[str, str]] = {id(c): {} for c in self.components}
        for i, (component, key, attr) in enumerate(self.items):
            texts[id(component)][attr] = t(key, lang, **self.params.get(i, {}))
        return [gr.update(**attrs) for attrs in texts.values()]


# ---- stop flags ----------------------------------------------------------------------------------
class CancelFlags:
    """The running request's cancel flag per browser session and slot (chat, compare, ...)."""

    def __init__(self) -> None:
        self._flags: dict[tuple[str, str], threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, session: str, slot: str) -> threading.Event:
        flag = threading.Event()
        with self._lock:
            old = self._flags.get((session, slot))
            if old is not None:
                old.set()
            self._flags[(session, slot)] = flag
        return flag

    def stop(self, session: str, slot: str, reason: str = "stop") -> None:
        """Sets the running request's flag; `reason` "clear" tells the handler to drop its answer."""
        with self._lock:
            flag = self._flags.pop((session, slot), None)
        if flag is not None:
            flag.reason = reason  # type: ignore[attr-defined]
            flag.set()

    def running(self, session: str, slot: str) -> bool:
        """Whether the session has a request running in the slot."""
        with self._lock:
            flag = self._flags.get((session, slot))
        return flag is not None and not flag.is_set()

    def finish(self, session: str, slot: str, flag: threading.Event) -> None:
        with self._lock:
            if self._flags.get((session, slot)) is flag:
                del self._flags[(session, slot)]

    def __len__(self) -> int:
        return len(self._flags)


def warn(message: str, lang: str) -> None:
    """A warning toast with its title in the page language (Gradio's default title is English). Gradio shows a
    toast's text as sanitized HTML, and a refusal may quote the visitor's input: no element comes of it."""
    gr.Warning(inert_html(message), title=t("toast_warning", lang))


def inform(message: str, lang: str) -> None:
    """An info toast with its title in the page language (no HTML element, as warn())."""
    gr.Info(inert_html(message), title=t("toast_info", lang))


def resolve_annotations(demo: gr.Blocks) -> int:
    """Evaluates each event handler's string annotations once (this project uses `from __future__ import
    annotations`). Gradio calls typing.get_type_hints on the handler for every call and, for a generator,
    every step, to find gr.Request parameters; with string annotations each of those evaluates them again
    (13 % of the app's CPU with 64 users streaming, bench/RESULTS.md). Returns how many were resolved."""
    done = 0
    for block_fn in demo.fns.values():
        fn = getattr(block_fn, "fn", None)
        target = getattr(fn, "__func__", fn)
        annotations = getattr(target, "__annotations__", None)
        if not annotations or not any(isinstance(a, str) for a in annotations.values()):
            continue
        with contextlib.suppress(Exception):  # an annotation that cannot be evaluated stays as it is
            target.__annotations__ = typing.get_type_hints(target)
            done += 1
    return done


def guard_picker(fn: Any, outputs: list[Any]) -> Any:
    """A picker event that leaves the page as it is for a family or variant id the catalog does not know.

    Only a hand-made call sends one (the page offers known ids only): `/on_family` without arguments would
    end in `KeyError: None` and a traceback in the log. The wrapper keeps `fn`'s signature.
    """
    import functools

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (KeyError, IndexError, TypeError):
            log.info("picker event %s: unknown id, nothing changed", getattr(fn, "__name__", "?"))
            return gr.update() if len(outputs) == 1 else [gr.update() for _ in outputs]

    return guarded


def session_of(request: gr.Request | None) -> str:
    return (getattr(request, "session_hash", None) or "anonymous") if request else "anonymous"


# ---- model pickers -------------------------------------------------------------------------------
def family_choices(playground: Playground) -> list[tuple[str, str]]:
    return [(f.name, f.id) for f in playground.catalog.families]


def refresh_families(page: Any, playground: Playground, tr: Translations) -> None:
    """On every page load, the family pickers offer the catalog's families as they are now."""
    pickers = list(tr.families)

    def families() -> list[Any]:
        choices = family_choices(playground)
        return [gr.update(choices=choices) for _ in pickers]

    if pickers:
        page.load(families, None, pickers, queue=False, show_progress="hidden", api_visibility="private")


def variant_choices(playground: Playground, family_id: str, lang: str = "de") -> list[tuple[str, str]]:
    family = playground.catalog.family(family_id)
    return [(variant_label(v, lang), v.id) for v in family.variants]


def variant_label(variant: Any, lang: str) -> str:
    return t("variant_recommended", lang, name=variant.name) if variant.recommended else variant.name


def quant_label(playground: Playground, ref: ModelRef, lang: str) -> str:
    """A build's picker entry in one of three states: runs here, runs after a download of N GB (and whether the
    Hub can be reached), or cannot run here with the reason."""
    avail = playground.availability(ref)
    quant = ref.quant.display
    if avail.state == availability.DOWNLOAD:
        # the same words as the model line: the Hub cannot be reached, or offline mode (HF_HUB_OFFLINE) is on
        key = "quant_download" if avail.ok else "quant_download_blocked"
        key = "quant_download_offline_mode" if avail.hub == availability.HUB_OFFLINE else key
        return t(key, lang, quant=quant, size=avail.params.get("size", 0.0))
    if avail.server == availability.SERVER_SILENT:
        return t("quant_remote_silent", lang, quant=quant)
    if avail.ok:
        return t("quant_remote_ready" if avail.server else "quant_ready", lang, quant=quant)
    return t("quant_blocked", lang, quant=quant, why=t(avail.key, lang, **avail.params))


def quant_choices(playground: Playground, variant_id: str, lang: str) -> list[tuple[str, str]]:
    """Every build of the variant, each saying whether it runs here, after a download, or not (and why not)."""
    return [(quant_label(playground, ref, lang), ref.quant.id) for ref in playground.catalog.quants_of(variant_id)]


def sendable(playground: Playground, ref: ModelRef) -> bool:
    """Whether Send is offered: the build runs now or after a download (a download from an unreachable Hub is
    refused with the whole story when sent); builds that cannot run here get no Send button."""
    avail = playground.availability(ref)
    return avail.ok or avail.state == availability.DOWNLOAD


#: Context tokens max new tokens always leaves to the prompt (system prompt, question, format).
PROMPT_ROOM = 256


def max_new_tokens_for(ref: ModelRef) -> int:
    """The most new tokens a slider offers for the build: the operator's cap, and never the whole context."""
    return max(1, min(LIMITS.max_new_tokens, ref.variant.context_length - PROMPT_ROOM))


def max_new_update(ref: ModelRef, value: Any) -> Any:
    """The max-new-tokens slider for the build `ref`: its range, and the value kept within it."""
    top = max_new_tokens_for(ref)
    try:
        kept = min(int(value), top)
    except (TypeError, ValueError):
        kept = top
    return gr.update(maximum=top, value=max(1, kept))


def offline_name(playground: Playground) -> str:
    """The offline stand-in model's name, from the catalog."""
    offline = next((r for r in playground.catalog.refs() if r.variant.offline), playground.catalog.default)
    return offline.variant.name


def first_runnable(playground: Playground, variant_id: str) -> str:
    """The build a variant starts on: one that runs now, else one that runs after a download, else the first."""
    refs = playground.catalog.quants_of(variant_id)
    states = [playground.availability(ref) for ref in refs]
    for wanted in (availability.READY, availability.DOWNLOAD):
        for ref, avail in zip(refs, states, strict=True):
            if avail.ok and avail.state == wanted:
                return ref.quant.id
    for ref, avail in zip(refs, states, strict=True):
        if avail.state == availability.DOWNLOAD:
            return ref.quant.id
    return refs[0].quant.id


def model_info(playground: Playground, ref: ModelRef, lang: str) -> str:
    family = ref.family
    lines = [
        t(
            "model_card_line",
            lang,
            family=family.name,
            variant=variant_label(ref.variant, lang),
            quant=ref.quant.display,
            context=ref.variant.context_length,
            engine=ref.engine_kind if ref.quant.kind.value != "remote" else ref.quant.endpoint,
        ),
        "",
        getattr(family.description, lang, family.description.de),
    ]
    if ref.quant.repo:
        lines.append(f"\n`{ref.quant.repo}`" + (f" · `{ref.quant.file}`" if ref.quant.file else ""))
    if family.settings_source:
        source = getattr(family.settings_source, lang, family.settings_source.de)
        lines.append("\n" + t("settings_source", lang, source=source))
    lines.append("\n" + availability_line(playground, ref, lang))
    return "\n".join(lines)


def availability_line(playground: Playground, ref: ModelRef, lang: str) -> str:
    """One sentence on whether the build runs here (now, after a download, or not and why)."""
    avail = playground.availability(ref)
    if avail.state == availability.DOWNLOAD and avail.ok:
        return t("info_download", lang, size=avail.params.get("size", 0.0))
    if avail.server == availability.SERVER_SILENT:
        return t("info_remote_silent", lang, why=t(avail.key, lang, **avail.params))
    if avail.ok and avail.server:
        return t("info_remote_ready", lang, **avail.params)
    if avail.ok:
        return t("info_ready", lang)
    if avail.key == "why_offline_fetch_failed":  # the whole story: what is missing and what to do
        return "✗ " + t("err_offline_model_missing", lang, **avail.params)
    why = t(avail.key, lang, **avail.params)
    if avail.state == availability.DOWNLOAD:
        return t("info_download_blocked", lang, why=why[:1].upper() + why[1:])
    return t("info_blocked", lang, why=why)


@dataclass
class Pickers:
    family: Any
    variant: Any
    quant: Any
    info: Any  # the model's description, or None where the tab shows none


def runnable_refs(playground: Playground) -> list[ModelRef]:
    """Every build that runs here now, the catalog's default first (a remote build whose server does not answer
    is not offered as a default)."""
    default = playground.catalog.default
    refs = [default] if playground.availability(default).state == availability.READY else []
    for ref in playground.catalog.refs():
        avail = playground.availability(ref)
        answering = avail.server != availability.SERVER_SILENT
        if ref.id != default.id and avail.ok and avail.state == availability.READY and answering:
            refs.append(ref)
    return refs


def build_pickers(
    playground: Playground,
    tr: Translations,
    prefix: str,
    suffix: str = "",
    with_info: bool = True,
    start: ModelRef | None = None,
) -> Pickers:
    """Family, variant and quantization dropdowns (elem ids `{prefix}-family{suffix}`, ...) on `start` (default:
    the catalog's default model)."""
    default = start or playground.catalog.default

    def dropdown(key: str, choices: list[tuple[str, str]], value: str) -> Any:
        # allow_custom_value: Gradio's own check of a value against the choices it last sent answers in English
        # ("Value: … is not in the list of choices"), e.g. on Enter right after a family change; the playground
        # checks every id itself and answers in the page's language (err_unknown_model)
        dropdown = gr.Dropdown(
            choices, value=value, label=t(key), elem_id=f"{prefix}-{key}{suffix}", allow_custom_value=True
        )
        return tr.add(dropdown, key)

    family = dropdown("family", family_choices(playground), default.family.id)
    tr.families.append(family)
    variant = dropdown("variant", variant_choices(playground, default.family.id), default.variant.id)
    quant = dropdown("quant", quant_choices(playground, default.variant.id, "de"), default.quant.id)
    info = (
        gr.Markdown(model_info(playground, default, "de"), elem_id=f"{prefix}-model-info{suffix}")
        if with_info
        else None
    )
    return Pickers(family, variant, quant, info)


# ---- settings ------------------------------------------------------------------------------------
#: the sliders' steps (the seed and the stop sequences are text boxes)
SLIDER_STEPS = {
    "temperature": 0.05,
    "top_p": 0.01,
    "top_k": 1,
    "max_new_tokens": 1,
    "repetition_penalty": 0.01,
    "top_tokens": 1,
}


@dataclass
class SettingsControls:
    temperature: Any
    top_p: Any
    top_k: Any
    max_new_tokens: Any
    repetition_penalty: Any
    seed: Any
    top_tokens: Any
    stop: Any
    reset: Any

    @property
    def inputs(self) -> list[Any]:
        """The settings' controls in SETTING_NAMES order (the order settings_by_name reads them in)."""
        return [getattr(self, name) for name in SETTING_NAMES]


def family_settings(family: Family) -> list[Any]:
    """settings_values() for a family just picked: the token-probabilities setting stays as the visitor set it
    (it belongs to the view, not to the family)."""
    values = settings_values(family)
    values[SETTING_NAMES.index("top_tokens")] = gr.update()
    return values


def settings_values(family: Family) -> list[Any]:
    """The family's recommended values for the settings controls, in SettingsControls.inputs order (SETTING_NAMES):
    the recommendation, else SamplingSettings' default; the seed and stop sequences empty."""
    defaults = SamplingSettings()
    recommended = {name: getattr(family.settings, name) for name in RECOMMENDED_SETTINGS}
    return [
        (
            ""
            if name in ("seed", "stop")
            else getattr(defaults, name)
            if recommended.get(name) is None
            else recommended[name]
        )
        for name in SETTING_NAMES
    ]


def settings_accordion(tr: Translations, prefix: str, model: ModelRef) -> SettingsControls:
    """The closed "settings" box (elem id `{prefix}-settings`) with `model`'s family's sliders."""
    with gr.Accordion(t("settings"), open=False, elem_id=f"{prefix}-settings") as acc:
        settings = settings_panel(model.family, tr, prefix, model=model)
    tr.add(acc, "settings")
    return settings


def settings_panel(family: Family, tr: Translations, prefix: str, model: ModelRef | None = None) -> SettingsControls:
    """Sliders whose ranges are the server's own validation ranges, one control per setting (SETTING_NAMES)."""
    values = dict(zip(SETTING_NAMES, settings_values(family), strict=True))
    room = [max_new_tokens_for(model)] if model is not None else []
    values["max_new_tokens"] = min(values["max_new_tokens"], LIMITS.max_new_tokens, *room)
    controls: dict[str, Any] = {}
    for name in SETTING_NAMES:
        elem_id = f"{prefix}-{name.replace('_', '-')}"
        if name in SLIDER_STEPS:
            low, high, _ = RANGES[name]
            if name == "max_new_tokens" and room:
                high = room[0]
            control = gr.Slider(low, high, value=values[name], step=SLIDER_STEPS[name], label=t(name), elem_id=elem_id)
            controls[name] = tr.add(control, name)
        elif name == "seed":
            # a Textbox, not a gr.Number: Number(value=None) shows and sends 0, so "empty = random" would never hold
            controls[name] = tr.add(gr.Textbox(value="", max_lines=1, label=t("seed"), elem_id=elem_id), "seed")
        else:
            control = gr.Textbox(value="", lines=2, label=t("stop_sequences"), elem_id=f"{prefix}-stop-sequences")
            controls[name] = tr.add(control, "stop_sequences")
    reset = tr.add(
        gr.Button(t("reset_settings"), size="sm", elem_id=f"{prefix}-reset-settings"), "reset_settings", "value"
    )
    return SettingsControls(**controls, reset=reset)


# ---- model pickers: what every tab's pickers do ----------------------------------------------------------
def credential_of(oauth_token: gr.OAuthToken | None) -> str | None:
    """A signed-in visitor's token (Gradio's OAuth; None otherwise) as the service's opaque credential: it goes into
    the request only, never into what a tab shows or keeps."""
    return oauth_token.token if oauth_token else None


def picked_id(variant_id: str, quant_id: str) -> str:
    return f"{variant_id}/{quant_id}"


def picked_ref(playground: Playground, variant_id: str, quant_id: str) -> ModelRef:
    """The build the pickers show (the catalog's default for an id it does not know)."""
    return playground.catalog.get(picked_id(variant_id, quant_id)) or playground.catalog.default


def family_picked(playground: Playground, family_id: str, lang: str) -> tuple[Family, ModelRef, list[Any]]:
    """A family picked: its first variant on the build that variant starts on. Returns the family, that build and
    the variant and build dropdowns' updates; an unknown family raises KeyError (guard_picker)."""
    fam = playground.catalog.family(family_id)
    v = fam.variants[0].id
    q = first_runnable(playground, v)
    ref = picked_ref(playground, v, q)
    return (
        fam,
        ref,
        [
            gr.update(choices=variant_choices(playground, family_id, lang), value=v),
            gr.update(choices=quant_choices(playground, v, lang), value=q),
        ],
    )


def variant_picked(playground: Playground, variant_id: str, lang: str) -> tuple[ModelRef, Any]:
    """A variant picked: the build it starts on, and the build dropdown's update."""
    q = first_runnable(playground, variant_id)
    return picked_ref(playground, variant_id, q), gr.update(
        choices=quant_choices(playground, variant_id, lang), value=q
    )


def pickers_relabelled(playground: Playground, family_id: str, variant_id: str, quant_id: str, lang: str) -> list[Any]:
    """The variant and build dropdowns in another language, on the same choice."""
    return [
        gr.update(choices=variant_choices(playground, family_id, lang), value=variant_id),
        gr.update(choices=quant_choices(playground, variant_id, lang), value=quant_id),
    ]


def wire_settings_reset(playground: Playground, family: Any, settings: SettingsControls, **event: Any) -> None:
    """Reset: the settings go back to the picked family's recommended values."""

    def reset_settings(family_id: str) -> list[Any]:
        return settings_values(playground.catalog.family(family_id))

    settings.reset.click(guard_picker(reset_settings, settings.inputs), [family], settings.inputs, queue=False, **event)


def wire_pickers(
    playground: Playground,
    pickers: Pickers,
    settings: SettingsControls,
    lang_state: Any,
    extra_outputs: list[Any] | None = None,
    extra_values: Callable[[Any], list[Any]] | None = None,
) -> None:
    """Family → variants → builds, like the chat tab; a family change also loads its recommended settings."""
    extra_outputs = extra_outputs or []

    def on_family(family_id: str, lang: str) -> list[Any]:
        fam, ref, dropdowns = family_picked(playground, family_id, lang)
        values = family_settings(fam)
        values[3] = max_new_update(ref, values[3])
        return [
            *dropdowns,
            model_info(playground, ref, lang),
            *values,
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

    def on_variant(variant_id: str, lang: str, max_new: Any) -> list[Any]:
        ref, quants = variant_picked(playground, variant_id, lang)
        return [quants, model_info(playground, ref, lang), max_new_update(ref, max_new)]

    variant_outputs = [pickers.quant, pickers.info, settings.max_new_tokens]
    pickers.variant.input(
        guard_picker(on_variant, variant_outputs),
        [pickers.variant, lang_state, settings.max_new_tokens],
        variant_outputs,
        queue=False,
        api_visibility="private",
    )

    def on_quant(variant_id: str, quant_id: str, lang: str, max_new: Any) -> list[Any]:
        ref = picked_ref(playground, variant_id, quant_id)
        return [model_info(playground, ref, lang), max_new_update(ref, max_new)]

    pickers.quant.input(
        on_quant,
        [pickers.variant, pickers.quant, lang_state, settings.max_new_tokens],
        [pickers.info, settings.max_new_tokens],
        queue=False,
        api_visibility="private",
    )

    def on_lang(family_id: str, variant_id: str, quant_id: str, lang: str) -> list[Any]:
        ref = picked_ref(playground, variant_id, quant_id)
        return [
            *pickers_relabelled(playground, family_id, variant_id, quant_id, lang),
            model_info(playground, ref, lang),
        ]

    lang_state.change(
        guard_picker(on_lang, [pickers.variant, pickers.quant, pickers.info]),
        [pickers.family, pickers.variant, pickers.quant, lang_state],
        [pickers.variant, pickers.quant, pickers.info],
        queue=False,
        api_visibility="private",
    )
    wire_settings_reset(playground, pickers.family, settings, api_visibility="private")


def raw_prompt_box(tr: Translations, prefix: str, lines: int, max_lines: int, copy: bool = True) -> Any:
    """The closed "raw prompt" box (elem ids `{prefix}-raw-prompt-box`, `{prefix}-raw-prompt`); returns its text."""
    with gr.Accordion(t("raw_prompt"), open=False, elem_id=f"{prefix}-raw-prompt-box") as raw_acc:
        raw_prompt = gr.Textbox(
            value="",
            label=t("raw_prompt"),  # read by screen readers (Gradio names an unlabelled box "Textbox")
            lines=lines,
            max_lines=max_lines,
            interactive=False,
            show_label=False,
            **({"buttons": ["copy"]} if copy else {}),
            elem_id=f"{prefix}-raw-prompt",
        )
    tr.add(raw_acc, "raw_prompt")
    tr.add(raw_prompt, "raw_prompt")
    return raw_prompt


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def md_literal(text: str) -> str:
    """Visitor text shown in Markdown, literally."""
    return _MD_SPECIAL.sub(r"\\\1", text)


#: Put after the "<" that starts markup, it keeps the text as it reads and makes it no markup (invisible, no break).
WORD_JOINER = "\u2060"
#: "<" that starts a tag, an end tag, a comment, a declaration or a processing instruction; not an autolink
#: (`<https://…>`), which Markdown makes a plain link
_MARKUP_START = re.compile(r"<(?=[A-Za-z/!?])(?![A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*>)")
#: a fenced code block's opening line at column 0, as CommonMark and marked (Gradio's Markdown) both read it
_FENCE_OPEN = re.compile(r"(`{3,})[^`]*|(~{3,}).*")
#: text in which a fenced block might not be one for Gradio's renderer: LaTeX delimiters (Gradio takes `$$…$$`
#: out before Markdown sees it) and link reference definitions (a title may run over several lines)
_FENCE_DOUBTS = ("$$", "\\[", "\\(", "]:")


def inert_html(text: str) -> str:
    """Visitor or model text for a Markdown view (chat bubbles, status lines) with no HTML element in it: every
    tag, comment or declaration stays visible as the text it is, but a browser never makes it an element.

    Gradio's sanitizer keeps forms, inputs, buttons, iframes and inline styles, so a message (or an answer that a
    prompt injection wrote) could put a working form on the page. A word joiner after each such "<" makes it text
    both for Markdown and for the browser, wherever it stands; `&lt;` would show up literally in code. The
    contents of fenced code blocks stay untouched (copied code must compile), but only where Gradio's renderer
    certainly reads the same block: an opening fence at column 0 and no LaTeX or link definitions in the text;
    a fence closes at the first line that closes it for either CommonMark or marked."""
    if not text or "<" not in text:
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # the line breaks marked sees
    keep_fences = not any(doubt in text for doubt in _FENCE_DOUBTS)
    out: list[str] = []
    closing: re.Pattern[str] | None = None
    for line in text.split("\n"):
        if closing is not None:
            out.append(line)
            if closing.match(line):
                closing = None
            continue
        opening = _FENCE_OPEN.fullmatch(line) if keep_fences else None
        if opening:
            fence = opening.group(1) or opening.group(2)
            closing = re.compile(f" {{0,3}}{re.escape(fence)}[~`]*[ \t]*$")
            out.append(line)
            continue
        out.append(_MARKUP_START.sub("<" + WORD_JOINER, line))
    return "\n".join(out)


def status_markdown(parts: dict[str, str]) -> str:
    order = ("fit", "status", "error", "stats")
    return "\n\n".join(parts[k] for k in order if parts.get(k))


def apply_events(answer: Answer, batch: list[Any], notes: dict[str, str], raw_prompt: str, lang: str) -> Any:
    """One batch of a stream's events folded into `answer` and shown in a tab's status notes (status, stats, error):
    returns the raw-prompt view's update (the server's own rendering where it built the prompt)."""
    before, sent = len(answer.text), answer.sent
    answer.add_all(batch)
    if answer.status is not None:
        notes["status"] = f"*{inert_html(answer.status_text(lang) or '')}*"
    elif len(answer.text) > before:
        notes.pop("status", None)
    if answer.failed is not None:  # its parameters may quote the visitor's input or a server's words
        notes["error"] = t("err_prefix", lang) + inert_html(answer.error_text(lang) or "")
    if answer.stats:
        notes["stats"] = f"<sub>{stats_line(answer.stats, lang, answer.traits())}</sub>"
    return answer.prompt_shown(raw_prompt, lang) if answer.sent is not sent else gr.update()


def run_with_stop(
    triggers: list[Any], fn: Any, inputs: list[Any], outputs: list[Any], stop: Any, after: dict[str, Any] | None = None
) -> None:
    """Wires `fn` (a streaming handler) to each trigger, with Stop active exactly while it runs: a red Stop that
    stops nothing looks like a fault. A refused request enables Stop only for a moment. `after`: the arguments of
    one more event once it ended."""
    for trigger in triggers:
        trigger(lambda: gr.update(interactive=True), None, [stop], queue=False, api_visibility="private")
        ended = trigger(fn, inputs, outputs, api_visibility="private", concurrency_limit=None).then(
            lambda: gr.update(interactive=False), None, [stop], queue=False, api_visibility="private"
        )
        if after:
            ended.then(**after)


def gated_preview(fn: Callable[..., Any], outputs: int) -> Callable[..., Any]:
    """`fn` behind the visitor's preview gate (components/serving/limits.py PreviewGate): a preview over the
    visitor's share leaves the outputs as they are. Runs in Gradio's worker threads, off the event loop."""

    def gated(request: gr.Request, *values: Any) -> Any:
        gate, key = preview_gate(), visitor_key(request)
        if not gate.enter(key):
            return gr.update() if outputs == 1 else [gr.update()] * outputs
        try:
            return fn(*values)
        finally:
            gate.leave(key)

    gated.__name__ = gated.__qualname__ = getattr(fn, "__name__", "preview")
    return gated


def live_update(triggers: list[Any], fn: Any, inputs: list[Any], outputs: list[Any], **extra: Any) -> None:
    """`fn` on each trigger as a quiet, latest-wins update (a raw-prompt preview, a schema note): no queue, no
    spinner, a burst of changes runs once more at its end; bounded per visitor (gated_preview)."""
    gated = gated_preview(fn, len(outputs))
    for trigger in triggers:
        trigger(gated, inputs, outputs, queue=False, show_progress="hidden", trigger_mode="always_last", **extra)
