"""One answer folded from its event stream: text, stats, progress, the prompt a server built, the error."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from components.vocabulary.generation import Event, Failed, Finished, PromptSent, Status, TextDelta
from components.vocabulary.messages import MESSAGES, in_every_language, number, t


@dataclass
class Answer:
    """The events of one generation folded once, for the chat, compare, sources and JSON tabs, the API and the
    conversation log alike. `stats` is GenerationStats.as_dict() (from Finished, or from Failed where it has them);
    `status` the latest progress note, gone once text arrives; `sent` the last PromptSent (a server built the
    prompt); `failed` the failure, whose text streamed before stays valid (a partial answer)."""

    stats: dict[str, Any] | None = None
    status: Status | None = None
    sent: PromptSent | None = None
    failed: Failed | None = None
    finished: bool = False
    _parts: list[str] = field(default_factory=list, repr=False)

    @property
    def text(self) -> str:
        """The answer so far (joined once per read, not once per token)."""
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def done(self) -> bool:
        """Finished or failed: nothing more comes."""
        return self.finished or self.failed is not None

    @property
    def finish_reason(self) -> str:
        """Why it ended: the engine's reason, "error" when it failed, "closed" when the stream was cut first."""
        if self.failed is not None:
            return "error"
        if self.finished and self.stats:
            return str(self.stats.get("finish_reason") or "unknown")
        return "closed"

    def add(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            self._parts.append(event.text)
            self.status = None
        elif isinstance(event, Status):
            self.status = event
        elif isinstance(event, PromptSent):
            self.sent = event
        elif isinstance(event, Finished):
            self.stats = event.stats.as_dict()
            self.finished = True
        elif isinstance(event, Failed):
            self.failed = event
            if event.stats:
                self.stats = event.stats.as_dict()

    def add_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.add(event)

    def status_text(self, lang: str) -> str | None:
        return None if self.status is None else t(self.status.key, lang, **self.status.params)

    def error_text(self, lang: str) -> str | None:
        return None if self.failed is None else t(self.failed.key, lang, **self.failed.params)

    def error_by_lang(self) -> dict[str, str] | None:
        """The error in every page language (a line kept as text that must follow a later language switch)."""
        return None if self.failed is None else in_every_language(self.failed.key, **self.failed.params)

    def prompt_shown(self, raw_prompt: str, lang: str) -> str | None:
        """The raw prompt to show once a server reported what it built (chat mode on a remote server): its own
        rendering, else the card's prompt with the note that the server applies its own template; None before."""
        if self.sent is None:
            return None
        if self.sent.prompt is not None:
            return self.sent.prompt
        return f"{raw_prompt}\n\n⚠️ {t(self.sent.note or '', lang, **self.sent.params)}"

    def prompt_note(self, lang: str) -> str | None:
        """The server's note on the prompt it built, if it sent one."""
        if self.sent is None or not self.sent.note:
            return None
        return t(self.sent.note, lang, **self.sent.params)


def finish_text(reason: str | None, lang: str) -> str:
    """Why an answer ended, in words (`finish_…` messages); a reason without a message as the engine gave it."""
    reason = reason or "unknown"
    return t(f"finish_{reason}", lang) if f"finish_{reason}" in MESSAGES else reason


def stats_line(stats: dict[str, Any] | None, lang: str) -> str:
    """The one-line stats under an answer (Answer.stats): time to first token, speed, tokens, why it ended."""
    if not stats:
        return ""
    ttft = stats.get("ttft_s")
    rate = stats.get("tokens_per_s")
    return t(
        "stats_line",
        lang,
        ttft="–" if ttft is None else f"{ttft * 1000:.0f} ms",
        rate="–" if rate is None else number(rate, lang, 1),
        tokens=stats.get("completion_tokens", 0),
        reason=finish_text(stats.get("finish_reason"), lang),
    )
