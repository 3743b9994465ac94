"""What every API endpoint shares: the `lang` parameter, refusals and failures as gr.Error, the answer stream."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import gradio as gr

from components.core.service import Playground, Prepared
from components.core.streaming import batched
from components.vocabulary.generation import Failed, Finished, InputError, PromptSent, TextDelta
from components.vocabulary.messages import normalize_language, t

log = logging.getLogger("playground.api")


async def answer_stream(
    playground: Playground, prepared: Prepared, info: dict[str, Any], language: str
) -> AsyncIterator[str]:
    """The answer so far, once per batch of events, for the streaming API endpoints; puts `stats` and, on
    failure, `error` (in `language`) and `error_code` into `info` as they arrive. Where a server built the
    prompt (chat mode), `prompt` becomes the server's rendering, or `prompt_note` says it cannot be shown."""
    text = ""
    async for batch in batched(playground.stream(prepared)):
        for event in batch:
            if isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, PromptSent):
                if event.prompt is not None:
                    info["prompt"] = event.prompt
                if event.note:
                    info["prompt_note"] = t(event.note, language, **event.params)
            elif isinstance(event, Finished):
                info["stats"] = event.stats.as_dict()
            elif isinstance(event, Failed):
                info["error"] = t(event.key, language, **event.params)
                info["error_code"] = event.key
                if event.stats:
                    info["stats"] = event.stats.as_dict()
        yield text


def api_language(value: Any) -> str:
    """The `lang` parameter: "de"/"en" (anything else that is text: German); not text at all is refused."""
    if value is not None and not isinstance(value, str):
        raise InputError("err_wrong_type", name="lang", kind=type(value).__name__, expected='"de" or "en"')
    return normalize_language(value)


@contextlib.contextmanager
def checking(lang: Any, endpoint: str) -> Iterator[str]:
    """A request's checks, before anything is generated: yields the `lang` parameter's language and turns what the
    checks raise into the endpoint's answer, refused input (InputError) into refused(), anything else into
    failed(), in that language (in German when `lang` itself is what is refused)."""
    language = normalize_language(lang if isinstance(lang, str) else None)
    try:
        language = api_language(lang)
        yield language
    except InputError as exc:
        raise refused(exc, language, endpoint) from None
    except Exception as exc:
        raise failed(exc, language, endpoint) from None


def refused(exc: InputError, language: str, endpoint: str) -> gr.Error:
    """The gr.Error for refused input: its message in `language` to the client, one JSON line to the log, and no
    traceback (Gradio prints one for every gr.Error unless told not to)."""
    log.info("request refused", extra={"endpoint": endpoint, "reason": exc.key})
    return gr.Error(t(exc.key, language, **exc.params), print_exception=False)


def failed(exc: BaseException, language: str, endpoint: str) -> gr.Error:
    """The gr.Error for an unexpected failure while checking a request: a message, never `{"error": null}`; the
    log gets one JSON line (the traceback inside it, redacted)."""
    log.error(
        "request failed", extra={"endpoint": endpoint, "error": type(exc).__name__}, exc_info=(type(exc), exc, None)
    )
    return gr.Error(t("err_request_failed", language, detail=type(exc).__name__), print_exception=False)
