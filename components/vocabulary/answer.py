"""One answer folded from its event stream: text, stats, progress, the prompt a server built, the error."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from components.vocabulary.generation import (
    Assessed,
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
    prompt); `failed` the failure, whose text streamed before stays valid (a partial answer); `assessed` the
    finished answer's language, register and style."""

    stats: dict[str, Any] | None = None
    status: Status | None = None
    sent: PromptSent | None = None
    failed: Failed | None = None
    assessed: Assessed | None = None
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
        elif isinstance(event, Assessed):
            self.assessed = event
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

    def traits(self) -> dict[str, Any]:
        """The answer's `language` and `register` for an API's info or a pane, once assessed ({} before)."""
        if self.assessed is None:
            return {}
        return {"language": dict(self.assessed.language), "register": dict(self.assessed.register)}

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


#: Below this share of German an answer that is mostly German gets a warning with the other language's share.
DRIFT_WARN_SHARE = 0.9


def language_name(code: str | None, lang: str) -> str:
    """A language's name in the page's language ("Englisch"); an ISO code without a message as it is."""
    return t(f"lang_name_{code}", lang) if f"lang_name_{code}" in MESSAGES else str(code or "?")


def traits_note(traits: dict[str, Any] | None, lang: str) -> str:
    """The warnings an answer's traits give (Answer.traits()): "⚠ Englisch" for an answer that is not German,
    "⚠ 30 % Englisch" for a German one that drifts, the register against the system prompt's; "" when none."""
    notes = []
    language = (traits or {}).get("language") or {}
    code, share = language.get("code"), language.get("de_share")
    if code and code != "de":
        notes.append(t("lang_warn", lang, language=language_name(code, lang)))
    elif code == "de" and isinstance(share, (int, float)) and share < DRIFT_WARN_SHARE:
        other = language.get("other") or "en"
        notes.append(t("lang_warn_part", lang, share=round((1.0 - share) * 100), language=language_name(other, lang)))
    reg = (traits or {}).get("register") or {}
    if reg.get("mixed"):
        notes.append(t("register_warn_mixed", lang))
    elif reg.get("kept") is False:
        notes.append(t("register_warn", lang, form=reg.get("form"), system=reg.get("system")))
    return " · ".join(notes)


def language_text(language: dict[str, Any] | None, lang: str) -> str | None:
    """An answer's language for a report's table: "Englisch (Deutsch: 12 %)"; None where it has none."""
    if not language or not language.get("code"):
        return None
    share = language.get("de_share")
    name = language_name(language["code"], lang)
    return name if share is None else t("lang_value", lang, language=name, share=round(share * 100))


def register_text(register: dict[str, Any] | None, lang: str) -> str | None:
    """An answer's register for a report's table: "Sie (Systemprompt: du)"; None where it has none."""
    if not register or not register.get("form"):
        return None

    def form(value: Any) -> str:
        return t("register_none", lang) if value in (None, "none") else str(value)

    shown = t("register_mixed", lang) if register.get("mixed") else form(register["form"])
    return t("register_value", lang, form=shown, system=form(register.get("system")))


def stats_line(stats: dict[str, Any] | None, lang: str, traits: dict[str, Any] | None = None) -> str:
    """The one-line stats under an answer (Answer.stats): time to first token, speed, tokens, why it ended; then the
    warnings of its traits (traits_note), where it has any."""
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
    note = traits_note(traits, lang)
    return f"{line} · {note}" if note else line
