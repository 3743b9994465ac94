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
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components.core.messages import in_every_language, number, t
from components.core.prompts import Turn
from components.core.service import Playground, Prepared, decimal, format_stats
from components.core.validation import InputError, check_message
from components.engines.base import Failed, Finished, Status, TextDelta
from components.features import ratings
from components.features.ratings import VOTE_SCHEMA, Leaderboard, LeaderboardCache, Selection

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
    #: the error in each language (the page's language may change after the pane failed); not exported
    error_by_lang: dict[str, str] | None = None
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
    round_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    session: str | None = None  # a blind session's id (components/ui/compare.py, session mode)
    prompt_set: str | None = None
    category: str | None = None

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
            item.pop("error_by_lang")  # the report has the error in the report's language
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
            pane.error_by_lang = in_every_language(prep.key, **prep.params)
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
                pane.error_by_lang = in_every_language(event.key, **event.params)
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


def vote_record(round_: Round, winner: str, viewer: str | None = None) -> dict[str, Any]:
    """The JSONL line of one vote: when, what was asked with which settings, who answered what, who won."""
    winner_model = None
    if winner != TIE:
        winner_model = round_.panes[LETTERS.index(winner)].model_id
    return {
        "schema": VOTE_SCHEMA,
        "ts": now_iso(),
        "round_id": round_.round_id,
        "viewer": viewer,
        "session": round_.session,
        "prompt_set": round_.prompt_set,
        "prompt_id": round_.prompt_id,
        "category": round_.category,
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


def _write_all(fd: int, data: bytes) -> None:
    """One write() for the whole line (O_APPEND puts it at the end atomically); a short write goes on."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class VoteLog:
    """The votes file: safe appends (thread lock + exclusive file lock + O_APPEND + fsync), torn-line-proof reads.

    `scheduler` is an optional huggingface_hub CommitScheduler whose lock every append also holds, so
    that a push to the Hub never reads a half-written line (see hub_scheduler()).
    """

    _lock = threading.Lock()  # shared by every VoteLog of the process
    _cache = LeaderboardCache()

    def __init__(self, path: str | os.PathLike[str] | None = None, scheduler: Any = None) -> None:
        self._path = Path(path) if path else None
        self.scheduler = scheduler
        self._claims: set[tuple[str, str]] = set()
        self._claims_lock = threading.Lock()

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

    def board(self, selection: Selection | None = None, rounds: int | None = None) -> Leaderboard:
        """The leaderboard of the file as it is now (cached per file state, selection and rounds)."""
        sel = selection or Selection()
        n = bootstrap_rounds() if rounds is None else rounds

        def make() -> Leaderboard:
            records, broken = self.read_lines()
            return ratings.leaderboard(records, sel, n, unreadable=broken)

        return self._cache.get((str(self.path), self._state(), sel, n), make)

    async def leaderboard(self, selection: Selection | None = None, rounds: int | None = None) -> Leaderboard:
        return await asyncio.to_thread(self.board, selection, rounds)

    async def records(self) -> tuple[list[dict[str, Any]], int]:
        return await asyncio.to_thread(self.read_lines)


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
