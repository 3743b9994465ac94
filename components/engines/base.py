"""The one engine interface: a GenerationRequest goes in, an async stream of events comes out."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from components.core.catalog import ModelRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingSettings:
    """Validated sampling settings (see components/core/validation.py for ranges)."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    max_new_tokens: int = 256
    repetition_penalty: float = 1.1
    seed: int | None = None
    stop: tuple[str, ...] = ()


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


# ---- what an engine's generate() yields -------------------------------------------------------
@dataclass(frozen=True)
class TextDelta:
    """New answer text (one token or a few)."""

    text: str
    tokens: int = 1


@dataclass(frozen=True)
class Status:
    """Progress that is not answer text: loading, downloading, waiting in a queue.
    `key` is a message key of components/core/messages.py, `params` its placeholders."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptSent:
    """What the model got when a server, not the playground, built the prompt (chat mode on a remote server):
    `prompt` is the server's own rendering, or None when the server cannot show it; `note` is a message key
    (components/core/messages.py) with its `params`, shown next to the raw prompt."""

    prompt: str | None
    note: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineDone:
    """Last item of a generate(): why it ended and the token counts the engine knows."""

    finish_reason: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


# ---- what stream() yields to callers -------------------------------------------------------------
@dataclass(frozen=True)
class GenerationStats:
    finish_reason: str
    prompt_tokens: int | None
    completion_tokens: int
    ttft_s: float | None
    total_s: float
    tokens_per_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_s": None if self.ttft_s is None else round(self.ttft_s, 4),
            "total_s": round(self.total_s, 4),
            "tokens_per_s": None if self.tokens_per_s is None else round(self.tokens_per_s, 2),
        }


@dataclass(frozen=True)
class Finished:
    stats: GenerationStats


@dataclass(frozen=True)
class Failed:
    """The answer could not be completed; text streamed before stays valid (partial answer)."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)
    stats: GenerationStats | None = None


Event = TextDelta | Status | PromptSent | Finished | Failed


class EngineError(Exception):
    """A failure with a message key (components/core/messages.py) and its placeholders."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(f"{key}: {params}")
        self.key = key
        self.params = params


class StatsClock:
    """Times one generation: time to first token and decode speed."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None
        self.tokens = 0

    def on_text(self, tokens: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.tokens += tokens

    def stats(self, finish_reason: str, prompt_tokens: int | None, completion_tokens: int | None) -> GenerationStats:
        end = time.perf_counter()
        n = completion_tokens if completion_tokens is not None else self.tokens
        ttft = None if self.first is None else self.first - self.start
        rate: float | None = None
        if self.first is not None and self.last is not None and self.tokens > 1 and self.last > self.first:
            # decode speed: tokens after the first over the time they took
            rate = (self.tokens - 1) / (self.last - self.first)
        elif n and ttft:
            rate = n / (end - self.start)
        return GenerationStats(finish_reason, prompt_tokens, n, ttft, end - self.start, rate)


class Engine(ABC):
    """An inference backend. Knows nothing of Gradio; one instance serves many models."""

    name: str = "engine"

    @abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[TextDelta | Status | PromptSent | EngineDone]:
        """Yields text and status (and PromptSent where the server built the prompt), then one EngineDone;
        raises EngineError on failure.

        Must stop promptly when `request.cancel` is set or when the consumer closes the iterator
        (Stop, closed tab): the work underneath ends, not only the display.
        """

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """generate() with timing and errors turned into events; never raises EngineError."""
        clock = StatsClock()
        gen = self.generate(request)
        try:
            async for item in gen:
                if isinstance(item, TextDelta):
                    clock.on_text(item.tokens)
                    yield item
                elif isinstance(item, Status | PromptSent):
                    yield item
                elif isinstance(item, EngineDone):
                    reason = "stopped" if request.cancel.is_set() else item.finish_reason
                    yield Finished(clock.stats(reason, item.prompt_tokens, item.completion_tokens))
                    return
            reason = "stopped" if request.cancel.is_set() else "unknown"
            yield Finished(clock.stats(reason, None, None))
        except EngineError as exc:
            yield Failed(exc.key, exc.params, clock.stats("error", None, None))
        except asyncio.CancelledError:
            request.cancel.set()
            raise
        except Exception as exc:  # an engine bug must not reach the page as a traceback
            log.exception("engine %s failed", self.name)
            yield Failed("err_internal", {"detail": type(exc).__name__}, clock.stats("error", None, None))
        finally:
            await gen.aclose()

    async def count_tokens(self, model: ModelRef, text: str) -> int | None:
        """Token count of `text` for `model`, or None when the engine cannot tell before generating."""
        return None

    def context_length(self, model: ModelRef) -> int:
        return model.variant.context_length


def check_context(prompt_tokens: int, max_new_tokens: int, context: int, max_input: int | None = None) -> None:
    """Refuses a prompt that, with the answer budget, does not fit the model's context, or that is longer than a
    server's own limit on prompts (`max_input`, e.g. TGI's max_input_tokens), named as the context then."""
    if prompt_tokens + max_new_tokens > context:
        limit = context
    elif max_input and prompt_tokens > max_input:
        limit = max_input
    else:
        return
    raise EngineError(
        "err_context",
        prompt_tokens=prompt_tokens,
        max_new_tokens=max_new_tokens,
        total=prompt_tokens + max_new_tokens,
        context=limit,
    )
