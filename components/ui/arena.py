"""The blind leaderboard view (ratings, intervals, win-rate matrix, filters, exports) and the blind session mode."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from components.core import availability
from components.core.service import Playground
from components.core.validation import LIMITS
from components.features import ratings, style_control
from components.features.batch import CATEGORIES, EvalPrompt, prompt_sets
from components.features.compare import (
    LETTERS,
    TIE,
    PaneSpec,
    Round,
    VoteLog,
    catalog_ids,
    new_round,
    prepare_panes,
    stream_round,
    viewer_of,
)
from components.features.ratings import FREE_CATEGORY, Leaderboard, Selection
from components.serving.limits import check_rate
from components.ui.chat import render
from components.ui.common import CancelFlags, Translations, credential_of, run_with_stop, session_of, warn
from components.ui.share import no_link, share_button, share_button_update, share_link_box, wire_share
from components.vocabulary.catalog import QuantKind
from components.vocabulary.generation import InputError
from components.vocabulary.messages import MESSAGES, Msg, t

log = logging.getLogger(__name__)

SLOT = "session"
ALL = ""  # the filters' "all" choice
EXPORT_ROOT = Path(tempfile.gettempdir()) / "playground-leaderboard-exports"
SESSION_MAX_NEW_TOKENS = 256
#: The most models a blind session draws its pairs from.
SESSION_MAX_MODELS = 32


# ---- pure view helpers (tested without a browser) ----------------------------------------------
def _num(value: float, lang: str, digits: int = 0) -> str:
    text = f"{value:.{digits}f}"
    return text.replace(".", ",") if lang == "de" else text


def _percent(share: float, lang: str) -> str:
    return f"{_num(share * 100, lang)} %"


def _share(share: float | None, n: int, lang: str) -> str:
    """ "90 % von 20" (a leaderboard column's share of n answers); "–" where none was measured."""
    return "–" if share is None else t("lb_share_value", lang, share=_num(share * 100, lang), n=n)


def _cell_colour(share: float) -> str:
    """Red (row mostly lost) through white to blue (row mostly won); light enough for dark text."""
    share = min(1.0, max(0.0, share))
    if share < 0.5:
        k = (0.5 - share) / 0.5
        rgb = (255, round(255 - 62 * k), round(255 - 66 * k))
    else:
        k = (share - 0.5) / 0.5
        rgb = (round(255 - 57 * k), round(255 - 36 * k), 255)
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def tally_text(board: Leaderboard, lang: str) -> str:
    """What the leaderboard counts, and every reason a vote did not count, with numbers."""
    c = board.tally
    parts = [t("lb_counted", lang, votes=c.votes, battles=c.battles, models=len(board.rows))]
    reasons = [t(f"lb_reason_{reason}", lang, n=n) for reason in ratings.REASONS if (n := c.not_counted.get(reason, 0))]
    if reasons:
        parts.append(t("lb_not_counted", lang, reasons="; ".join(reasons)))
    if c.outside:
        parts.append(t("lb_outside", lang, n=c.outside))
    return " ".join(parts)


def model_names(playground: Playground) -> dict[str, str]:
    """Each build's name for people ("EM German LeoLM Mistral · GGUF Q4_K_M"), by its id."""
    return {ref.id: ref.label for ref in playground.catalog.refs()}


def leaderboard_html(board: Leaderboard, lang: str, names: Mapping[str, str] | None = None) -> str:
    """The ranking table, the pairwise win-rate matrix with battles per pair, and the tally, as HTML. Models are shown
    by their names (`names`, by id; the id where there is none), the id as the tooltip."""
    esc = html.escape
    names = names or {}

    def name(model_id: str) -> str:
        return f'<span title="{esc(model_id)}">{esc(names.get(model_id, model_id))}</span>'

    out = [f'<div class="lb-view" lang="{lang}">']
    out.append(f'<p class="lb-method">{esc(t("lb_method", lang, rounds=board.rounds))}</p>')
    if board.method == style_control.STYLE:
        weights = {k: _num(v, lang, 2) for k, v in (board.style or dict.fromkeys(style_control.FEATURES, 0.0)).items()}
        out.append(f'<p class="lb-method-style">{esc(t("lb_method_style_note", lang, **weights))}</p>')
    out.append(f'<p class="lb-tally">{esc(tally_text(board, lang))}</p>')
    if not board.rows:
        out.append(f'<p class="lb-empty"><strong>{esc(t("lb_empty", lang))}</strong></p></div>')
        return "".join(out)
    heads = ["lb_rank", "lb_model", "lb_rating", "lb_interval", "lb_battles", "lb_record", "lb_german"]
    heads += ["lb_register_kept", "lb_not_separable"]
    out.append('<table class="lb-ratings"><thead><tr>')
    out += [f'<th scope="col">{esc(t(h, lang))}</th>' for h in heads]
    out.append("</tr></thead><tbody>")
    for row in board.rows:
        separable = ", ".join(names.get(m, m) for m in row.not_separable_from) or t("lb_separable_all", lang)
        columns = board.columns.get(row.model) or {}
        out.append(
            "<tr>"
            f"<td>{row.rank}</td><td>{name(row.model)}</td>"
            f"<td><strong>{_num(row.rating, lang)}</strong></td>"
            f"<td>{_num(row.lower, lang)} – {_num(row.upper, lang)}</td>"
            f"<td>{row.battles}</td>"
            f"<td>{esc(t('lb_record_value', lang, wins=row.wins, losses=row.losses, ties=row.ties))}</td>"
            f"<td>{esc(_share(columns.get('german'), columns.get('german_n', 0), lang))}</td>"
            f"<td>{esc(_share(columns.get('register_kept'), columns.get('register_n', 0), lang))}</td>"
            f"<td>{esc(separable)}</td>"
            "</tr>"
        )
    out.append("</tbody></table>")
    out.append(f'<p class="lb-columns-note"><small>{esc(t("lb_columns_note", lang))}</small></p>')
    out.append(f'<p class="lb-matrix-title"><strong>{esc(t("lb_matrix", lang))}</strong></p>')
    out.append('<table class="lb-matrix"><thead><tr>')
    out.append(f'<th scope="col">{esc(t("lb_matrix_corner", lang))}</th>')
    out += [f'<th scope="col">{name(m)}</th>' for m in board.models]
    out.append("</tr></thead><tbody>")
    for i, model in enumerate(board.models):
        out.append(f'<tr><th scope="row">{name(model)}</th>')
        for j in range(len(board.models)):
            share = board.win_rate[i][j]
            if i == j:
                out.append('<td class="lb-self">–</td>')
            elif share is None:
                out.append(f'<td class="lb-none">{esc(t("lb_no_battles", lang))}</td>')
            else:
                n = board.pair_battles[i][j]
                out.append(
                    f'<td style="background:{_cell_colour(share)};color:#1f2937">'
                    f"{_percent(share, lang)} <small>({esc(t('lb_pair_battles', lang, n=n))})</small></td>"
                )
        out.append("</tr>")
    out.append("</tbody></table>")
    out.append(f'<p class="lb-matrix-note"><small>{esc(t("lb_matrix_note", lang))}</small></p></div>')
    return "".join(out)


def vote_note(round_: Round | None, lang: str) -> str:
    """After a vote: why it does not count for the leaderboard, or "" when it counts."""
    if round_ is None or not round_.blind or round_.winner is None:
        return ""
    models = {p.model_id for p in round_.panes if p.model_id}
    if len(models) < 2:
        return t("lb_vote_not_counted_same", lang)
    return ""


def method_choices(lang: str) -> list[tuple[str, str]]:
    """The leaderboard's two ratings: plain Bradley-Terry, or controlled for length and style."""
    return [(t("lb_method_plain", lang), style_control.PLAIN), (t("lb_method_style", lang), style_control.STYLE)]


def category_choices(lang: str) -> list[tuple[str, str]]:
    return [
        (t("lb_all", lang), ALL),
        *[(t(f"category_{c}", lang), c) for c in CATEGORIES],
        (t("category_free", lang), FREE_CATEGORY),
    ]


def set_label(name: str, lang: str) -> str:
    """A prompt set's name for people (`prompt_set_<name>` in messages.py), else its file name."""
    key = f"prompt_set_{name}"
    return t(key, lang) if key in MESSAGES else name


def set_choices(lang: str, sets: dict[str, list[EvalPrompt]] | None = None) -> list[tuple[str, str]]:
    names = sorted(sets if sets is not None else prompt_sets())
    return [(t("lb_all", lang), ALL), *[(set_label(n, lang), n) for n in names]]


def session_choices(
    records: list[dict[str, Any]], lang: str, known: Container[str] | None = None
) -> list[tuple[str, str]]:
    first: dict[str, str] = {}
    counts: dict[str, int] = {}
    for record in records:
        vote = ratings.parse_vote(record, known)
        if isinstance(vote, ratings.Vote) and vote.session:
            first.setdefault(vote.session, vote.ts or "")
            counts[vote.session] = counts.get(vote.session, 0) + 1
    items = [
        (t("lb_session_choice", lang, id=s[:8], ts=(first[s] or "")[:16].replace("T", " "), n=counts[s]), s)
        for s in first
    ]
    return [(t("lb_all", lang), ALL), *reversed(items)]


def variant_choices_of(
    records: list[dict[str, Any]], lang: str, known: Container[str] | None = None
) -> list[tuple[str, str]]:
    """Variants with at least two builds among the votes that count (what does 4-bit cost against fp16?)."""
    builds: dict[str, set[str]] = {}
    for record in records:
        vote = ratings.parse_vote(record, known)
        if isinstance(vote, ratings.Vote):
            for model in vote.models:
                builds.setdefault(ratings.variant_of(model), set()).add(model)
    names = sorted(v for v, b in builds.items() if len(b) >= 2)
    return [(t("lb_all", lang), ALL), *[(n, n) for n in names]]


def write_board_exports(
    board: Leaderboard, records: list[dict[str, Any]], known: Container[str] | None = None
) -> list[str]:
    """Votes and leaderboard as CSV and JSON files in a fresh temporary folder (Gradio serves them); a CSV cell that a
    spreadsheet would run as a formula starts with `'` (ratings.spreadsheet_safe)."""
    EXPORT_ROOT.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - 3600
    for old in EXPORT_ROOT.iterdir():
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                for f in old.iterdir():
                    f.unlink()
                old.rmdir()
    folder = Path(tempfile.mkdtemp(prefix="lb-", dir=EXPORT_ROOT))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    files = {
        f"votes-{stamp}.csv": ratings.votes_csv(records, known),
        f"votes-{stamp}.json": json.dumps(ratings.vote_rows(records, known), ensure_ascii=False, indent=1),
        f"leaderboard-{stamp}.csv": ratings.board_csv(board),
        f"leaderboard-{stamp}.json": json.dumps(board.as_dict(), ensure_ascii=False, indent=1),
    }
    paths = []
    for name, text in files.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    return paths


# ---- the leaderboard view ------------------------------------------------------------------------
@dataclass
class LeaderboardView:
    html: Any
    prompt_set: Any
    category: Any
    session: Any
    variant: Any
    refresh: Any
    exports: list[Any]
    update: Callable[..., Any]
    method: Any = None  # plain Bradley-Terry or controlled for length and style (style_control.METHODS)

    @property
    def inputs(self) -> list[Any]:
        return [self.prompt_set, self.category, self.session, self.variant, self.method]

    @property
    def outputs(self) -> list[Any]:
        return [self.html, self.prompt_set, self.category, self.session, self.variant, self.method, *self.exports]


def build_leaderboard_view(
    tr: Translations, vote_log: VoteLog, lang_state: Any, names: Mapping[str, str] | None = None
) -> LeaderboardView:
    """Filters, the rendered leaderboard and four downloads; `update(lang, *filters)` refreshes them all."""
    with gr.Row():
        prompt_set = tr.add(
            gr.Dropdown(set_choices("de"), value=ALL, label=t("lb_filter_set"), elem_id="lb-set"), "lb_filter_set"
        )
        category = tr.add(
            gr.Dropdown(category_choices("de"), value=ALL, label=t("lb_filter_category"), elem_id="lb-category"),
            "lb_filter_category",
        )
        session = tr.add(
            gr.Dropdown([(t("lb_all"), ALL)], value=ALL, label=t("lb_filter_session"), elem_id="lb-session"),
            "lb_filter_session",
        )
        variant = tr.add(
            gr.Dropdown([(t("lb_all"), ALL)], value=ALL, label=t("lb_filter_variant"), elem_id="lb-variant"),
            "lb_filter_variant",
        )
    method = tr.add(
        gr.Radio(method_choices("de"), value=style_control.PLAIN, label=t("lb_method_choice"), elem_id="lb-method"),
        "lb_method_choice",
    )
    board_html = gr.HTML("", elem_id="compare-leaderboard")
    with gr.Row():
        refresh = tr.add(
            gr.Button(t("compare_leaderboard_refresh"), size="sm", elem_id="compare-leaderboard-refresh"),
            "compare_leaderboard_refresh",
            "value",
        )
        exports = [
            tr.add(gr.DownloadButton(t(key), value=None, size="sm", elem_id=f"lb-export-{name}"), key)
            for key, name in (
                ("lb_export_votes_csv", "votes-csv"),
                ("lb_export_votes_json", "votes-json"),
                ("lb_export_board_csv", "board-csv"),
                ("lb_export_board_json", "board-json"),
            )
        ]

    async def update(
        lang: str,
        set_in: Any,
        cat_in: Any,
        sess_in: Any,
        var_in: Any,
        request: gr.Request | None = None,
        method_in: Any = style_control.PLAIN,  # after the request: callers that pass one by position keep working
    ) -> list[Any]:
        records, _ = await vote_log.records()
        sets = await asyncio.to_thread(prompt_sets)
        known = vote_log.known
        choices = {
            "set": set_choices(lang, sets),
            "cat": category_choices(lang),
            "sess": session_choices(records, lang, known),
            "var": variant_choices_of(records, lang, known),
        }

        def pick(value: Any, options: list[tuple[str, str]]) -> str:
            return value if isinstance(value, str) and value in {v for _, v in options} else ALL

        values = [pick(set_in, choices["set"]), pick(cat_in, choices["cat"])]
        values += [pick(sess_in, choices["sess"]), pick(var_in, choices["var"])]
        selection = Selection.of(prompt_set=values[0], category=values[1], session=values[2], variant=values[3])
        chosen = method_in if method_in in style_control.METHODS else style_control.PLAIN
        try:
            if (selection != Selection() or chosen != style_control.PLAIN) and request is not None:
                check_rate(request)  # a filter is a computation of its own; the default board is shared by all
            board = await vote_log.leaderboard(selection, method=chosen)
        except InputError as exc:
            warn(t(exc.key, lang, **exc.params), lang)
            return [gr.update()] * (1 + len(choices) + 1 + 4)  # the board, four filters, the method, four downloads
        try:
            files = await asyncio.to_thread(write_board_exports, board, records, known)
            downloads = [gr.update(value=f, interactive=True) for f in files]
        except OSError as exc:
            log.warning("leaderboard export failed: %s", exc)
            downloads = [gr.update(interactive=False)] * 4
        return [
            leaderboard_html(board, lang, names),
            *[gr.update(choices=c, value=v) for c, v in zip(choices.values(), values, strict=True)],
            gr.update(choices=method_choices(lang), value=chosen),
            *downloads,
        ]

    view = LeaderboardView(board_html, prompt_set, category, session, variant, refresh, exports, update, method)
    inputs = [lang_state, *view.inputs]
    refresh.click(update, inputs, view.outputs, api_visibility="private")
    for control in view.inputs:
        control.input(update, inputs, view.outputs, api_visibility="private")

    async def initial(lang: str) -> list[Any]:
        return await update(lang, ALL, ALL, ALL, ALL)

    # on page load and whenever the language changes (only lang_state as input: a filter's own change
    # is handled by its .input above)
    gr.on(None, initial, [lang_state], view.outputs, api_visibility="private")
    return view


# ---- the blind session mode ----------------------------------------------------------------------
@dataclass
class SessionRun:
    """One meeting's blind session: its prompts, the models to draw pairs from, where it stands."""

    id: str
    prompt_set: str
    prompts: list[EvalPrompt]
    models: list[str]
    max_new_tokens: int
    index: int = 0
    rounds: list[Round] = field(default_factory=list)

    @property
    def current(self) -> Round | None:
        return self.rounds[-1] if self.rounds else None

    @property
    def settled(self) -> bool:
        """The current round is over: voted on, or ended without an answer in every pane (no vote possible)."""
        last = self.current
        return last is not None and (last.winner is not None or (last.done and bool(last.unanswered)))

    @property
    def finished(self) -> bool:
        return len(self.rounds) == len(self.prompts) and self.settled


def second_model_refusal(playground: Playground) -> InputError:
    """Why a blind comparison cannot run yet and how to get a second model here, in whole sentences: the build to
    download (the smallest German GGUF that may be downloaded), else how to bring its file or allow downloads, and
    the servers' variables."""
    refs = list(playground.catalog.refs())
    states = {ref.id: playground.availability(ref) for ref in refs}
    running = [ref.label for ref in refs if states[ref.id].ok and states[ref.id].state == availability.READY]
    german_gguf = sorted(
        (ref for ref in refs if ref.quant.kind is QuantKind.gguf and not ref.variant.offline and ref.quant.repo),
        key=lambda ref: ref.quant.size_gb or 1e9,
    )
    fetchable = [ref for ref in german_gguf if states[ref.id].ok and states[ref.id].state == availability.DOWNLOAD]
    blocked = [ref for ref in german_gguf if states[ref.id].state == availability.DOWNLOAD]
    how: Msg
    if fetchable:
        size = states[fetchable[0].id].params.get("size", 0.0)
        how = Msg("blind_how_download", model=fetchable[0].label, size=size)
    elif blocked:  # allowed, but the Hub cannot be reached: the file has to come another way
        how = Msg("blind_how_cache", file=blocked[0].quant.file or "", repo=blocked[0].quant.repo or "")
    else:
        how = Msg("blind_how_allow", example=(german_gguf or refs)[0].id)
    model: Any = ", ".join(running) if running else Msg("blind_no_model")
    return InputError("err_blind_needs_two", model=model, how=how, server=Msg("blind_how_server"))


def second_model_hint(playground: Playground, lang: str) -> str:
    """second_model_refusal's message in `lang`."""
    refusal = second_model_refusal(playground)
    return t(refusal.key, lang, **refusal.params)


def runnable_models(playground: Playground) -> list[tuple[str, str]]:
    """(label, id) of every build that runs here: servers and builds shipped in a package first (no download)."""
    refs = [ref for ref in playground.catalog.refs() if playground.availability(ref).ok]
    refs.sort(key=lambda ref: 0 if ref.quant.kind is QuantKind.remote else 1 if ref.quant.package else 2)
    return [(ref.label, ref.id) for ref in refs]


def default_pair(models: list[tuple[str, str]]) -> list[str]:
    """The first two runnable builds of two different variants (a pair of one variant compares quantizations)."""
    chosen: list[str] = []
    for _, model_id in models:
        if all(ratings.variant_of(model_id) != ratings.variant_of(c) for c in chosen):
            chosen.append(model_id)
        if len(chosen) == 2:
            break
    return chosen


def check_session(
    playground: Playground, set_name: Any, category: Any, count: Any, models: Any, max_new: Any
) -> SessionRun:
    """Everything from the page checked on the server; InputError names what is wrong."""
    sets = prompt_sets()
    if not isinstance(set_name, str) or set_name not in sets:
        raise InputError("err_session_set")
    prompts = [p for p in sets[set_name] if not category or p.category == category]
    if not prompts:
        raise InputError("err_session_no_prompts")
    try:
        n = int(count)
    except (TypeError, ValueError):
        n = len(prompts)
    prompts = prompts[: max(1, min(n, len(prompts)))]
    typed = models if isinstance(models, (list, tuple)) else []
    if len(typed) > SESSION_MAX_MODELS:
        raise InputError("err_compare_models", count=len(typed), max=SESSION_MAX_MODELS)
    # typed values of the multiselect: each checked against the catalog (and able to run) before anything runs
    chosen = list(dict.fromkeys(catalog_ids(playground, typed, runnable=True)))
    if len(chosen) < 2:
        if len(runnable_models(playground)) < 2:  # not a wrong choice: there is no second model to choose
            raise second_model_refusal(playground)
        raise InputError("err_session_models")
    try:
        tokens = int(max_new)
    except (TypeError, ValueError):
        tokens = SESSION_MAX_NEW_TOKENS
    tokens = max(1, min(LIMITS.max_new_tokens, tokens))
    return SessionRun(uuid.uuid4().hex[:12], set_name, prompts, chosen, tokens)


def session_progress(run: SessionRun | None, lang: str) -> str:
    if run is None or not run.rounds:
        return ""
    prompt = run.prompts[len(run.rounds) - 1]
    head = t("session_progress", lang, n=len(run.rounds), total=len(run.prompts), title=prompt.title)
    if prompt.category:
        head += f" · {t(f'category_{prompt.category}', lang)}"
    quoted = "\n".join(f"> {line}" if line else ">" for line in prompt.text.splitlines())
    return f"**{head}**\n\n{quoted}"


def voted_line(round_: Round, lang: str) -> str:
    """What the viewer voted for, after a blind round ("Modell A", or a tie)."""
    if round_.winner == TIE:
        choice = t("compare_vote_tie", lang)
    else:
        choice = t("compare_blind_name", lang, letter=round_.winner)
    return t("compare_voted", lang, choice=choice)


def reveal_lines(round_: Round, lang: str) -> list[str]:
    """One Markdown list line per pane after a vote: its blind name and the model behind it."""
    lines = []
    for p in round_.panes:
        name = t("compare_blind_name", lang, letter=LETTERS[p.pane])
        lines.append(f"- {t('compare_reveal_line', lang, name=name, model=p.model_label or p.model_id, id=p.model_id)}")
    return lines


def session_reveal(run: SessionRun | None, lang: str) -> str:
    round_ = run.current if run else None
    if round_ is None:
        return ""
    if round_.winner is None:
        if not round_.done:
            return ""
        if round_.unanswered:  # no vote for this round; Next goes on
            lines = [t("err_vote_unanswered", lang, letters=round_.unanswered)]
            if run and run.finished:
                lines += ["", t("session_done", lang, n=len(run.rounds))]
            return "\n".join(lines)
        return t("compare_vote_hint", lang)
    lines = [voted_line(round_, lang), *reveal_lines(round_, lang)]
    if run and run.finished:
        lines += ["", t("session_done", lang, n=len(run.rounds))]
    return "\n".join(lines)


@dataclass
class SessionView:
    start: Any
    panes: list[Any]
    votes: list[Any]
    next: Any
    board: Any


@dataclass
class _SessionControls:
    """The session's controls, made by its layout and wired by its events."""

    set_name: Any
    category: Any
    count: Any
    chosen: Any
    max_new: Any
    start: Any
    progress: Any
    panes: list[Any]
    votes: list[Any]
    next_button: Any
    stop: Any
    reveal: Any
    board: Any
    state: Any
    share: Any
    share_link: Any

    @property
    def outputs(self) -> list[Any]:
        """What session_view updates, in its order."""
        return [
            self.state,
            self.progress,
            *self.panes,
            *self.votes,
            self.next_button,
            self.share,
            self.share_link,
            self.reveal,
            self.board,
        ]


def _session_layout(playground: Playground, tr: Translations) -> _SessionControls:
    """The intro, the prompt set, category, count, models and max new tokens; Start; two blind panes, the votes,
    Next and Stop; the reveal and the session's leaderboard."""
    sets = prompt_sets()
    models = runnable_models(playground)
    tr.add(gr.Markdown(t("session_intro"), elem_id="session-intro"), "session_intro", "value")
    with gr.Row():
        set_name = tr.add(
            gr.Dropdown(
                [(set_label(n, "de"), n) for n in sorted(sets)],
                value=next(iter(sorted(sets)), None),
                label=t("session_set"),
                elem_id="session-set",
            ),
            "session_set",
        )
        category = tr.add(
            gr.Dropdown(
                [(t("lb_all"), ALL), *[(t(f"category_{c}"), c) for c in CATEGORIES]],
                value=ALL,
                label=t("session_category"),
                elem_id="session-category",
            ),
            "session_category",
        )
        count = tr.add(
            gr.Slider(1, 20, value=3, step=1, label=t("session_count"), elem_id="session-count"), "session_count"
        )
    with gr.Row():
        chosen = tr.add(
            gr.Dropdown(
                models,
                value=default_pair(models),
                multiselect=True,
                label=t("session_models"),
                elem_id="session-models",
                scale=3,
            ),
            "session_models",
        )
        max_new = tr.add(
            gr.Slider(
                1,
                LIMITS.max_new_tokens,
                value=min(SESSION_MAX_NEW_TOKENS, LIMITS.max_new_tokens),
                step=1,
                label=t("max_new_tokens"),
                elem_id="session-max-new-tokens",
                scale=1,
            ),
            "max_new_tokens",
        )
    start = tr.add(gr.Button(t("session_start"), variant="primary", elem_id="session-start"), "session_start", "value")
    progress = gr.Markdown("", elem_id="session-progress")
    with gr.Row(equal_height=False):
        panes = [
            gr.Chatbot(label=t("compare_blind_name", letter=LETTERS[i]), elem_id=f"session-pane-{i + 1}", height=320)
            for i in range(2)
        ]
    with gr.Row():
        votes = [
            gr.Button(
                t("compare_vote_for", name=t("compare_blind_name", letter=LETTERS[i])),
                interactive=False,
                elem_id=f"session-vote-{LETTERS[i].lower()}",
            )
            for i in range(2)
        ]
        votes.append(gr.Button(t("compare_vote_tie"), interactive=False, elem_id="session-vote-tie"))
        next_button = gr.Button(t("session_next"), interactive=False, elem_id="session-next")
        # idle until a prompt runs (as in the chat and compare tabs): a red Stop that stops nothing looks like a fault
        stop = tr.add(gr.Button(t("stop"), variant="stop", interactive=False, elem_id="session-stop"), "stop", "value")
        share = share_button(tr, "session")
    reveal = gr.Markdown("", elem_id="session-reveal")
    share_link = share_link_box(tr, "session")
    board = gr.HTML("", elem_id="session-board")
    state = gr.State(None)
    return _SessionControls(
        set_name,
        category,
        count,
        chosen,
        max_new,
        start,
        progress,
        panes,
        votes,
        next_button,
        stop,
        reveal,
        board,
        state,
        share,
        share_link,
    )


def session_view(run: SessionRun | None, lang: str, board_html: Any = None) -> list[Any]:
    """The session's page for _SessionControls.outputs: the two panes (blind), the votes, Next, the reveal and,
    where given, the session's leaderboard."""
    round_ = run.current if run else None
    chatbots = []
    for i in range(2):
        label = t("compare_blind_name", lang, letter=LETTERS[i])
        content: list[dict[str, str]] = []
        if round_ is not None and i < len(round_.panes):
            label = round_.name(i, lang)
            p = round_.panes[i]
            status = t("compare_working", lang) if p.status else None  # a loading text could name the model
            item = {
                "user": round_.prompt,
                "assistant": p.text,
                "status": status,
                "error": p.error,
                "error_by_lang": p.error_by_lang,
            }
            content = render([{**item, "stats": p.stats, "language": p.language, "register": p.register}], lang)
        chatbots.append(gr.update(value=content, label=label))
    open_vote = bool(round_ and round_.votable)
    more = bool(run and run.settled and not run.finished)
    buttons = [
        gr.update(
            interactive=open_vote,
            value=t("compare_vote_for", lang, name=t("compare_blind_name", lang, letter=letter)),
        )
        for letter in LETTERS[:2]
    ]
    buttons.append(gr.update(interactive=open_vote, value=t("compare_vote_tie", lang)))
    return [
        run,
        session_progress(run, lang),
        *chatbots,
        *buttons,
        gr.update(interactive=more, value=t("session_next", lang)),
        share_button_update(run.rounds if run else None),
        gr.update() if round_ is not None and round_.winner is not None else no_link(),
        session_reveal(run, lang),
        gr.update() if board_html is None else board_html,
    ]


async def session_board(vote_log: VoteLog, run: SessionRun, lang: str, names: Mapping[str, str] | None = None) -> str:
    """The leaderboard of this session's votes alone, with its title."""
    title = t("session_board_title", lang, n=len(run.rounds))
    try:
        result = await vote_log.leaderboard(Selection(session=run.id))
    except InputError as exc:  # too many other leaderboards being computed: say so instead of failing the vote
        return f"<h3>{html.escape(title)}</h3><p>{html.escape(t(exc.key, lang, **exc.params))}</p>"
    return f"<h3>{html.escape(title)}</h3>" + leaderboard_html(result, lang, names)


async def _play(
    playground: Playground,
    flags: CancelFlags,
    run: SessionRun,
    lang: str,
    request: gr.Request,
    credential: str | None = None,
) -> AsyncIterator[list[Any]]:
    """Runs the session's next prompt on a random pair of its models, streaming both answers. `credential`: the
    signed-in visitor's token, into each request only (never into the round or its vote)."""
    try:
        check_rate(request)
    except InputError as exc:
        warn(t(exc.key, lang, **exc.params), lang)
        yield session_view(run, lang)
        return
    prompt = run.prompts[len(run.rounds)]
    pair = random.SystemRandom().sample(run.models, 2)
    specs = [PaneSpec(m, prompt.system_prompt, {"max_new_tokens": run.max_new_tokens}) for m in pair]
    prepared = prepare_panes(playground, specs, prompt.text, None, lang, credential)
    round_ = new_round(playground, specs, prompt.text, prepared, lang, {"max_new_tokens": run.max_new_tokens}, True)
    round_.session, round_.prompt_set = run.id, run.prompt_set
    round_.prompt_id, round_.title, round_.category = prompt.id, prompt.title, prompt.category
    run.rounds.append(round_)
    session = session_of(request)
    flag = flags.start(session, SLOT)
    try:
        async with contextlib.aclosing(stream_round(playground, round_, prepared, flag)) as updates:
            async for _ in updates:
                yield session_view(run, lang)
    finally:
        flags.finish(session, SLOT, flag)
    yield session_view(run, lang)


def _session_events_play(
    c: _SessionControls, playground: Playground, flags: CancelFlags, vote_log: VoteLog, lang_state: Any
) -> None:
    """Start (the settings checked on the server), Next, the votes and Stop."""
    outputs = c.outputs

    async def start_session(
        lang: str,
        set_in: Any,
        cat_in: Any,
        count_in: Any,
        models_in: Any,
        max_in: Any,
        request: gr.Request,
        oauth_token: gr.OAuthToken | None,
    ) -> AsyncIterator[list[Any]]:
        try:
            run = await asyncio.to_thread(check_session, playground, set_in, cat_in, count_in, models_in, max_in)
        except InputError as exc:
            warn(t(exc.key, lang, **exc.params), lang)
            yield [gr.update()] * len(outputs)
            return
        first = True
        credential = credential_of(oauth_token)
        async for update in _play(playground, flags, run, lang, request, credential):
            if first:  # a new session: the last session's leaderboard goes away
                update[-1] = ""
                first = False
            yield update

    async def next_prompt(
        run: SessionRun | None, lang: str, request: gr.Request, oauth_token: gr.OAuthToken | None
    ) -> AsyncIterator[list[Any]]:
        if run is None or not run.settled or run.finished:
            warn(t("err_session_next", lang), lang)
            yield [gr.update()] * len(outputs)
            return
        credential = credential_of(oauth_token)
        async for update in _play(playground, flags, run, lang, request, credential):
            yield update

    def make_vote(choice: str) -> Callable[..., Any]:
        async def vote(run: SessionRun | None, lang: str, request: gr.Request) -> list[Any]:
            if not await save_vote(vote_log, run.current if run else None, choice, request, lang):
                return [gr.update()] * len(outputs)
            assert run is not None
            board_html = await session_board(vote_log, run, lang, model_names(playground)) if run.finished else None
            return session_view(run, lang, board_html)

        return vote

    start_inputs = [lang_state, c.set_name, c.category, c.count, c.chosen, c.max_new]
    run_with_stop([c.start.click], start_session, start_inputs, outputs, c.stop)
    run_with_stop([c.next_button.click], next_prompt, [c.state, lang_state], outputs, c.stop)
    for button, choice in zip(c.votes, [*LETTERS[:2], TIE], strict=True):
        button.click(make_vote(choice), [c.state, lang_state], outputs, api_visibility="private")

    def stop_session(request: gr.Request) -> None:
        flags.stop(session_of(request), SLOT)

    c.stop.click(stop_session, None, None, queue=False, api_visibility="private")


def _session_events_page(c: _SessionControls, playground: Playground, vote_log: VoteLog, lang_state: Any) -> None:
    """On page load the models that run now; the language relabels the session (and its leaderboard)."""

    def refresh_models() -> Any:
        return gr.update(choices=runnable_models(playground))

    gr.on(None, refresh_models, None, [c.chosen], api_visibility="private")

    async def on_lang(run: SessionRun | None, lang: str, cat_in: Any, set_in: Any) -> list[Any]:
        cats = [(t("lb_all", lang), ALL), *[(t(f"category_{cat}", lang), cat) for cat in CATEGORIES]]
        finished = run is not None and run.finished
        board_html = await session_board(vote_log, run, lang, model_names(playground)) if finished else None
        sets = [(set_label(n, lang), n) for n in sorted(prompt_sets())]
        return [
            *session_view(run, lang, board_html),
            gr.update(choices=cats, value=cat_in),
            gr.update(choices=sets, value=set_in),
        ]

    lang_state.change(
        on_lang,
        [c.state, lang_state, c.category, c.set_name],
        [*c.outputs, c.category, c.set_name],
        api_visibility="private",
    )


def build_blind_session(
    playground: Playground, tr: Translations, flags: CancelFlags, vote_log: VoteLog, lang_state: Any
) -> SessionView:
    """A meeting's blind session: a fixed list of prompts, each to a random pair of the chosen models, one after
    the other; after the last vote, the leaderboard of this session alone."""
    c = _session_layout(playground, tr)
    _session_events_play(c, playground, flags, vote_log, lang_state)
    _session_events_page(c, playground, vote_log, lang_state)
    wire_share(c.share, c.share_link, [c.state, lang_state], lambda run: run.rounds if run else None)
    return SessionView(c.start, c.panes, c.votes, c.next_button, c.board)


async def save_vote(vote_log: VoteLog, round_: Round | None, choice: str, request: gr.Request, lang: str) -> bool:
    """A blind vote saved, once per round and viewer (a second click, even one racing the first, changes nothing);
    False, after a warning that says why, where it was refused or could not be written."""
    try:
        await vote_log.vote(round_, choice, viewer_of(session_of(request)))
    except InputError as exc:
        warn(t(exc.key, lang, **exc.params), lang)
        return False
    except OSError as exc:
        log.warning("vote not saved: %s", exc)
        warn(t("err_vote_write", lang, detail=type(exc).__name__), lang)
        return False
    return True


def tag_prompt(round_: Round) -> None:
    """A typed prompt that is one of a prompt set's (same text) counts for that prompt and its category."""
    if round_.prompt_id is not None:
        return
    text = round_.prompt.strip()
    for name, prompts in prompt_sets().items():
        for prompt in prompts:
            if prompt.text.strip() == text:
                round_.prompt_set, round_.prompt_id = name, prompt.id
                round_.category, round_.title = prompt.category, prompt.title
                return
