"""The one engine interface: a GenerationRequest goes in, an async stream of events comes out."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from components.vocabulary.catalog import ModelRef
from components.vocabulary.generation import (
    EngineDone,
    EngineError,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    GenerationStats,
    ProbsUnavailable,
    PromptSent,
    Status,
    TextDelta,
)

log = logging.getLogger(__name__)


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
    def generate(
        self, request: GenerationRequest
    ) -> AsyncIterator[TextDelta | Status | PromptSent | ProbsUnavailable | EngineDone]:
        """Yields text and status (and PromptSent where the server built the prompt), then one EngineDone;
        raises EngineError on failure. With `settings.top_tokens` each TextDelta carries its tokens' probabilities
        (TokenProb) where the engine has them; stream() says so when none came.

        Must stop promptly when `request.cancel` is set or when the consumer closes the iterator
        (Stop, closed tab): the work underneath ends, not only the display.
        """

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """generate() with timing and errors turned into events; never raises EngineError."""
        clock = StatsClock()
        gen = self.generate(request)
        wanted = request.settings.top_tokens > 0
        probs = noted = False
        try:
            async for item in gen:
                if isinstance(item, TextDelta):
                    clock.on_text(item.tokens)
                    probs = probs or bool(item.probs)
                    yield item
                elif isinstance(item, Status | PromptSent | ProbsUnavailable):
                    noted = noted or isinstance(item, ProbsUnavailable)
                    yield item
                elif isinstance(item, EngineDone):
                    if wanted and not probs and not noted and clock.tokens:
                        # never an empty list that looks like an answer: the page and the API say none came
                        yield ProbsUnavailable("note_probs_unavailable", {"engine": self.label(request.model)})
                    reason = "stopped" if request.cancel.is_set() else item.finish_reason
                    stats = clock.stats(reason, item.prompt_tokens, item.completion_tokens)
                    if item.served_model or item.replica:
                        stats = dataclasses.replace(stats, served_model=item.served_model, replica=item.replica)
                    yield Finished(stats)
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

    def label(self, model: ModelRef) -> str:
        """Who answers, in a message: the model's label (a remote engine names its server)."""
        return model.label

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
