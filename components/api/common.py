"""What every API endpoint shares: the `lang` parameter, refusals and failures as gr.Error, the answer stream."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from types import UnionType
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import gradio as gr

from components.core.service import Playground, Prepared
from components.core.streaming import batched
from components.vocabulary.answer import Answer
from components.vocabulary.generation import InputError
from components.vocabulary.messages import normalize_language, t
from components.vocabulary.settings import SETTING_NAMES, SamplingSettings

log = logging.getLogger("playground.api")

F = TypeVar("F", bound=Callable[..., Any])


def _api_type(name: str) -> Any:
    """A setting's parameter type as callers see it: its field's type (a tuple as a list), or None (unset)."""
    annotation = SamplingSettings.model_fields[name].annotation
    base = (
        next(a for a in get_args(annotation) if a is not type(None))
        if get_origin(annotation) is UnionType
        else annotation
    )
    if get_origin(base) is tuple:
        base = list[get_args(base)[0]]
    return base | None


def with_settings(*, without: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Gives an endpoint the sampling settings (SamplingSettings' fields but `without`) as parameters of their own,
    named and typed as the settings model has them, each None by default (the family's recommendation), before its
    `lang` parameter; the endpoint takes them as `**settings`. Gradio and gradio_client read the signature built
    here (the endpoint's own is `(…, lang, request, **settings)`)."""
    names = [name for name in SETTING_NAMES if name not in without]

    def wrap(fn: F) -> F:
        hints = get_type_hints(fn)
        declared = inspect.signature(fn)
        own = [p for p in declared.parameters.values() if p.kind is not p.VAR_KEYWORD]
        at = next(i for i, p in enumerate(own) if p.name == "lang")
        settings = [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=_api_type(name))
            for name in names
        ]
        params = [p.replace(annotation=hints[p.name]) for p in own]
        # the return annotation as written (Gradio documents an unresolved one as a single `Any` output)
        signature = inspect.Signature(
            [*params[:at], *settings, *params[at:]], return_annotation=declared.return_annotation
        )

        def split(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return dict(bound.arguments)

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def stream(*args: Any, **kwargs: Any) -> Any:
                async with contextlib.aclosing(fn(**split(args, kwargs))) as items:
                    async for item in items:
                        yield item

            wrapper: Any = stream
        else:

            @functools.wraps(fn)
            async def call(*args: Any, **kwargs: Any) -> Any:
                return await fn(**split(args, kwargs))

            wrapper = call
        wrapper.__signature__ = signature
        wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()} | {
            "return": signature.return_annotation
        }
        del wrapper.__wrapped__
        return wrapper  # type: ignore[no-any-return]

    return wrap


async def answer_stream(
    playground: Playground, prepared: Prepared, info: dict[str, Any], language: str
) -> AsyncIterator[str]:
    """The answer so far, once per batch of events, for the streaming API endpoints; puts `stats` and, on
    failure, `error` (in `language`) and `error_code` into `info` as they arrive, and at the end the token
    probabilities (probs_info). Where a server built the
    prompt (chat mode), `prompt` becomes the server's rendering, or `prompt_note` says it cannot be shown."""
    answer = Answer()
    async for batch in batched(playground.stream(prepared)):
        answer.add_all(batch)
        if answer.sent is not None and answer.sent.prompt is not None:
            info["prompt"] = answer.sent.prompt
        if note := answer.prompt_note(language):
            info["prompt_note"] = note
        if answer.failed is not None:
            info["error"] = answer.error_text(language)
            info["error_code"] = answer.failed.key
        if answer.stats:
            info["stats"] = answer.stats
        info.update(answer.traits())  # language, register: once the answer is done
        if answer.done:  # once, at the end: the whole list with every update would grow with the square
            probs_info(answer, info, language)
        yield answer.text


def probs_info(answer: Answer, info: dict[str, Any], language: str) -> None:
    """`token_probs` (one entry per generated token) into `info` where the answer has them; where they were asked
    for and the engine gave none, `token_probs_note` says so instead (never an empty list)."""
    if answer.probs:
        info["token_probs"] = answer.token_probs()
    elif (note := answer.probs_note_text(language)) is not None:
        info["token_probs_note"] = note


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
