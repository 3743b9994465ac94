"""Side-by-side comparison without Gradio: N models answer one prompt at once, results, export, blind votes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import random
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Container, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components.core.service import Playground, Prepared
from components.core.validation import LIMITS, check_message
from components.features import ratings, style_control
from components.features.ratings import VOTE_SCHEMA, Leaderboard, LeaderboardCache, Selection
from components.features.style_control import PLAIN
from components.vocabulary.answer import Answer, finish_text, language_text, register_text, stats_line
from components.vocabulary.catalog import Catalog
from components.vocabulary.generation import InputError
from components.vocabulary.messages import in_every_language, number, t
from components.vocabulary.prompts import Turn
from components.vocabulary.settings import SETTING_NAMES

try:
    import fcntl
except ImportError:  # not on Windows: the thread lock still serializes one process
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

MAX_PANES = 4
MIN_PANES = 2
LETTERS = "ABCDEFGH"
#: How often a running comparison looks at its Stop flag (Stop must reach every pane within a second).
CANCEL_POLL_S = 0.05
#: After Stop, how long panes may take to wind down before their streams are closed from outside.
STOP_GRACE_S = 3.0
TIE = "tie"
DEFAULT_VOTES_FILE = "data/votes.jsonl"
#: Message keys of settings whose page label is too long (or means something else) for a table row.
SETTING_LABELS = {"seed": "export_seed", "stop": "export_stop"}


# ---- the results model ---------------------------------------------------------------------------
@dataclass
class PaneSpec:
    """What one pane asks: a model id, its system prompt (None = family default) and its settings."""

    model_id: str
    system_prompt: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class PaneResult:
    """One pane's answer to one prompt, as it grows and when it is done."""

    pane: int
    model_id: str
    model_label: str = ""
    system_prompt: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    raw_prompt: str = ""
    text: str = ""
    status: str | None = None
    error: str | None = None
    error_key: str | None = None
    #: the error in each language (the page's language may change after the pane failed); not exported
    error_by_lang: dict[str, str] | None = None
    stats: dict[str, Any] | None = None
    elapsed_s: float | None = None
    done: bool = False
    #: the finished answer's language {code, de_share, other}, register {form, mixed, system, kept} and style
    #: (components/core/answer_traits.py); None until it is done
    language: dict[str, Any] | None = None
    register: dict[str, Any] | None = None
    style: dict[str, Any] | None = None
    #: when asked for (top_tokens), once done: Answer.token_probs(), or the note saying none came (not exported)
    token_probs: list[dict[str, Any]] | None = None
    token_probs_note: str | None = None

    @property
    def ok(self) -> bool:
        return self.done and self.error is None

    @property
    def answered(self) -> bool:
        """Done with an answer and without an error: only such a pane can be judged in a vote."""
        return self.ok and bool(self.text.strip())


@dataclass
class Round:
    """One prompt sent to every pane. In blind mode the panes are "Modell A, B, …" until a vote."""

    prompt: str
    panes: list[PaneResult]
    lang: str = "de"
    shared_settings: dict[str, Any] = field(default_factory=dict)
    blind: bool = False
    revealed: bool = True
    winner: str | None = None  # a pane's letter, "tie", or None before a vote
    started_at: str = ""
    finish_order: list[int] = field(default_factory=list)
    prompt_id: str | None = None
    title: str | None = None
    round_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    session: str | None = None  # a blind session's id (components/ui/compare.py, session mode)
    prompt_set: str | None = None
    category: str | None = None

    @property
    def done(self) -> bool:
        return all(p.done for p in self.panes)

    @property
    def unanswered(self) -> str:
        """The blind letters of the panes that gave no answer ("B", "A, C"); "" when every pane answered."""
        return ", ".join(LETTERS[p.pane] for p in self.panes if not p.answered)

    @property
    def votable(self) -> bool:
        """A blind round that has ended with an answer in every pane and no vote yet."""
        return self.blind and self.done and self.winner is None and not self.unanswered

    def name(self, pane: int, lang: str | None = None) -> str:
        """The pane's heading: its model, or "Modell A" while a blind round is unrevealed."""
        letter = LETTERS[pane]
        if self.blind:
            blind_name = t("compare_blind_name", lang or self.lang, letter=letter)
            if not self.revealed:
                return blind_name
            return f"{blind_name}: {self.panes[pane].model_label or self.panes[pane].model_id}"
        return f"{pane + 1} · {self.panes[pane].model_label or self.panes[pane].model_id}"

    def to_dict(self, reveal: bool | None = None) -> dict[str, Any]:
        """Plain data; a blind round before its vote hides everything that names a model."""
        show = self.revealed if reveal is None else reveal
        panes = []
        for p in self.panes:
            item = asdict(p)
            item.pop("error_by_lang")  # the report has the error in the report's language
            item.pop("token_probs"), item.pop("token_probs_note")  # the page's reading aid, not the report's
            item["name"] = self.name(p.pane) if show else t("compare_blind_name", self.lang, letter=LETTERS[p.pane])
            item["letter"] = LETTERS[p.pane]
            if not show:
                for key in ("model_id", "model_label", "system_prompt", "raw_prompt", "settings", "status"):
                    item[key] = None
            panes.append(item)
        return {
            "prompt_id": self.prompt_id,
            "title": self.title,
            "prompt": self.prompt,
            "started_at": self.started_at,
            "blind": self.blind,
            "revealed": show,
            "winner": self.winner,
            "shared_settings": self.shared_settings,
            "finish_order": [LETTERS[i] for i in self.finish_order],
            "panes": panes,
        }


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def pane_history(rounds: Sequence[Round], pane: int) -> list[Turn]:
    """One pane's own conversation: every earlier round in which that pane produced answer text."""
    turns = []
    for r in rounds:
        if pane < len(r.panes) and r.panes[pane].text:
            turns.append(Turn(r.prompt, r.panes[pane].text))
    return turns


def pane_settings(
    shared: dict[str, Any], override: dict[str, Any] | None = None, family_defaults: bool = False
) -> dict[str, Any]:
    """A pane's settings: the shared ones (or only seed, stop and top_tokens when each family keeps its own
    recommended values), with the pane's own temperature / max new tokens on top."""
    base = {k: v for k, v in shared.items() if not family_defaults or k in ("seed", "stop", "top_tokens")}
    base.update({k: v for k, v in (override or {}).items() if v is not None})
    return base


def shuffled(specs: Sequence[PaneSpec], rng: random.Random | None = None) -> list[PaneSpec]:
    """The blind-mode assignment of the chosen models to panes, new for every prompt."""
    order = list(specs)
    (rng or random.SystemRandom()).shuffle(order)
    return order


# ---- running a round -----------------------------------------------------------------------------
def catalog_ids(playground: Playground, model_ids: Iterable[Any], runnable: bool = False) -> list[str]:
    """Each model id checked against the playground's catalog (remote builds from the environment included) before a
    round starts, as the catalog writes it. Raises InputError: err_unknown_model for an id it does not know;
    with `runnable` (a blind round, whose votes count), err_session_model_unavailable for a build that cannot run
    here now."""
    out = []
    for model_id in model_ids:
        ref = playground.resolve(model_id)
        if runnable and playground.why_not(ref, "de"):
            raise InputError("err_session_model_unavailable", model=ref.label)
        out.append(ref.id)
    return out


class CatalogIds:
    """The catalog's model ids as a container (`id in CatalogIds(catalog)`), exactly as the catalog writes them."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def __contains__(self, model_id: object) -> bool:
        if not isinstance(model_id, str):
            return False
        ref = self.catalog.get(model_id)
        return ref is not None and ref.id == model_id

    def fingerprint(self) -> tuple[str, ...]:
        """What the ids are now (a cache key: a build registered later changes it)."""
        return tuple(sorted(ref.id for ref in self.catalog.refs()))


def prepare_panes(
    playground: Playground,
    specs: Sequence[PaneSpec],
    message: str,
    histories: Sequence[Sequence[Turn]] | None = None,
    lang: str = "de",
    credential: str | None = None,
) -> list[Prepared | InputError]:
    """Checks and builds each pane's request; a refused pane gets its InputError, the others go on. `credential`
    (a signed-in visitor's) goes into each request only (GenerationRequest.credential), never into the round."""
    out: list[Prepared | InputError] = []
    for i, spec in enumerate(specs):
        history = list(histories[i]) if histories and i < len(histories) else []
        try:
            out.append(
                playground.prepare(
                    spec.model_id,
                    message,
                    system_prompt=spec.system_prompt,
                    history=history,
                    lang=lang,
                    credential=credential,
                    **spec.settings,
                )
            )
        except InputError as exc:
            out.append(exc)
    return out


def new_round(
    playground: Playground,
    specs: Sequence[PaneSpec],
    message: str,
    prepared: Sequence[Prepared | InputError],
    lang: str = "de",
    shared_settings: dict[str, Any] | None = None,
    blind: bool = False,
) -> Round:
    panes = []
    for i, (spec, prep) in enumerate(zip(specs, prepared, strict=True)):
        ref = playground.resolve(spec.model_id)  # a round names catalog ids only (what a vote stores)
        pane = PaneResult(pane=i, model_id=ref.id, model_label=ref.label)
        if isinstance(prep, InputError):
            pane.error = t(prep.key, lang, **prep.params)
            pane.error_key = prep.key
            pane.error_by_lang = in_every_language(prep.key, **prep.params)
            pane.done = True
        else:
            request = prep.request
            settings = request.settings.model_dump()
            settings["stop"] = list(settings["stop"])
            pane.settings = settings
            pane.raw_prompt = prep.raw_prompt
            pane.system_prompt = request.messages[0]["content"] if request.messages[0]["role"] == "system" else ""
        panes.append(pane)
    return Round(
        prompt=message,
        panes=panes,
        lang=lang,
        shared_settings=dict(shared_settings or {}),
        blind=blind,
        revealed=not blind,
        started_at=now_iso(),
    )


async def stream_round(
    playground: Playground,
    round_: Round,
    prepared: Sequence[Prepared | InputError],
    cancel: threading.Event | None = None,
) -> AsyncIterator[Round]:
    """Streams every prepared pane at once and yields the round after each batch of events.

    Each pane runs in its own task (merge_streams), so a slow or failing pane never holds back
    the others. Setting `cancel` (Stop) sets every pane request's own cancel flag; panes that do
    not end within STOP_GRACE_S are closed from here, which cancels their engine streams.
    """
    from components.core.streaming import merge_streams

    lang = round_.lang
    start = time.perf_counter()
    live = {i: p for i, p in enumerate(prepared) if not isinstance(p, InputError)}
    flags = [p.request.cancel for p in live.values()]  # each pane keeps its own flag; Stop sets them all
    yield round_
    if not live:
        return

    def finish(pane: PaneResult) -> None:
        if not pane.done:
            pane.done = True
            pane.status = None
            pane.elapsed_s = round(time.perf_counter() - start, 4)
            round_.finish_order.append(pane.pane)

    answers = {i: Answer() for i in live}

    def apply(batch: list[tuple[int, Any]]) -> None:
        for i, event in batch:
            pane, answer = round_.panes[i], answers[i]
            answer.add(event)
            pane.text = answer.text
            pane.status = answer.status_text(lang)
            pane.stats = answer.stats
            if answer.sent is not None and answer.sent.prompt is not None:
                pane.raw_prompt = answer.sent.prompt  # rendered once the build's chat template was downloaded
            if answer.assessed is not None:
                pane.language = answer.assessed.language
                pane.register = answer.assessed.register
                pane.style = answer.assessed.style
            if answer.failed is not None:
                pane.error = answer.error_text(lang)
                pane.error_key = answer.failed.key
                pane.error_by_lang = answer.error_by_lang()
            if answer.done:
                pane.token_probs = answer.token_probs() if answer.probs else None
                pane.token_probs_note = answer.probs_note_text(lang)
                finish(pane)

    merged = merge_streams({i: playground.stream(p) for i, p in live.items()})
    pending: asyncio.Future[Any] | None = None
    stopped_at: float | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(merged))
            # wait without cancelling the merge on a timeout, so a quiet moment never ends the round
            done, _ = await asyncio.wait({pending}, timeout=CANCEL_POLL_S)
            if cancel is not None and cancel.is_set() and stopped_at is None:
                stopped_at = time.perf_counter()
                for flag in flags:
                    flag.set()
            if done:
                task, pending = pending, None
                try:
                    batch = task.result()
                except StopAsyncIteration:
                    break
                apply(batch)
                yield round_
            # a pane that keeps streaming after Stop is closed from here once its grace is over
            if stopped_at is not None and time.perf_counter() - stopped_at > STOP_GRACE_S:
                break
    finally:
        for i, prep in live.items():
            if not round_.panes[i].done:
                prep.request.cancel.set()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await merged.aclose()
        for i in live:
            pane = round_.panes[i]
            if not pane.done:
                pane.stats = pane.stats or {"finish_reason": "stopped", "completion_tokens": 0}
                finish(pane)
    yield round_


async def run_round(
    playground: Playground,
    specs: Sequence[PaneSpec],
    message: Any,
    histories: Sequence[Sequence[Turn]] | None = None,
    lang: str = "de",
    cancel: threading.Event | None = None,
    shared_settings: dict[str, Any] | None = None,
    blind: bool = False,
) -> AsyncIterator[Round]:
    """Checks the message (InputError if empty or too long), then streams one round over all panes."""
    text = check_message(message)
    if not 1 <= len(specs) <= MAX_PANES:
        raise InputError("err_compare_models", count=len(specs), max=MAX_PANES)
    catalog_ids(playground, (spec.model_id for spec in specs), runnable=blind)
    prepared = prepare_panes(playground, specs, text, histories, lang)
    round_ = new_round(playground, specs, text, prepared, lang, shared_settings, blind)
    # closed explicitly so that a consumer who stops early (closed tab, Clear) ends the engines at once
    async with contextlib.aclosing(stream_round(playground, round_, prepared, cancel)) as updates:
        async for update in updates:
            yield update


# ---- export --------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    text = "–" if value is None or value == "" else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _fmt_setting(value: Any, lang: str | None = None) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value) or "–"
    if isinstance(value, float) and lang:
        return number(value, lang)
    return "–" if value is None else str(value)


def _row_writer(lines: list[str]) -> Any:
    def row(label: str, values: list[Any]) -> None:
        lines.append(f"| {label} | " + " | ".join(_cell(v) for v in values) + " |")

    return row


def stat(pane: dict[str, Any], key: str) -> Any:
    return (pane.get("stats") or {}).get(key)


def export_dict(rounds: Sequence[Round], lang: str = "de", kind: str = "compare") -> dict[str, Any]:
    return {
        "format": "german-llm-playground/comparison",
        "version": 1,
        "kind": kind,
        "created": now_iso(),
        "lang": lang,
        "rounds": [r.to_dict() for r in rounds],
    }


def export_json(rounds: Sequence[Round], lang: str = "de", kind: str = "compare") -> str:
    return json.dumps(export_dict(rounds, lang, kind), ensure_ascii=False, indent=2)


def export_markdown(rounds: Sequence[Round], lang: str = "de", title: str | None = None) -> str:
    """Prompt, settings, a stats table with one column per model, then each answer in its own section."""
    lines = [f"# {title or t('export_title', lang)}", "", f"- {t('export_created', lang)}: {now_iso()}"]
    for n, r in enumerate(rounds, 1):
        data = r.to_dict()
        heading = t("export_round", lang, n=n)
        if r.title:
            heading += f": {r.title}"
        lines += ["", f"## {heading}", ""]
        if r.prompt_id:
            lines.append(f"- {t('export_prompt_id', lang)}: `{r.prompt_id}`")
        mode = t("export_mode_blind", lang) if r.blind else t("export_mode_open", lang)
        lines.append(f"- {t('export_mode', lang)}: {mode}")
        if r.blind and r.revealed and r.winner:
            winner = t("compare_vote_tie", lang) if r.winner == TIE else r.name(LETTERS.index(r.winner), lang)
            lines.append(f"- {t('export_vote', lang)}: {winner}")
        shared = ", ".join(
            f"{t(SETTING_LABELS.get(k, k), lang)} = {_fmt_setting(v, lang)}"
            for k, v in r.shared_settings.items()
            if v not in (None, "") and k != "family_defaults"
        )
        if r.shared_settings.get("family_defaults"):
            shared = t("export_family_defaults", lang) + (f"; {shared}" if shared else "")
        if shared:
            lines.append(f"- {t('export_shared_settings', lang)}: {shared}")
        lines += ["", f"**{t('export_prompt', lang)}:**", ""]
        lines += [f"> {line}" if line else ">" for line in r.prompt.splitlines()]
        panes = data["panes"]
        lines += ["", "| | " + " | ".join(_cell(p["name"]) for p in panes) + " |"]
        lines.append("|---|" + "---|" * len(panes))

        row = _row_writer(lines)
        row(t("export_model", lang), [f"`{p['model_id']}`" if p["model_id"] else None for p in panes])
        row(
            t("export_ttft", lang),
            [None if stat(p, "ttft_s") is None else f"{stat(p, 'ttft_s') * 1000:.0f} ms" for p in panes],
        )
        row(
            t("export_rate", lang),
            [None if stat(p, "tokens_per_s") is None else number(stat(p, "tokens_per_s"), lang, 1) for p in panes],
        )
        row(t("export_tokens", lang), [stat(p, "completion_tokens") for p in panes])
        row(t("export_prompt_tokens", lang), [stat(p, "prompt_tokens") for p in panes])
        row(t("export_total", lang), [None if p["elapsed_s"] is None else f"{p['elapsed_s']:.2f} s" for p in panes])
        row(
            t("export_finish", lang),
            [None if stat(p, "finish_reason") is None else finish_text(stat(p, "finish_reason"), lang) for p in panes],
        )
        if any(p["settings"] for p in panes):
            for name in SETTING_NAMES:
                row(
                    t(SETTING_LABELS.get(name, name), lang),
                    [_fmt_setting((p["settings"] or {}).get(name), lang) for p in panes],
                )
        row(t("export_language", lang), [language_text(p.get("language"), lang) for p in panes])
        row(t("export_register", lang), [register_text(p.get("register"), lang) for p in panes])
        row(t("export_error", lang), [p["error"] for p in panes])
        for p in panes:
            lines += ["", f"### {p['name']}", ""]
            if p["model_id"]:
                lines.append(f"`{p['model_id']}`")
                system = p["system_prompt"]
                lines.append("")
                lines.append(f"*{t('export_system', lang)}:* " + (_cell(system) if system else "–"))
                lines.append("")
            if p["error"]:
                lines += [f"{t('err_prefix', lang)}{p['error']}", ""]
            lines.append(p["text"] if p["text"] else f"*{t('export_no_answer', lang)}*")
            if p["stats"]:
                lines += ["", f"<sub>{stats_line(p['stats'], lang, p)}</sub>"]
    return "\n".join(lines).rstrip() + "\n"


# ---- blind votes ---------------------------------------------------------------------------------
# The votes file: one JSON object per line, schema VOTE_SCHEMA (components/features/ratings.py reads every
# version). Each line is appended with a single O_APPEND write and fsync while an exclusive file lock
# is held, so that concurrent visitors (threads or processes) never interleave, and a killed process
# leaves at most its own last line torn: the reader skips it, and the next writer ends it first.
def votes_path() -> Path:
    return Path(os.environ.get("PLAYGROUND_VOTES_FILE") or DEFAULT_VOTES_FILE)


def viewer_of(session_hash: str | None) -> str:
    """A pseudonym for one page session (the votes file never holds Gradio's session hash itself)."""
    digest = hashlib.sha256(f"playground-viewer:{session_hash or 'anonymous'}".encode()).hexdigest()
    return digest[:16]


#: Characters a vote record keeps of an answer and of an error (the prompt and the system prompt keep what the
#: request checks allowed: PLAYGROUND_MAX_MESSAGE_CHARS, PLAYGROUND_MAX_SYSTEM_CHARS).
MAX_OUTPUT_CHARS = 50_000
MAX_ERROR_CHARS = 500
#: Characters of JSON a record keeps of settings and stats (a few hundred when they are what the checks let through).
MAX_SETTINGS_JSON = 4_000


def _clip(value: Any, chars: int) -> str | None:
    return value[:chars] if isinstance(value, str) else None


def _small(value: Any) -> Any:
    """Settings or stats as they are when their JSON fits MAX_SETTINGS_JSON, else None."""
    try:
        fits = len(json.dumps(value, ensure_ascii=False, default=str)) <= MAX_SETTINGS_JSON
    except (TypeError, ValueError):
        fits = False
    return value if fits else None


def vote_record(round_: Round, winner: str, viewer: str | None = None) -> dict[str, Any]:
    """The JSONL line of one vote: when, what was asked with which settings, who answered what, who won.

    Every field has a cap (ratings.FIELD_CHARS, MAX_OUTPUT_CHARS, ...): one line stays a few hundred KB at most.
    """
    caps = ratings.FIELD_CHARS
    winner_model = None
    if winner != TIE:
        winner_model = round_.panes[LETTERS.index(winner)].model_id[: ratings.MAX_MODEL_ID_CHARS]
    return {
        "schema": VOTE_SCHEMA,
        "ts": now_iso(),
        "round_id": _clip(round_.round_id, caps["round_id"]),
        "viewer": _clip(viewer, caps["viewer"]),
        "session": _clip(round_.session, caps["session"]),
        "prompt_set": _clip(round_.prompt_set, caps["prompt_set"]),
        "prompt_id": _clip(round_.prompt_id, caps["prompt_id"]),
        "category": _clip(round_.category, caps["category"]),
        "prompt": _clip(round_.prompt, LIMITS.max_message_chars),
        "lang": _clip(round_.lang, caps["lang"]),
        "shared_settings": _small(round_.shared_settings),
        "panes": [
            {
                "letter": LETTERS[p.pane],
                "model": p.model_id[: ratings.MAX_MODEL_ID_CHARS],
                # what answered (a remote build): the model its server reported, and which server (replica)
                "served_model": _clip((p.stats or {}).get("served_model"), ratings.MAX_MODEL_ID_CHARS),
                "replica": _clip((p.stats or {}).get("replica"), caps["viewer"]),
                "settings": _small(p.settings),
                "system_prompt": _clip(p.system_prompt, LIMITS.max_system_chars),
                "output": _clip(p.text, MAX_OUTPUT_CHARS),
                "error": _clip(p.error, MAX_ERROR_CHARS),
                "stats": _small(p.stats),
                # what the leaderboard's columns and style control read (ratings.pane_traits)
                "language": _small(p.language),
                "register": _small(p.register),
                "style": _small(p.style),
            }
            for p in round_.panes[:MAX_PANES]
        ],
        "winner": winner[: caps["winner"]],
        "winner_model": winner_model,
    }


def check_vote(round_: Round | None, winner: Any) -> str:
    """The winner as a pane letter or "tie"; raises InputError when this round cannot take a vote."""
    if round_ is None or not round_.blind:
        raise InputError("err_vote_not_blind")
    if not round_.done:
        raise InputError("err_vote_not_ready")
    if round_.winner is not None:
        raise InputError("err_vote_twice")
    if round_.unanswered:
        # a failed or stopped pane gives nothing to judge: such a vote would rank a build that never answered
        raise InputError("err_vote_unanswered", letters=round_.unanswered)
    value = str(winner).strip()
    if value.lower() == TIE:
        return TIE
    value = value.upper()
    if len(value) != 1 or value not in LETTERS[: len(round_.panes)]:
        raise InputError("err_vote_invalid", winner=str(winner)[:20])
    return value


def _write_all(fd: int, data: bytes) -> None:
    """One write() for the whole line (O_APPEND puts it at the end atomically); a short write goes on."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class VoteLog:
    """The votes file: safe appends (thread lock + exclusive file lock + O_APPEND + fsync), torn-line-proof reads.

    `scheduler` is an optional huggingface_hub CommitScheduler whose lock every append also holds, so
    that a push to the Hub never reads a half-written line (see hub_scheduler()). `known` (CatalogIds of the
    playground's catalog) are the model ids a vote may name: a vote naming any other is not stored, and a line of
    the file naming one does not count ("unknown_model") and shows no more than its capped fields.
    """

    _lock = threading.Lock()  # shared by every VoteLog of the process
    _cache = LeaderboardCache()

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        scheduler: Any = None,
        known: Container[str] | None = None,
    ) -> None:
        self._path = Path(path) if path else None
        self.scheduler = scheduler
        self.known = known
        self._claims: set[tuple[str, str]] = set()
        self._claims_lock = threading.Lock()
        self._slim: tuple[Any, list[Any], int] | None = None
        self._slim_lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path or votes_path()

    def append(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        path = self.path
        hub_lock = getattr(self.scheduler, "lock", None) or contextlib.nullcontext()
        with self._lock, hub_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # other processes writing the same file wait here
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # a writer was killed mid-line: that torn line ends here, not in ours
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the file lock

    def read_lines(self) -> tuple[list[dict[str, Any]], int]:
        """Every readable record, and how many lines could not be read (torn by a crash, edited by hand)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return [], 0
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_SH)  # never a line that a writer is still writing
            with os.fdopen(os.dup(fd), "rb") as fh:
                raw = fh.read()
        finally:
            os.close(fd)
        out: list[dict[str, Any]] = []
        broken = 0
        lines = raw.split(b"\n")
        # a last line whose newline never made it is still a whole vote when it parses
        for line in lines:
            if not line.strip():
                continue
            try:
                item = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                broken += 1
                continue
            if isinstance(item, dict):
                out.append(item)
            else:
                broken += 1
        return out, broken

    def read(self) -> list[dict[str, Any]]:
        """Every readable vote; a broken line (a crash mid-write, a hand edit) is skipped."""
        return self.read_lines()[0]

    def votes(self) -> tuple[list[Any], int]:
        """What the leaderboard, its filters and exports read: every record slimmed to its capped fields
        (ratings.slim_record), and the number of unreadable lines; read once per state of the file."""
        state = (str(self.path), self._state())
        with self._slim_lock:
            if self._slim is not None and self._slim[0] == state:
                return self._slim[1], self._slim[2]
        records, broken = self.read_lines()
        slim = [ratings.slim_record(r) for r in records]
        with self._slim_lock:
            self._slim = (state, slim, broken)
        return slim, broken

    def _state(self) -> tuple[int, int]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return (0, 0)
        return (st.st_size, st.st_mtime_ns)

    def claim(self, round_id: str, viewer: str) -> bool:
        """Reserves the one vote of this viewer for this round; False when it is taken (a second click)."""
        key = (round_id, viewer)
        with self._claims_lock:
            if key in self._claims:
                return False
            self._claims.add(key)
            return True

    def release(self, round_id: str, viewer: str) -> None:
        with self._claims_lock:
            self._claims.discard((round_id, viewer))

    def start_hub_push(self) -> threading.Thread | None:
        """Starts the optional push to a dataset repository (hub_scheduler) in the background: reaching the
        Hub can take half a minute of retries, which must not hold up the app's start."""
        if not (os.environ.get("PLAYGROUND_VOTES_HF_REPO") or "").strip() or self.scheduler is not None:
            return None

        def start() -> None:
            self.scheduler = hub_scheduler(self.path)

        thread = threading.Thread(target=start, name="votes-hub-push", daemon=True)
        thread.start()
        return thread

    async def add(self, record: dict[str, Any]) -> None:
        # file I/O off the event loop: a slow disk must not stall every stream of the server
        await asyncio.to_thread(self.append, record)

    async def vote(self, round_: Round | None, choice: Any, viewer: str) -> str:
        """Checks, claims and stores one vote; the round is revealed only once the line is on disk.

        Raises InputError (err_vote_twice for a second click, even one that arrives while the first is
        being written), or OSError when the file cannot be written (the claim is released: try again).
        """
        winner = check_vote(round_, choice)
        assert round_ is not None
        if self.known is not None and not all(ratings.known_model(p.model_id, self.known) for p in round_.panes):
            raise InputError("err_vote_unknown_model")
        if not self.claim(round_.round_id, viewer):
            raise InputError("err_vote_twice")
        try:
            await self.add(vote_record(round_, winner, viewer))
        except BaseException:
            self.release(round_.round_id, viewer)
            raise
        round_.winner = winner
        round_.revealed = True
        return winner

    def _board_future(self, selection: Selection | None, rounds: int | None, method: str = PLAIN) -> Any:
        sel = selection or Selection()
        n = bootstrap_rounds() if rounds is None else rounds
        known = self.known

        def make() -> Leaderboard:
            records, broken = self.votes()
            return style_control.leaderboard(records, sel, n, unreadable=broken, known=known, method=method)

        fingerprint = getattr(known, "fingerprint", None)
        models = fingerprint() if callable(fingerprint) else (None if known is None else id(known))
        key = (str(self.path), self._state(), models, sel, n, method)
        # the board of every page load has its own lane: no filter or other `rounds` ever waits in front of it
        default = sel == Selection() and n == bootstrap_rounds() and method == PLAIN
        return self._cache.submit(key, make, priority=default)

    def board(self, selection: Selection | None = None, rounds: int | None = None, method: str = PLAIN) -> Leaderboard:
        """The leaderboard of the file as it is now: computed once per file state, selection, rounds and method
        (style_control.METHODS), however many ask at once (ratings.LeaderboardCache); raises ratings.LeaderboardBusy
        when too many other selections wait."""
        return self._board_future(selection, rounds, method).result()

    async def leaderboard(
        self, selection: Selection | None = None, rounds: int | None = None, method: str = PLAIN
    ) -> Leaderboard:
        """board(), awaited without holding a thread of the server while the computation waits or runs."""
        future = await asyncio.to_thread(self._board_future, selection, rounds, method)  # stat() is file I/O
        return await asyncio.wrap_future(future)

    async def records(self) -> tuple[list[Any], int]:
        """votes(), off the event loop."""
        return await asyncio.to_thread(self.votes)


def bootstrap_rounds() -> int:
    """PLAYGROUND_BOOTSTRAP_ROUNDS (default 1000, 50..10000): bootstrap samples behind each interval."""
    try:
        value = int(os.environ.get("PLAYGROUND_BOOTSTRAP_ROUNDS") or ratings.DEFAULT_ROUNDS)
    except ValueError:
        value = ratings.DEFAULT_ROUNDS
    return max(50, min(10000, value))


def hub_scheduler(path: Path | None = None) -> Any:
    """A huggingface_hub CommitScheduler that pushes the votes file to a dataset repository, or None.

    On when PLAYGROUND_VOTES_HF_REPO names a dataset (`user/name`); HF_TOKEN must be allowed to write
    to it; PLAYGROUND_VOTES_HF_EVERY is the interval in minutes (default 5). A Space's disk is empty
    after a restart, and the scheduler uploads the local file as it is: so the repository's file is
    downloaded first, and when that fails for any reason but "not there yet", nothing is pushed (the
    votes stay local) rather than overwriting the repository's votes with fewer.
    Untested against the Hub from this machine (no network).
    """
    repo = (os.environ.get("PLAYGROUND_VOTES_HF_REPO") or "").strip()
    if not repo:
        return None
    path = path or votes_path()
    try:
        from huggingface_hub import CommitScheduler, hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:
        log.warning("PLAYGROUND_VOTES_HF_REPO is set but huggingface_hub is missing: votes stay local")
        return None
    try:
        every = float(os.environ.get("PLAYGROUND_VOTES_HF_EVERY") or 5)
    except ValueError:
        every = 5.0
    path_in_repo = "votes"
    if not path.exists():
        try:
            downloaded = hf_hub_download(repo, f"{path_in_repo}/{path.name}", repo_type="dataset")
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(downloaded, path)
        except LocalEntryNotFoundError as exc:
            # offline or no network: huggingface_hub raises this subclass of EntryNotFoundError, which
            # must not pass for "no votes there yet"
            log.warning("votes not pushed to %s: the Hub cannot be reached (%s)", repo, type(exc).__name__)
            return None
        except (EntryNotFoundError, RepositoryNotFoundError):
            pass  # a new repository or no votes yet: the scheduler creates them
        except Exception as exc:  # no permission, ...: never overwrite the Hub's votes
            log.warning("votes not pushed to %s: could not read its votes first (%s)", repo, type(exc).__name__)
            return None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return CommitScheduler(
            repo_id=repo,
            repo_type="dataset",
            folder_path=path.parent,
            path_in_repo=path_in_repo,
            allow_patterns=[path.name],
            every=every,
            private=True,
        )
    except Exception as exc:  # creating the repository needs the Hub too
        log.warning("votes not pushed to %s: %s", repo, type(exc).__name__)
        return None
