"""What a request is and what comes back: the generation request, the stream's events, refusals."""

from __future__ import annotations

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


# ---- what an engine's generate() yields -------------------------------------------------------
@dataclass(frozen=True)
class TextDelta:
    """New answer text (one token or a few)."""

    text: str
    tokens: int = 1


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


Event = TextDelta | Status | PromptSent | Assessed | Finished | Failed


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
