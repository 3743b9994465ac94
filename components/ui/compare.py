"""The compare tab: one prompt, 2 to 4 models streaming side by side, blind votes, leaderboard, export."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from components.core.service import Playground
from components.core.validation import RANGES, check_message
from components.features.compare import (
    LETTERS,
    MAX_PANES,
    MIN_PANES,
    TIE,
    CatalogIds,
    PaneSpec,
    Round,
    VoteLog,
    catalog_ids,
    export_json,
    export_markdown,
    new_round,
    pane_history,
    pane_settings,
    prepare_panes,
    shuffled,
    stream_round,
)
from components.serving.limits import check_rate
from components.ui.arena import (
    LeaderboardView,
    build_blind_session,
    build_leaderboard_view,
    model_names,
    reveal_lines,
    save_vote,
    second_model_hint,
    tag_prompt,
    vote_note,
    voted_line,
)
from components.ui.chat import render
from components.ui.common import (
    CancelFlags,
    SettingsControls,
    Translations,
    build_pickers,
    credential_of,
    family_picked,
    guard_picker,
    max_new_tokens_for,
    max_new_update,
    md_literal,
    offline_name,
    picked_id,
    pickers_relabelled,
    run_with_stop,
    runnable_refs,
    session_of,
    settings_panel,
    settings_values,
    variant_picked,
    warn,
)
from components.ui.share import no_link, share_button, share_button_update, share_link_box, wire_share
from components.ui.token_view import CSS as TOKEN_CSS
from components.ui.token_view import probs_view
from components.vocabulary.generation import InputError
from components.vocabulary.messages import t
from components.vocabulary.settings import settings_by_name

log = logging.getLogger(__name__)

SLOT = "compare"
#: Per-pane values the send handler reads, in this order, for each of the MAX_PANES panes.
PANE_FIELDS = 6
#: Per-pane controls blind mode sets when it gives a pane another model (family, variant, build, system, max new).
PANE_PICKS = 5
#: Export files live in per-export folders here; folders older than this are removed on the next export.
EXPORT_MAX_AGE_S = 3600.0
EXPORT_ROOT = Path(tempfile.gettempdir()) / "playground-compare-exports"


def export_root() -> Path:
    """PLAYGROUND_EXPORT_DIR (the app's own temporary folder, removed when it ends; components/serving/launch.py),
    else EXPORT_ROOT."""
    raw = os.environ.get("PLAYGROUND_EXPORT_DIR", "").strip()
    return Path(raw) if raw else EXPORT_ROOT


@dataclass
class PaneControls:
    column: Any
    picker_column: Any
    settings_box: Any
    family: Any
    variant: Any
    quant: Any
    system: Any
    override: Any
    temperature: Any
    max_new_tokens: Any
    chatbot: Any
    stats: Any
    #: the pane's answers' tokens tinted by probability (when asked for: the top_tokens setting)
    probs: Any = None

    @property
    def inputs(self) -> list[Any]:
        """The values the send handler needs from this pane (PANE_FIELDS of them)."""
        return [self.variant, self.quant, self.system, self.override, self.temperature, self.max_new_tokens]


@dataclass
class CompareTab:
    message: Any
    pane_count: Any
    blind: Any
    panes: list[PaneControls]
    rounds: Any
    settings: SettingsControls
    family_defaults: Any
    vote_buttons: list[Any]
    leaderboard: Any
    export_md: Any
    export_json: Any


# ---- pure view helpers (tested without a browser) ----------------------------------------------
def pane_count_of(value: Any) -> int:
    """The pane count from the page, forced into MIN_PANES..MAX_PANES (the page is not trusted)."""
    try:
        count = int(value)
    except (TypeError, ValueError):
        return MIN_PANES
    return max(MIN_PANES, min(MAX_PANES, count))


def pane_conversation(rounds: list[Round], pane: int, lang: str) -> list[dict[str, Any]]:
    """One pane's exchanges in the chat tab's shape, so the chat tab's renderer draws them."""
    out = []
    for r in rounds:
        if pane >= len(r.panes):
            continue
        p = r.panes[pane]
        status = p.status
        if status and r.blind and not r.revealed:
            status = t("compare_working", lang)  # a loading message would name the model
        out.append(
            {
                "user": r.prompt,
                "assistant": p.text,
                "status": status,
                "error": p.error,
                "error_by_lang": p.error_by_lang,
                "stats": p.stats,
                "language": p.language,
                "register": p.register,
            }
        )
    return out


def pane_label(rounds: list[Round], pane: int, lang: str) -> str:
    for r in reversed(rounds):
        if pane < len(r.panes):
            return r.name(pane, lang)
    return t("compare_pane", lang, n=pane + 1)


def pane_stats_line(rounds: list[Round], pane: int, lang: str) -> str:
    """The line under a pane: "writing …" while its answer streams, else nothing. The answer's figures, error or
    queue position are in its own bubble (render()); saying them twice, or "writing" under a bubble that says
    "queued", only confused."""
    for r in reversed(rounds):
        if pane < len(r.panes):
            p = r.panes[pane]
            if p.done or p.stats or p.error or p.status:
                return ""
            return t("compare_working", lang)
    return ""


def reveal_text(round_: Round | None, lang: str) -> str:
    if round_ is None or not round_.blind:
        return ""
    if not round_.revealed:
        if not round_.done:
            return ""
        if round_.unanswered:  # nothing to judge: the vote stays closed, and this says why
            return t("err_vote_unanswered", lang, letters=round_.unanswered)
        return t("compare_vote_hint", lang)
    lines = [voted_line(round_, lang)]
    if note := vote_note(round_, lang):
        lines.append(note)
    return "\n".join([*lines, *reveal_lines(round_, lang)])


def write_exports(rounds: list[Round], lang: str) -> tuple[str, str]:
    """The comparison as Markdown and JSON files in a fresh temporary folder (Gradio serves them)."""
    root = export_root()
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - EXPORT_MAX_AGE_S
    for old in root.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue
    folder = Path(tempfile.mkdtemp(prefix="export-", dir=root))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = f"{t('export_file_stem', lang)}-{stamp}"
    md = folder / f"{stem}.md"
    js = folder / f"{stem}.json"
    md.write_text(export_markdown(rounds, lang), encoding="utf-8")
    js.write_text(export_json(rounds, lang), encoding="utf-8")
    return str(md), str(js)


def probs_updates(conv: list[Round] | None, lang: str) -> list[str]:
    """Every pane's probabilities view (MAX_PANES): its answers of every round that has them."""
    views = []
    for i in range(MAX_PANES):
        answers = [
            (t("probs_answer", lang, n=k + 1), r.panes[i].token_probs, r.panes[i].token_probs_note)
            for k, r in enumerate(conv or [])
            if i < len(r.panes)
        ]
        views.append(probs_view(answers, lang))
    return views


def pane_updates(conv: list[Round], lang: str) -> list[Any]:
    """Every pane's chat and stats line (MAX_PANES of each)."""
    chatbots = [
        gr.update(value=render(pane_conversation(conv, i, lang), lang), label=pane_label(conv, i, lang))
        for i in range(MAX_PANES)
    ]
    stats_lines = [pane_stats_line(conv, i, lang) for i in range(MAX_PANES)]
    return [*chatbots, *stats_lines, question_line(conv, lang)]


#: the longest question the line above the panes shows in full
QUESTION_LINE_CHARS = 300


def question_line(conv: list[Round], lang: str) -> str:
    """The latest question, above the panes: a long answer scrolls its pane, and the question out of sight."""
    if not conv:
        return ""
    text = " ".join(conv[-1].prompt.split())
    if len(text) > QUESTION_LINE_CHARS:
        text = text[:QUESTION_LINE_CHARS].rstrip() + " …"
    return t("compare_question", lang, text=md_literal(text)) + raw_prompts_block(conv[-1], lang)


def raw_prompts_block(round_: Round, lang: str) -> str:
    """Each pane's own raw prompt (its family's format, or its model's chat template), folded, under the question;
    nothing while a blind round hides which model a pane is."""
    if round_.blind and not round_.revealed:
        return ""
    parts = []
    for i, pane in enumerate(round_.panes):
        if not pane.raw_prompt:
            continue
        longest = max((len(run) for run in re.findall(r"`+", pane.raw_prompt)), default=0)
        fence = "`" * max(3, longest + 1)
        parts.append(f"**{md_literal(round_.name(i, lang))}**\n\n{fence}text\n{pane.raw_prompt}\n{fence}")
    if not parts:
        return ""
    body = "\n\n".join(parts)
    return f"\n\n<details><summary>{t('compare_raw_prompts', lang)}</summary>\n\n{body}\n\n</details>"


def vote_updates(conv: list[Round], count: int, lang: str) -> list[Any]:
    """The vote buttons (MAX_PANES and the tie), open after a blind round ended, and the reveal text."""
    last = conv[-1] if conv else None
    open_vote = bool(last and last.votable)
    buttons = [
        gr.update(
            visible=i < count,
            interactive=open_vote and last is not None and i < len(last.panes),
            value=t("compare_vote_for", lang, name=t("compare_blind_name", lang, letter=LETTERS[i])),
        )
        for i in range(MAX_PANES)
    ]
    return [*buttons, gr.update(interactive=open_vote), reveal_text(last, lang)]


async def export_updates(conv: list[Round], lang: str) -> list[Any]:
    """The two downloads, offered once the last round is done; Share link, once it may be shared (the link box
    keeps what it shows)."""
    if not conv or not conv[-1].done:
        return [gr.update(), gr.update(), gr.update(), gr.update()]
    share = [share_button_update(conv), gr.update()]
    try:
        md, js = await asyncio.to_thread(write_exports, conv, lang)
    except OSError as exc:
        log.warning("compare export failed: %s", exc)
        return [gr.update(interactive=False), gr.update(interactive=False), *share]
    return [gr.update(value=md, interactive=True), gr.update(value=js, interactive=True), *share]


def no_export() -> list[Any]:
    """No downloads, no share button, no link (a new round, Clear)."""
    return [
        gr.update(value=None, interactive=False),
        gr.update(value=None, interactive=False),
        gr.update(interactive=False),
        no_link(),
    ]


def pane_specs(values: list[Any], count: int, shared: dict[str, Any], fam_defaults: Any) -> list[PaneSpec]:
    """The first `count` panes' model, system prompt and settings, from their PANE_FIELDS values each."""
    specs = []
    for i in range(count):
        variant_id, quant_id, system, override, temp, max_new = values[i * PANE_FIELDS : (i + 1) * PANE_FIELDS]
        own = {"temperature": temp, "max_new_tokens": max_new} if override else None
        specs.append(
            PaneSpec(
                f"{variant_id}/{quant_id}",
                system if isinstance(system, str) and system.strip() else None,
                pane_settings(shared, own, bool(fam_defaults)),
            )
        )
    return specs


# ---- the tab: layout -----------------------------------------------------------------------------
@dataclass
class _Controls:
    """The tab's controls, made by its layout and wired by its events."""

    pane_count: Any
    blind: Any
    panes: list[PaneControls]
    message: Any
    send: Any
    stop: Any
    clear: Any
    export_md: Any
    export_js: Any
    vote_buttons: list[Any]
    vote_tie: Any
    vote_row: Any
    reveal: Any
    family_defaults: Any
    settings: SettingsControls
    board_view: LeaderboardView
    rounds: Any
    question: Any
    share: Any
    share_link: Any

    @property
    def all_votes(self) -> list[Any]:
        return [*self.vote_buttons, self.vote_tie]

    @property
    def vote_outputs(self) -> list[Any]:
        """What a vote updates: the panes' chats and stats, the rounds, the vote buttons, the reveal, the exports."""
        panes = self.panes
        return [
            *[p.chatbot for p in panes],
            *[p.stats for p in panes],
            self.question,
            self.rounds,
            *self.all_votes,
            self.reveal,
            self.export_md,
            self.export_js,
            self.share,
            self.share_link,
        ]

    @property
    def stream_outputs(self) -> list[Any]:
        """What a round updates: vote_outputs and, after the rounds, the message box."""
        outputs = self.vote_outputs
        at = outputs.index(self.rounds) + 1
        return [*outputs[:at], self.message, *outputs[at:]]


def _layout_pane_settings(playground: Playground, tr: Translations, runnable: list[Any]) -> list[tuple[Any, ...]]:
    """Each pane's pickers, system prompt and own settings (in a row of their own: in blind mode a pane's answer
    comes from a shuffled model, so no pane may sit under the picker of "its" model)."""
    default = playground.catalog.default
    values = settings_values(default.family)
    low_t, high_t, _ = RANGES["temperature"]
    pickers: list[tuple[Any, ...]] = []
    with gr.Row(equal_height=False, elem_id="compare-models"):
        for i in range(MAX_PANES):
            n = i + 1
            with (
                gr.Column(visible=n <= MIN_PANES, min_width=300, elem_id=f"compare-model-{n}") as picker_column,
                gr.Accordion(t("compare_pane_settings", n=n), open=True, elem_id=f"compare-box-{n}") as box,
            ):
                start = runnable[i % len(runnable)] if runnable else default
                built = build_pickers(playground, tr, "compare", suffix=f"-{n}", with_info=False, start=start)
                system = tr.add(
                    gr.Textbox(
                        value="",
                        lines=2,
                        max_lines=8,
                        label=t("compare_system"),
                        placeholder=default.family.system_prompt,
                        elem_id=f"compare-system-{n}",
                    ),
                    "compare_system",
                )
                override = tr.add(
                    gr.Checkbox(False, label=t("compare_override"), elem_id=f"compare-override-{n}"),
                    "compare_override",
                )
                with gr.Group(visible=False, elem_classes=["compare-own"]) as own_box:
                    temperature = tr.add(
                        gr.Slider(
                            low_t,
                            high_t,
                            value=values[0],
                            step=0.05,
                            label=t("temperature"),
                            elem_id=f"compare-temperature-{n}",
                        ),
                        "temperature",
                    )
                    top = max_new_tokens_for(start)
                    max_new = tr.add(
                        gr.Slider(
                            1,
                            top,
                            value=min(values[3], top),
                            step=1,
                            label=t("max_new_tokens"),
                            elem_id=f"compare-max-new-tokens-{n}",
                        ),
                        "max_new_tokens",
                    )
            # wired here, in the layout, so that the page's events keep their order
            override.change(
                lambda on: gr.update(visible=bool(on)), [override], [own_box], queue=False, api_visibility="private"
            )
            pickers.append(
                (picker_column, box, built.family, built.variant, built.quant, system, override, temperature, max_new)
            )
    return pickers


def _layout_panes(pickers: list[tuple[Any, ...]]) -> tuple[Any, list[PaneControls]]:
    """The latest question above the answers' row: a chat and a stats line per pane."""
    panes: list[PaneControls] = []
    question = gr.Markdown("", elem_id="compare-question")
    with gr.Row(equal_height=False, elem_id="compare-panes"):
        for i in range(MAX_PANES):
            n = i + 1
            with gr.Column(visible=n <= MIN_PANES, min_width=300, elem_id=f"compare-col-{n}") as column:
                chatbot = gr.Chatbot(
                    label=t("compare_pane", n=n), elem_id=f"compare-pane-{n}", height=420, buttons=["copy"]
                )
                stats = gr.Markdown("", elem_id=f"compare-stats-{n}")
                probs = gr.HTML("", elem_id=f"compare-probs-{n}", css_template=TOKEN_CSS, padding=False)
            panes.append(PaneControls(column, *pickers[i], chatbot, stats, probs))
    return question, panes


def _layout_ask(tr: Translations) -> tuple[Any, ...]:
    """The prompt box and Send; Stop, Clear and the two downloads."""
    with gr.Row(elem_id="compare-ask-row"):
        message = tr.add(
            gr.Textbox(
                label=t("message"),  # read by screen readers (Gradio names an unlabelled box "Textbox")
                placeholder=t("compare_placeholder"),
                show_label=False,
                lines=1,
                max_lines=10,
                scale=5,
                elem_id="compare-input",
            ),
            "compare_placeholder",
            "placeholder",
        )
        tr.add(message, "message")
        send = tr.add(gr.Button(t("send"), variant="primary", scale=1, elem_id="compare-send"), "send", "value")
    with gr.Row(elem_id="compare-buttons-row"):
        # idle until a round runs (as in the chat tab): a red Stop that stops nothing looks like a fault
        stop = tr.add(gr.Button(t("stop"), variant="stop", interactive=False, elem_id="compare-stop"), "stop", "value")
        clear = tr.add(gr.Button(t("clear"), elem_id="compare-clear"), "clear", "value")
        export_md = tr.add(
            gr.DownloadButton(t("compare_export_md"), value=None, interactive=False, elem_id="compare-export-md"),
            "compare_export_md",
        )
        export_js = tr.add(
            gr.DownloadButton(t("compare_export_json"), value=None, interactive=False, elem_id="compare-export-json"),
            "compare_export_json",
        )
        share = share_button(tr, "compare")
    share_link = share_link_box(tr, "compare")
    return message, send, stop, clear, export_md, export_js, share, share_link


def _layout_votes(tr: Translations) -> tuple[list[Any], Any, Any, Any]:
    """The blind vote buttons (one per pane and a tie, shown in blind mode) and the reveal text."""
    with gr.Row(visible=False, elem_id="compare-votes") as vote_row:
        vote_buttons = [
            gr.Button(
                t("compare_vote_for", name=t("compare_blind_name", letter=LETTERS[i])),
                interactive=False,
                visible=i < MIN_PANES,
                elem_id=f"compare-vote-{LETTERS[i].lower()}",
            )
            for i in range(MAX_PANES)
        ]
        vote_tie = tr.add(
            gr.Button(t("compare_vote_tie"), interactive=False, elem_id="compare-vote-tie"), "compare_vote_tie", "value"
        )
    reveal = gr.Markdown("", elem_id="compare-reveal")
    return vote_buttons, vote_tie, vote_row, reveal


def _layout_boxes(
    playground: Playground, tr: Translations, flags: CancelFlags, vote_log: VoteLog, lang_state: Any
) -> tuple[Any, SettingsControls, LeaderboardView]:
    """The closed boxes below: shared settings, the leaderboard, the blind session."""
    with gr.Accordion(t("compare_shared_settings"), open=False, elem_id="compare-settings") as settings_acc:
        family_defaults = tr.add(
            gr.Checkbox(True, label=t("compare_family_defaults"), elem_id="compare-family-defaults"),
            "compare_family_defaults",
        )
        settings = settings_panel(
            playground.catalog.default.family, tr, "compare-shared", model=playground.catalog.default
        )
    tr.add(settings_acc, "compare_shared_settings")
    with gr.Accordion(t("compare_leaderboard"), open=False, elem_id="compare-leaderboard-box") as lb_acc:
        board_view = build_leaderboard_view(tr, vote_log, lang_state, model_names(playground))
    tr.add(lb_acc, "compare_leaderboard")
    with gr.Accordion(t("session_title"), open=False, elem_id="session-box") as session_acc:
        build_blind_session(playground, tr, flags, vote_log, lang_state)
    tr.add(session_acc, "session_title")
    return family_defaults, settings, board_view


def _layout(
    playground: Playground, tr: Translations, flags: CancelFlags, vote_log: VoteLog, lang_state: Any
) -> _Controls:
    """The intro, pane count and blind switch, the panes' settings and answers, the prompt, votes and boxes."""
    tr.add(gr.Markdown(t("compare_intro"), elem_id="compare-intro"), "compare_intro", "value")
    # two different models that run here where there are two; else a line on how to get a second one
    runnable = runnable_refs(playground)
    if len(runnable) < 2:
        tr.add(
            gr.Markdown(t("compare_one_model", model=offline_name(playground)), elem_id="compare-one-model"),
            "compare_one_model",
            "value",
            model=offline_name(playground),
        )
    with gr.Row():
        pane_count = tr.add(
            gr.Radio([2, 3, 4], value=MIN_PANES, label=t("compare_pane_count"), elem_id="compare-pane-count", scale=1),
            "compare_pane_count",
        )
        blind = tr.add(gr.Checkbox(False, label=t("compare_blind"), elem_id="compare-blind", scale=2), "compare_blind")
    question, panes = _layout_panes(_layout_pane_settings(playground, tr, runnable))
    message, send, stop, clear, export_md, export_js, share, share_link = _layout_ask(tr)
    vote_buttons, vote_tie, vote_row, reveal = _layout_votes(tr)
    family_defaults, settings, board_view = _layout_boxes(playground, tr, flags, vote_log, lang_state)
    rounds = gr.State([])
    return _Controls(
        pane_count,
        blind,
        panes,
        message,
        send,
        stop,
        clear,
        export_md,
        export_js,
        vote_buttons,
        vote_tie,
        vote_row,
        reveal,
        family_defaults,
        settings,
        board_view,
        rounds,
        question,
        share,
        share_link,
    )


# ---- the tab: events -----------------------------------------------------------------------------
def _events_pickers(c: _Controls, playground: Playground, lang_state: Any) -> None:
    """Each pane's family → variants → builds (a family brings its system prompt as the placeholder, its
    temperature and max new tokens); the shared settings and their reset."""
    default = playground.catalog.default

    def wire_pane(pane: PaneControls) -> None:
        def on_family(family_id: str, lang: str) -> list[Any]:
            fam, ref, dropdowns = family_picked(playground, family_id, lang)
            values = settings_values(fam)
            return [
                *dropdowns,
                gr.update(placeholder=fam.system_prompt),
                values[0],
                max_new_update(ref, values[3]),
            ]

        family_outputs = [pane.variant, pane.quant, pane.system, pane.temperature, pane.max_new_tokens]
        pane.family.input(
            guard_picker(on_family, family_outputs),
            [pane.family, lang_state],
            family_outputs,
            queue=False,
            api_visibility="private",
        )

        def on_variant(variant_id: str, lang: str, max_new: Any) -> list[Any]:
            ref, quants = variant_picked(playground, variant_id, lang)
            return [quants, max_new_update(ref, max_new)]

        pane.variant.input(
            guard_picker(on_variant, [pane.quant, pane.max_new_tokens]),
            [pane.variant, lang_state, pane.max_new_tokens],
            [pane.quant, pane.max_new_tokens],
            queue=False,
            api_visibility="private",
        )

    for pane in c.panes:
        wire_pane(pane)

    # the shared sliders hold one family's values; touching one means "use these for every model"
    for control in c.settings.inputs:
        if control is not c.settings.top_tokens:  # a view of the answers, no sampling setting
            control.input(lambda: False, None, [c.family_defaults], queue=False, api_visibility="private")
    c.settings.reset.click(
        lambda: [True, *settings_values(default.family)],
        None,
        [c.family_defaults, *c.settings.inputs],
        queue=False,
        api_visibility="private",
    )


async def _play_round(
    playground: Playground,
    flags: CancelFlags,
    conv: list[Round],
    round_: Round,
    prepared: Any,
    count: int,
    lang: str,
    request: gr.Request,
) -> AsyncIterator[list[Any]]:
    """A round streamed into the panes; updates for _Controls.stream_outputs."""
    session = session_of(request)
    flag = flags.start(session, SLOT)
    cleared = False
    # at once, before any model has answered (loading one takes seconds): the new prompt in every pane, the box
    # empty, the old votes and downloads gone; the page scrolls each pane to the new question (page_script.py)
    yield [*pane_updates(conv, lang), conv, "", *vote_updates(conv, count, lang), *no_export()]
    try:
        async with contextlib.aclosing(stream_round(playground, round_, prepared, flag)) as updates:
            async for _ in updates:
                if getattr(flag, "reason", None) == "clear":
                    cleared = True
                    break
                unchanged_votes = [gr.update()] * (MAX_PANES + 1)  # the vote buttons and the tie
                views = pane_updates(conv, lang)
                # the reveal, the two downloads, the share button and its link stay as they are
                yield [*views, conv, gr.update(), *unchanged_votes, *[gr.update()] * 5]
    finally:
        flags.finish(session, SLOT, flag)
    if cleared or getattr(flag, "reason", None) == "clear":
        yield [*pane_updates([], lang), [], gr.update(), *vote_updates([], count, lang), *no_export()]
        return
    yield [
        *pane_updates(conv, lang),
        conv,
        gr.update(),
        *vote_updates(conv, count, lang),
        *(await export_updates(conv, lang)),
    ]


def _events_generation(c: _Controls, playground: Playground, flags: CancelFlags, lang_state: Any) -> None:
    """Enter or Send: one prompt to every pane's model (shuffled in blind mode), streamed; Stop ends it; Clear
    (or a pane's trash icon) forgets the comparison."""
    settings, panes, stream_outputs = c.settings, c.panes, c.stream_outputs

    def unchanged() -> list[Any]:
        return [gr.update()] * len(stream_outputs)

    async def send_prompt(
        request: gr.Request, oauth_token: gr.OAuthToken | None, *values: Any
    ) -> AsyncIterator[list[Any]]:
        text, conv_in, count_in, blind_in, lang, fam_defaults, *rest = values
        shared = settings_by_name(rest[: len(settings.inputs)])
        count = pane_count_of(count_in)
        is_blind = bool(blind_in)
        try:
            check_message(text)
            check_rate(request)
        except InputError as exc:
            warn(t(exc.key, lang, **exc.params), lang)
            yield unchanged()
            return
        specs = pane_specs(rest[len(settings.inputs) :], count, shared, fam_defaults)
        try:
            # the pickers take typed values: every id is checked against the catalog before anything runs, and a
            # blind round (whose vote counts) takes only builds that run here
            ids = await asyncio.to_thread(catalog_ids, playground, [s.model_id for s in specs], is_blind)
        except InputError as exc:
            warn(t(exc.key, lang, **exc.params), lang)
            yield unchanged()
            return
        specs = [PaneSpec(i, s.system_prompt, s.settings) for s, i in zip(specs, ids, strict=True)]
        if is_blind and len({spec.model_id for spec in specs}) < len(specs):
            # a blind comparison of a model with itself would tell nothing; with one model here, say how to get one
            enough = len(runnable_refs(playground)) >= 2
            warn(t("err_blind_same_model", lang) if enough else second_model_hint(playground, lang), lang)
            yield unchanged()
            return
        conv: list[Round] = list(conv_in or [])
        # a blind round stands alone: earlier answers would give the models away, and after a blind
        # round the panes hold different models than their pickers say
        if is_blind or (conv and conv[-1].blind):
            conv = []
        if is_blind:
            specs = shuffled(specs)
        histories = [pane_history(conv, i) for i in range(count)]
        recorded = pane_settings(shared, None, bool(fam_defaults))
        if fam_defaults:
            recorded["family_defaults"] = True
        # a signed-in visitor's token (Gradio's OAuth): an opaque credential for the service, never kept in a round
        credential = credential_of(oauth_token)
        prepared = prepare_panes(playground, specs, text, histories, lang, credential)
        round_ = new_round(playground, specs, text, prepared, lang, recorded, is_blind)
        tag_prompt(round_)
        conv.append(round_)
        async for update in _play_round(playground, flags, conv, round_, prepared, count, lang, request):
            yield update

    send_inputs = [
        c.message,
        c.rounds,
        c.pane_count,
        c.blind,
        lang_state,
        c.family_defaults,
        *settings.inputs,
        *[x for p in panes for x in p.inputs],
    ]
    probs = {
        "fn": probs_updates,
        "inputs": [c.rounds, lang_state],
        "outputs": [p.probs for p in panes],
        "queue": False,
        "show_progress": "hidden",
        "api_visibility": "private",
    }
    run_with_stop([c.message.submit, c.send.click], send_prompt, send_inputs, stream_outputs, c.stop, after=probs)
    lang_state.change(**probs)

    def stop_all(request: gr.Request) -> None:
        flags.stop(session_of(request), SLOT)

    c.stop.click(stop_all, None, None, queue=False, api_visibility="private")

    def clear_all(count_in: Any, lang: str, request: gr.Request) -> list[Any]:
        flags.stop(session_of(request), SLOT, reason="clear")
        return [*pane_updates([], lang), [], "", *vote_updates([], pane_count_of(count_in), lang), *no_export()]

    clear_inputs = [c.pane_count, lang_state]
    c.clear.click(clear_all, clear_inputs, stream_outputs, queue=False, api_visibility="private").then(**probs)
    # a pane's own trash icon must forget the comparison too, not only hide that pane's messages
    for pane in panes:
        pane.chatbot.clear(clear_all, clear_inputs, stream_outputs, queue=False, api_visibility="private").then(**probs)


def _events_votes(c: _Controls, vote_log: VoteLog, lang_state: Any) -> None:
    """A vote after a blind round: saved once per round and viewer, the models revealed, the leaderboard redrawn."""
    vote_outputs = c.vote_outputs

    def make_vote(choice: str) -> Callable[..., Any]:
        async def vote(conv: list[Round], count_in: Any, lang: str, request: gr.Request) -> list[Any]:
            if not await save_vote(vote_log, conv[-1] if conv else None, choice, request, lang):
                return [gr.update()] * len(vote_outputs)
            count = pane_count_of(count_in)
            return [
                *pane_updates(conv, lang),
                conv,
                *vote_updates(conv, count, lang),
                *(await export_updates(conv, lang)),
            ]

        return vote

    board_view = c.board_view
    board_inputs = [lang_state, *board_view.inputs]
    for i, button in enumerate(c.all_votes):
        choice = LETTERS[i] if i < len(c.vote_buttons) else TIE
        button.click(
            make_vote(choice), [c.rounds, c.pane_count, lang_state], vote_outputs, api_visibility="private"
        ).then(board_view.update, board_inputs, board_view.outputs, api_visibility="private")


def _events_view(c: _Controls, playground: Playground, lang_state: Any) -> None:
    """The pane count shows and hides panes, blind mode the vote row; the language relabels pickers and panes."""
    panes = c.panes

    def on_count(count_in: Any, conv: list[Round], lang: str) -> list[Any]:
        count = pane_count_of(count_in)
        visible = [gr.update(visible=i < count) for i in range(MAX_PANES)]
        return [*visible, *visible, *vote_updates(conv or [], count, lang)[:MAX_PANES]]

    c.pane_count.change(
        on_count,
        [c.pane_count, c.rounds, lang_state],
        [*[p.column for p in panes], *[p.picker_column for p in panes], *c.vote_buttons],
        queue=False,
        api_visibility="private",
    )

    def on_blind(on: Any, count_in: Any, lang: str, *picked: Any) -> list[Any]:
        """Blind mode on: the visible panes get different models that run here (each pane keeps its own where it
        can); with fewer than two, a warning says how to get a second one."""
        count = pane_count_of(count_in)
        ids = [picked_id(str(picked[2 * i]), str(picked[2 * i + 1])) for i in range(MAX_PANES)]
        updates: list[Any] = [gr.update(visible=bool(on)), *[gr.update()] * (PANE_PICKS * MAX_PANES + 1)]
        if not on or len(set(ids[:count])) == count:
            return updates
        running = [ref.id for ref in runnable_refs(playground)]
        if len(running) < 2:
            warn(second_model_hint(playground, lang), lang)
            return updates
        count = min(count, len(running))
        chosen = [m if m in running and m not in ids[:i] else None for i, m in enumerate(ids[:count])]
        spare = [m for m in running if m not in chosen]
        chosen = [m if m is not None else spare.pop(0) for m in chosen]
        for i, model_id in enumerate(chosen):
            if model_id != ids[i]:
                ref = playground.catalog.get(model_id) or playground.catalog.default
                at = 1 + PANE_PICKS * i
                updates[at : at + PANE_PICKS] = [
                    ref.family.id,
                    *pickers_relabelled(playground, ref.family.id, ref.variant.id, ref.quant.id, lang),
                    gr.update(placeholder=ref.family.system_prompt),
                    max_new_update(ref, settings_values(ref.family)[3]),
                ]
        updates[-1] = count
        return updates

    pane_picks = [x for p in panes for x in (p.family, p.variant, p.quant, p.system, p.max_new_tokens)]
    c.blind.input(
        on_blind,
        [c.blind, c.pane_count, lang_state, *[x for p in panes for x in (p.variant, p.quant)]],
        [c.vote_row, *pane_picks, c.pane_count],
        api_visibility="private",  # queued: a warning toast reaches the page only from a queued event
        show_progress="hidden",
    )

    def on_lang(lang: str, conv: list[Round], count_in: Any, *picked: Any) -> list[Any]:
        conv = conv or []
        dropdowns = [pickers_relabelled(playground, *picked[3 * i : 3 * i + 3], lang) for i in range(MAX_PANES)]
        boxes = [gr.update(label=t("compare_pane_settings", lang, n=i + 1)) for i in range(MAX_PANES)]
        return [
            *[quants for _, quants in dropdowns],
            *[variants for variants, _ in dropdowns],
            *boxes,
            *pane_updates(conv, lang),
            *vote_updates(conv, pane_count_of(count_in), lang),
        ]

    lang_outputs = [
        *[p.quant for p in panes],
        *[p.variant for p in panes],
        *[p.settings_box for p in panes],
        *[p.chatbot for p in panes],
        *[p.stats for p in panes],
        c.question,
        *c.all_votes,
        c.reveal,
    ]
    lang_state.change(
        guard_picker(on_lang, lang_outputs),
        [lang_state, c.rounds, c.pane_count, *[x for p in panes for x in (p.family, p.variant, p.quant)]],
        lang_outputs,
        queue=False,
        api_visibility="private",
    )


def build_compare_tab(
    playground: Playground,
    tr: Translations,
    flags: CancelFlags,
    lang_state: Any,
    votes: VoteLog | None = None,
) -> CompareTab:
    vote_log = votes or VoteLog(known=CatalogIds(playground.catalog))
    vote_log.start_hub_push()  # only with PLAYGROUND_VOTES_HF_REPO (README, blind leaderboard)
    c = _layout(playground, tr, flags, vote_log, lang_state)
    _events_pickers(c, playground, lang_state)
    _events_generation(c, playground, flags, lang_state)
    _events_votes(c, vote_log, lang_state)
    _events_view(c, playground, lang_state)
    wire_share(c.share, c.share_link, [c.rounds, lang_state], lambda conv: conv)
    return CompareTab(
        c.message,
        c.pane_count,
        c.blind,
        c.panes,
        c.rounds,
        c.settings,
        c.family_defaults,
        c.all_votes,
        c.board_view.html,
        c.export_md,
        c.export_js,
    )
