"""One answer folded from its event stream: text, stats, progress, the prompt a server built, the error."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from components.vocabulary.generation import (
    Event,
    Failed,
    Finished,
    ProbsUnavailable,
    PromptSent,
    Status,
    TextDelta,
    TokenProb,
)
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
    #: each generated token's probability and alternatives (when asked for); `probs_note` why there are none
    probs: list[TokenProb] = field(default_factory=list, repr=False)
    probs_note: ProbsUnavailable | None = None
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
            self.probs.extend(event.probs)
            self.status = None
        elif isinstance(event, ProbsUnavailable):
            self.probs_note = event
        elif isinstance(event, Status):
            self.status = event
        elif isinstance(event, PromptSent):
            self.sent = event
        elif isinstance(event, Finished):
            self.stats = event.stats.as_dict() | prob_summary(self.probs)
            self.finished = True
        elif isinstance(event, Failed):
            self.failed = event
            if event.stats:
                self.stats = event.stats.as_dict() | prob_summary(self.probs)

    def add_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.add(event)

    def token_probs(self) -> list[dict[str, Any]]:
        """The token probabilities as the API gives them: [{"token", "prob", "top": [{"token", "prob"}, …]}, …]."""
        return [p.as_dict() for p in self.probs]

    def probs_note_text(self, lang: str) -> str | None:
        """Why probabilities were asked for and none came, in `lang`; None otherwise."""
        return None if self.probs_note is None else t(self.probs_note.key, lang, **self.probs_note.params)

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


#: a token below this probability counts as unsure in the stats line (`low_prob_tokens`)
LOW_PROB = 0.1


def prob_summary(probs: list[TokenProb]) -> dict[str, Any]:
    """The answer's probabilities in three numbers for the stats: their mean, the perplexity (exp of the mean
    negative log probability; 1 = every token certain) and how many tokens were below LOW_PROB. {} without any."""
    if not probs:
        return {}
    values = [p.prob for p in probs]
    nll = -sum(math.log(max(p, 1e-12)) for p in values) / len(values)
    return {
        "mean_prob": round(sum(values) / len(values), 4),
        "perplexity": round(math.exp(nll), 3),
        "low_prob_tokens": sum(1 for p in values if p < LOW_PROB),
    }


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
    line = t(
        "stats_line",
        lang,
        ttft="–" if ttft is None else f"{ttft * 1000:.0f} ms",
        rate="–" if rate is None else number(rate, lang, 1),
        tokens=stats.get("completion_tokens", 0),
        reason=finish_text(stats.get("finish_reason"), lang),
    )
    if stats.get("mean_prob") is not None:  # token probabilities were asked for (prob_summary)
        line += t(
            "stats_probs",
            lang,
            mean=number(100 * stats["mean_prob"], lang, 0),
            ppl=number(stats.get("perplexity") or 0, lang, 2),
            low=stats.get("low_prob_tokens", 0),
        )
    return line
