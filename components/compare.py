"""Side-by-side comparison without Gradio: N models answer one prompt at once, results, export, blind votes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components.engines.base import Failed, Finished, Status, TextDelta
from components.messages import number, t
from components.prompts import Turn
from components.service import Playground, Prepared, decimal, format_stats
from components.validation import InputError, check_message

MAX_PANES = 4
MIN_PANES = 2
LETTERS = "ABCDEFGH"
#: How often a running comparison looks at its Stop flag (Stop must reach every pane within a second).
CANCEL_POLL_S = 0.05
#: After Stop, how long panes may take to wind down before their streams are closed from outside.
STOP_GRACE_S = 3.0
TIE = "tie"
DEFAULT_VOTES_FILE = "data/votes.jsonl"
#: Names of the settings a request carries, in the order reports show them.
SETTING_NAMES = ("temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty", "seed", "stop")
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
    stats: dict[str, Any] | None = None
    elapsed_s: float | None = None
    done: bool = False

    @property
    def ok(self) -> bool:
        return self.done and self.error is None


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

    @property
    def done(self) -> bool:
        return all(p.done for p in self.panes)

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
    """A pane's settings: the shared ones (or only seed and stop when each family keeps its own
    recommended values), with the pane's own temperature / max new tokens on top."""
    base = {k: v for k, v in shared.items() if not family_defaults or k in ("seed", "stop")}
    base.update({k: v for k, v in (override or {}).items() if v is not None})
    return base


def shuffled(specs: Sequence[PaneSpec], rng: random.Random | None = None) -> list[PaneSpec]:
    """The blind-mode assignment of the chosen models to panes, new for every prompt."""
    order = list(specs)
    (rng or random.SystemRandom()).shuffle(order)
    return order


# ---- running a round -----------------------------------------------------------------------------
def prepare_panes(
    playground: Playground,
    specs: Sequence[PaneSpec],
    message: str,
    histories: Sequence[Sequence[Turn]] | None = None,
    lang: str = "de",
) -> list[Prepared | InputError]:
    """Checks and builds each pane's request; a refused pane gets its InputError, the others go on."""
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
        ref = playground.catalog.get(spec.model_id)
        pane = PaneResult(pane=i, model_id=ref.id if ref else str(spec.model_id), model_label=ref.label if ref else "")
        if isinstance(prep, InputError):
            pane.error = t(prep.key, lang, **prep.params)
            pane.error_key = prep.key
            pane.done = True
        else:
            request = prep.request
            settings = asdict(request.settings)
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
    from components.streaming import merge_streams

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

    def apply(batch: list[tuple[int, Any]]) -> None:
        for i, event in batch:
            pane = round_.panes[i]
            if isinstance(event, TextDelta):
                pane.text += event.text
                pane.status = None
            elif isinstance(event, Status):
                pane.status = t(event.key, lang, **event.params)
            elif isinstance(event, Finished):
                pane.stats = event.stats.as_dict()
                finish(pane)
            elif isinstance(event, Failed):
                pane.error = t(event.key, lang, **event.params)
                pane.error_key = event.key
                if event.stats:
                    pane.stats = event.stats.as_dict()
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
            [None if stat(p, "tokens_per_s") is None else decimal(stat(p, "tokens_per_s"), lang) for p in panes],
        )
        row(t("export_tokens", lang), [stat(p, "completion_tokens") for p in panes])
        row(t("export_prompt_tokens", lang), [stat(p, "prompt_tokens") for p in panes])
        row(t("export_total", lang), [None if p["elapsed_s"] is None else f"{p['elapsed_s']:.2f} s" for p in panes])
        row(
            t("export_finish", lang),
            [
                None if stat(p, "finish_reason") is None else t(f"finish_{stat(p, 'finish_reason')}", lang)
                for p in panes
            ],
        )
        if any(p["settings"] for p in panes):
            for name in SETTING_NAMES:
                row(
                    t(SETTING_LABELS.get(name, name), lang),
                    [_fmt_setting((p["settings"] or {}).get(name), lang) for p in panes],
                )
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
                lines += ["", f"<sub>{format_stats(p['stats'], lang)}</sub>"]
    return "\n".join(lines).rstrip() + "\n"


# ---- blind votes ---------------------------------------------------------------------------------
def votes_path() -> Path:
    return Path(os.environ.get("PLAYGROUND_VOTES_FILE") or DEFAULT_VOTES_FILE)


def vote_record(round_: Round, winner: str) -> dict[str, Any]:
    """The JSONL line of one vote: when, what was asked with which settings, who answered what, who won."""
    winner_model = None
    if winner != TIE:
        winner_model = round_.panes[LETTERS.index(winner)].model_id
    return {
        "ts": now_iso(),
        "prompt": round_.prompt,
        "lang": round_.lang,
        "shared_settings": round_.shared_settings,
        "panes": [
            {
                "letter": LETTERS[p.pane],
                "model": p.model_id,
                "settings": p.settings,
                "system_prompt": p.system_prompt,
                "output": p.text,
                "error": p.error,
                "stats": p.stats,
            }
            for p in round_.panes
        ],
        "winner": winner,
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
    value = str(winner).strip()
    if value.lower() == TIE:
        return TIE
    value = value.upper()
    if len(value) != 1 or value not in LETTERS[: len(round_.panes)]:
        raise InputError("err_vote_invalid", winner=str(winner)[:20])
    return value


class VoteLog:
    """Votes as JSON lines in one file; appends hold a lock (threads) and an advisory file lock (processes)."""

    _lock = threading.Lock()

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._path = Path(path) if path else None

    @property
    def path(self) -> Path:
        return self._path or votes_path()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        path = self.path
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                try:
                    import fcntl
                except ImportError:  # not on Windows; the thread lock still serializes this process
                    fcntl = None  # type: ignore[assignment]
                if fcntl is not None:
                    fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    fh.write(line)
                    fh.flush()
                finally:
                    if fcntl is not None:
                        fcntl.flock(fh, fcntl.LOCK_UN)

    def read(self) -> list[dict[str, Any]]:
        """Every readable vote; a broken line (a crash mid-write, a hand edit) is skipped."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict):
                out.append(item)
        return out

    async def add(self, record: dict[str, Any]) -> None:
        # file I/O off the event loop: a slow disk must not stall every stream of the server
        await asyncio.to_thread(self.append, record)

    async def leaderboard(self) -> list[LeaderRow]:
        return leaderboard(await asyncio.to_thread(self.read))


@dataclass(frozen=True)
class LeaderRow:
    model: str
    wins: int
    losses: int
    ties: int

    @property
    def games(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def win_rate(self) -> float:
        """Wins over all games (a tie counts as a game without a win)."""
        return self.wins / self.games if self.games else 0.0


def leaderboard(records: Sequence[dict[str, Any]]) -> list[LeaderRow]:
    """Wins, losses and ties per model. The winner beats every other model of its vote; a tie is a tie
    for every model of its vote; a model that sat in two panes of one vote counts once."""
    wins: dict[str, int] = {}
    losses: dict[str, int] = {}
    ties: dict[str, int] = {}
    for rec in records:
        panes = rec.get("panes")
        winner = rec.get("winner")
        if not isinstance(panes, list) or not isinstance(winner, str):
            continue
        models = list(dict.fromkeys(str(p.get("model")) for p in panes if isinstance(p, dict) and p.get("model")))
        if len(models) < 2 and winner == TIE:
            continue
        if winner == TIE:
            for m in models:
                ties[m] = ties.get(m, 0) + 1
            continue
        winner_model = rec.get("winner_model")
        if not winner_model:
            letters = {p.get("letter"): p.get("model") for p in panes if isinstance(p, dict)}
            winner_model = letters.get(winner)
        if winner_model not in models:
            continue
        others = [m for m in models if m != winner_model]
        if not others:
            continue
        wins[winner_model] = wins.get(winner_model, 0) + 1
        for m in others:
            losses[m] = losses.get(m, 0) + 1
    names = set(wins) | set(losses) | set(ties)
    rows = [LeaderRow(m, wins.get(m, 0), losses.get(m, 0), ties.get(m, 0)) for m in names]
    return sorted(rows, key=lambda r: (-r.win_rate, -r.wins, -r.games, r.model))
