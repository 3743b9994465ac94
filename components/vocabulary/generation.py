"""What a request is and what comes back: the generation request, the stream's events, refusals."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

from components.vocabulary.catalog import ModelRef
from components.vocabulary.settings import SamplingSettings


@dataclass
class GenerationRequest:
    """Everything an engine needs for one answer. `prompt` is the family's exact raw prompt;
    `messages` is the same conversation for chat-template servers. `cancel` is set by Stop."""

    model: ModelRef
    prompt: str
    messages: list[dict[str, str]]
    settings: SamplingSettings
    json_schema: dict[str, Any] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    #: whether the engine's tokenizer adds the model's special tokens (BOS) itself; False for a prompt rendered
    #: from the model's chat template, which writes them where the model wants them
    add_special: bool = True
    #: an opaque per-visitor credential (a signed-in visitor's Hugging Face token): only an engine whose endpoint
    #: takes visitors' tokens sends it, to that endpoint only; never shown, logged or stored
    credential: str | None = field(default=None, repr=False, compare=False)


def usable_credential(value: object) -> str | None:
    """A visitor's credential as a request may carry it: a non-empty string of at most 4096 characters, else none."""
    return value if isinstance(value, str) and 0 < len(value) <= 4096 else None


# ---- what an engine's generate() yields -------------------------------------------------------
@dataclass(frozen=True)
class TokenProb:
    """One generated token with its probability and the likeliest alternatives (`top`: (token, probability),
    descending). The probability is that of the distribution the token was drawn from: after the repetition
    penalty, the temperature and top-k/top-p (a token they cut has 0); with greedy decoding (temperature 0) the
    model's distribution after the repetition penalty at temperature 1, whose top token is the one generated."""

    token: str
    prob: float
    top: tuple[tuple[str, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "prob": round(self.prob, 6),
            "top": [{"token": text, "prob": round(p, 6)} for text, p in self.top],
        }


def from_logprob(logprob: Any) -> float:
    """A probability from a server's log probability (never above 1: a server's rounding may give +0.0001)."""
    return math.exp(min(float(logprob), 0.0))


def token_prob(token: str, prob: float, top: Any) -> TokenProb:
    """A TokenProb from an engine's numbers: probabilities clamped to [0, 1], `top` ((text, prob) pairs) sorted
    descending (stable: ties keep the engine's order) and without tokens of probability 0."""
    pairs = sorted(((str(t), min(1.0, max(0.0, float(p)))) for t, p in top), key=lambda pair: -pair[1])
    return TokenProb(str(token), min(1.0, max(0.0, float(prob))), tuple(pair for pair in pairs if pair[1] > 0))


@dataclass(frozen=True)
class TextDelta:
    """New answer text (one token or a few); `probs` the token probabilities of those tokens, when asked for
    (SamplingSettings.top_tokens) and the engine has them."""

    text: str
    tokens: int = 1
    probs: tuple[TokenProb, ...] = ()


@dataclass(frozen=True)
class ProbsUnavailable:
    """Token probabilities were asked for, but the engine or server gave none; `key` says why (a message key)."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Status:
    """Progress that is not answer text: loading, downloading, waiting in a queue.
    `key` is a message key of components/vocabulary/messages.py, `params` its placeholders."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptSent:
    """What the model got when a server, not the playground, built the prompt (chat mode on a remote server):
    `prompt` is the server's own rendering, or None when the server cannot show it; `note` is a message key
    (components/vocabulary/messages.py) with its `params`, shown next to the raw prompt."""

    prompt: str | None
    note: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineDone:
    """Last item of a generate(): why it ended and the token counts the engine knows."""

    finish_reason: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: what answered, for a remote build: the model id its server reported and the server's (replica's) name
    served_model: str | None = None
    replica: str | None = None


# ---- what stream() yields to callers -------------------------------------------------------------
@dataclass(frozen=True)
class GenerationStats:
    finish_reason: str
    prompt_tokens: int | None
    completion_tokens: int
    ttft_s: float | None
    total_s: float
    tokens_per_s: float | None
    served_model: str | None = None
    replica: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_s": None if self.ttft_s is None else round(self.ttft_s, 4),
            "total_s": round(self.total_s, 4),
            "tokens_per_s": None if self.tokens_per_s is None else round(self.tokens_per_s, 2),
        }
        if self.served_model or self.replica:  # a remote build: what answered
            out.update(served_model=self.served_model, replica=self.replica)
        return out


@dataclass(frozen=True)
class Finished:
    stats: GenerationStats


@dataclass(frozen=True)
class Failed:
    """The answer could not be completed; text streamed before stays valid (partial answer)."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)
    stats: GenerationStats | None = None


@dataclass(frozen=True)
class Assessed:
    """What the finished (or failed) answer is like, sent just before Finished/Failed: `language` {"code",
    "de_share", "other"}, `register` {"form", "mixed", "system", "kept"}, `style` {"chars", "headers", "lists",
    "bold"} (components/core/answer_traits.py)."""

    language: dict[str, Any]
    register: dict[str, Any]
    style: dict[str, Any]


Event = TextDelta | Status | PromptSent | ProbsUnavailable | Assessed | Finished | Failed


class EngineError(Exception):
    """A failure with a message key (components/vocabulary/messages.py) and its placeholders."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(f"{key}: {params}")
        self.key = key
        self.params = params


class InputError(Exception):
    """Refused input, with a message key of components/vocabulary/messages.py and its placeholders."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(f"{key}: {params}")
        self.key = key
        self.params = params
