"""Grounded answers (RAG) in EM German's retrieval format: sources with metadata, per-family prompts, context fit.

The EM German card (shared/seeds/001_*, "Factual Retrieval / RAG") gives the format byte for byte, Airoboros
style, and its quirks are kept on purpose because the model was trained on them: the system prompt's typo
"ENDINCSTRUCTION", and the space after "ENDCONTEXT" before the line break. The card shows one source;
several sources follow the Airoboros convention the card names: one BEGININPUT … ENDINPUT block per source,
blocks separated by a single newline, each with its metadata lines "Key: value" between BEGINCONTEXT and
ENDCONTEXT (the block is kept, empty, when a source has no metadata, so every source looks alike).

The question follows on one line, `BEGININSTRUCTION {question} ENDINSTRUCTION`, as in the card. For EM German
the retrieval system prompt replaces the default one: `{system} USER: {sources + question} ASSISTANT:`.
Every other family gets the same text in its own PromptFormat: the retrieval system prompt where that format
puts a system prompt (IGEL: a preamble before `### Anweisung:`; ChatML: the system message) and the sources
plus question as the user message. So a prompt is always the family's exact format around the card's blocks.
A model with its own chat template (`prompt_format: model`) gets the same two messages rendered by its template:
the retrieval system prompt as its system message, the blocks and the question as its user message; a template
that takes no system message (Gemma's) gets the system prompt at the top of the user message, a blank line before
the blocks.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.core.service import Playground, Prepared
from components.core.validation import LIMITS, build_settings, check_message, check_system_prompt, clean_text, env_int
from components.vocabulary.catalog import Family, ModelRef
from components.vocabulary.chat_template import PLACEHOLDER, TemplateFormat
from components.vocabulary.generation import GenerationRequest, InputError, usable_credential
from components.vocabulary.markers import find_marker, refuse_markers
from components.vocabulary.messages import Msg, t
from components.vocabulary.prompts import PromptFormat, get_format

log = logging.getLogger(__name__)

#: The card's retrieval system prompt, verbatim (typo "ENDINCSTRUCTION" included: the model was trained on it).
RAG_SYSTEM_PROMPT = (
    "Du bist ein hilfreicher Assistent. Für die folgende Aufgabe stehen dir zwischen den tags BEGININPUT und "
    "ENDINPUT mehrere Quellen zur Verfügung. Metadaten zu den einzelnen Quellen wie Autor, URL o.ä. sind zwischen "
    "BEGINCONTEXT und ENDCONTEXT zu finden, danach folgt der Text der Quelle. Die eigentliche Aufgabe oder Frage "
    "ist zwischen BEGININSTRUCTION und ENDINCSTRUCTION zu finden. Beantworte diese wortwörtlich mit einem Zitat "
    "aus den Quellen. Sollten diese keine Antwort enthalten, antworte, dass auf Basis der gegebenen Informationen "
    "keine Antwort möglich ist!"
)

#: The delimiters of the format. A source or question containing one could close its block early and smuggle
#: in text the model takes for an instruction, so such input is refused instead of being sent.
MARKERS = ("BEGININPUT", "ENDINPUT", "BEGINCONTEXT", "ENDCONTEXT", "BEGININSTRUCTION", "ENDINSTRUCTION")

#: Metadata keys the form fills in; "Url" is the card's spelling, "Autor" the system prompt's word.
URL_KEY = "Url"
AUTHOR_KEY = "Autor"
FILE_KEY = "Datei"

#: The card's example, for the page's example button and the tests.
CARD_SOURCE_TEXT = "Das Wetter in Düsseldorf wird heute schön und sonnig!"
CARD_SOURCE_URL = "https://www.jph.me"
CARD_QUESTION_UNANSWERABLE = "Was ist 1+1?"
CARD_QUESTION = "Wie wird das Wetter heute in Düsseldorf? Gebe die Quelle mit an!"

#: Characters per token when no tokenizer can count (a deliberately low guess for German text: the
#: engines check the exact length again before generating, so an estimate must not refuse what fits).
CHARS_PER_TOKEN_ESTIMATE = 4
#: How long counting with the model's tokenizer may take before the estimate is used instead.
COUNT_TIMEOUT_S = 20.0

UPLOAD_SUFFIXES = (".txt", ".md", ".markdown")


@dataclass(frozen=True)
class SourceLimits:
    """Server-side limits for sources; each can be set through the environment."""

    max_sources: int = env_int("PLAYGROUND_MAX_SOURCES", 20)
    max_source_chars: int = env_int("PLAYGROUND_MAX_SOURCE_CHARS", 200_000)
    max_total_chars: int = env_int("PLAYGROUND_MAX_SOURCES_CHARS", 400_000)
    max_upload_bytes: int = env_int("PLAYGROUND_MAX_UPLOAD_BYTES", 1_000_000)
    max_metadata: int = 10
    max_key_chars: int = 40
    max_value_chars: int = 500


SOURCE_LIMITS = SourceLimits()


# ---- sources ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """One source: its text and ordered metadata pairs (written as `Key: value` lines)."""

    text: str
    metadata: tuple[tuple[str, str], ...] = ()

    def block(self) -> str:
        """The card's block: note the space after ENDCONTEXT, kept as the card has it."""
        meta = "".join(f"{key}: {value}\n" for key, value in self.metadata)
        return f"BEGININPUT\nBEGINCONTEXT\n{meta}ENDCONTEXT \n{self.text}\nENDINPUT"

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "metadata": dict(self.metadata)}


def _marker_in(text: str) -> str | None:
    """The retrieval delimiter in `text`, look-alikes included (full-width ＥＮＤＩＮＰＵＴ reads as ENDINPUT)."""
    found = find_marker(text, None, retrieval=True)
    return found.upper() if found else None


def check_metadata(value: Any, index: int | Msg = 1) -> tuple[tuple[str, str], ...]:
    """Metadata from a mapping or (key, value) pairs: one-line values, keys without ':' and line breaks."""
    if value in (None, "", [], {}):
        return ()
    if isinstance(value, Mapping):
        pairs: Iterable[Any] = value.items()
    elif isinstance(value, (list, tuple)):
        pairs = value
    else:
        raise InputError("err_source_metadata", index=index)
    out: list[tuple[str, str]] = []
    limits = SOURCE_LIMITS
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise InputError("err_source_metadata", index=index)
        raw_key, raw_value = pair
        if not isinstance(raw_key, str) or not isinstance(raw_value, (str, int, float)) or isinstance(raw_value, bool):
            raise InputError("err_source_metadata", index=index)
        key = " ".join(clean_text(raw_key).split())
        # a line break inside a value would start a line the model reads as the source text
        text = " ".join(clean_text(str(raw_value)).split())
        if not text:
            continue
        if not key or ":" in key or len(key) > limits.max_key_chars:
            raise InputError("err_source_metadata_key", index=index, name=key[:60], limit=limits.max_key_chars)
        if len(text) > limits.max_value_chars:
            raise InputError("err_source_metadata_value", index=index, name=key, limit=limits.max_value_chars)
        marker = _marker_in(key) or _marker_in(text)
        if marker:
            raise InputError("err_source_marker", index=index, marker=marker)
        out.append((key, text))
    if len(out) > limits.max_metadata:
        raise InputError("err_source_metadata_count", index=index, count=len(out), limit=limits.max_metadata)
    return tuple(out)


def parse_metadata_lines(text: Any) -> list[tuple[str, str]]:
    """The page's free metadata field: one `Key: value` per line, empty lines ignored."""
    pairs: list[tuple[str, str]] = []
    for line in clean_text(text).splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise InputError("err_source_metadata_line", line=line.strip()[:80])
        pairs.append((key.strip(), value.strip()))
    return pairs


def form_metadata(
    url: Any = None, author: Any = None, extra: Any = None, file_name: str | None = None
) -> list[tuple[str, str]]:
    """The page form's fields as metadata pairs, in the order they are written into the prompt."""
    pairs: list[tuple[str, str]] = []
    if url and str(url).strip():
        pairs.append((URL_KEY, str(url)))
    if author and str(author).strip():
        pairs.append((AUTHOR_KEY, str(author)))
    if file_name:
        pairs.append((FILE_KEY, file_name))
    pairs.extend(parse_metadata_lines(extra))
    return pairs


def check_source(text: Any, metadata: Any = None, index: int | Msg = 1) -> Source:
    """A checked source: non-empty, within the size limit, without the format's delimiters."""
    if not isinstance(text, str):
        raise InputError("err_source_shape", index=index)
    body = clean_text(text).strip("\n")
    if not body.strip():
        raise InputError("err_source_empty", index=index)
    if len(body) > SOURCE_LIMITS.max_source_chars:
        raise InputError("err_source_too_long", index=index, chars=len(body), limit=SOURCE_LIMITS.max_source_chars)
    marker = _marker_in(body)
    if marker:
        raise InputError("err_source_marker", index=index, marker=marker)
    return Source(body, check_metadata(metadata, index))


def parse_sources(value: Any) -> list[Source]:
    """Sources from the API: a list of {"text": ..., "metadata": {...}} (a bare string is a source without metadata)."""
    if value in (None, "", []):
        raise InputError("err_no_sources")
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise InputError("err_source_shape", index=1)
    if len(value) > SOURCE_LIMITS.max_sources:
        raise InputError("err_too_many_sources", count=len(value), limit=SOURCE_LIMITS.max_sources)
    sources = []
    for i, item in enumerate(value, start=1):
        if isinstance(item, str):
            sources.append(check_source(item, None, i))
        elif isinstance(item, Mapping) and set(item) <= {"text", "metadata"}:
            sources.append(check_source(item.get("text"), item.get("metadata"), i))
        else:
            raise InputError("err_source_shape", index=i)
    check_total(sources)
    return sources


def check_total(sources: Sequence[Source]) -> None:
    total = sum(len(s.text) for s in sources)
    if total > SOURCE_LIMITS.max_total_chars:
        raise InputError("err_sources_total", chars=total, limit=SOURCE_LIMITS.max_total_chars)


def check_question(value: Any) -> str:
    text = check_message(value)
    marker = _marker_in(text)
    if marker:
        raise InputError("err_question_marker", marker=marker)
    # one line, as in the card: a line break would split BEGININSTRUCTION … ENDINSTRUCTION
    return " ".join(text.split())


def read_upload(path: Any, name: str | None = None) -> tuple[str, str]:
    """(file name, text) of an uploaded file: .txt/.md only, size-limited, UTF-8 (BOM allowed), no binary."""
    file = Path(str(path))
    shown = Path(name or file.name).name[:120]
    if file.suffix.lower() not in UPLOAD_SUFFIXES:
        raise InputError("err_upload_type", name=shown, types=", ".join(UPLOAD_SUFFIXES))
    try:
        size = file.stat().st_size
    except OSError:
        raise InputError("err_upload_read", name=shown) from None
    if size > SOURCE_LIMITS.max_upload_bytes:
        raise InputError("err_upload_size", name=shown, size=size, limit=SOURCE_LIMITS.max_upload_bytes)
    data = file.read_bytes()
    if b"\x00" in data:
        raise InputError("err_upload_encoding", name=shown)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("err_upload_encoding", name=shown) from None
    return shown, text.replace("\r\n", "\n").replace("\r", "\n")


# ---- prompts ----------------------------------------------------------------------------------------------
def user_message(sources: Sequence[Source], question: str) -> str:
    """The sources' blocks and the question line: what goes after `USER:` in the card."""
    blocks = "\n".join(source.block() for source in sources)
    return f"{blocks}\nBEGININSTRUCTION {question} ENDINSTRUCTION"


@dataclass(frozen=True)
class RetrievalPrompt:
    system: str
    user: str
    raw: str
    messages: list[dict[str, str]]


def build_prompt(
    family: Family,
    sources: Sequence[Source],
    question: str,
    system: str | None = None,
    fmt: PromptFormat | None = None,
) -> RetrievalPrompt:
    """The exact prompt for `family`: the retrieval system prompt (or `system`) and the sources + question,
    rendered by the family's own PromptFormat (or `fmt`, a build's chat template; raw "" while it is not read)."""
    fmt = fmt or get_format(family.prompt_format)
    system_text = RAG_SYSTEM_PROMPT if system is None else system
    user = user_message(sources, question)
    if isinstance(fmt, TemplateFormat) and system_text and not fmt.system_role:
        user, system_text = f"{system_text}\n\n{user}", ""
    raw = "" if fmt is PLACEHOLDER else fmt.render(system_text, [], user)
    return RetrievalPrompt(system_text, user, raw, fmt.messages(system_text, [], user))


def prepare_retrieval(
    playground: Playground,
    model_id: Any,
    question: Any,
    sources: Sequence[Source],
    system_prompt: Any = None,
    lang: str = "de",
    credential: str | None = None,
    **settings: Any,
) -> Prepared:
    """Checks everything and builds the request; raises InputError with a message key (nothing is generated).
    `credential`: a signed-in visitor's token, into the request only (GenerationRequest.credential)."""
    ref = playground.resolve(model_id)
    text = check_question(question)
    if not sources:
        raise InputError("err_no_sources")
    if len(sources) > SOURCE_LIMITS.max_sources:
        raise InputError("err_too_many_sources", count=len(sources), limit=SOURCE_LIMITS.max_sources)
    check_total(sources)
    avail = playground.availability(ref)
    if not avail.ok:
        raise playground.refusal(ref, avail, lang)
    system = check_system_prompt(system_prompt, RAG_SYSTEM_PROMPT)
    fmt = playground.format_for(ref) or PLACEHOLDER
    check_markers(fmt, text, system, sources)
    sampling = build_settings(ref.family, fmt.stop, **settings)
    prompt = build_prompt(ref.family, sources, text, system, fmt)
    request = GenerationRequest(
        model=ref,
        prompt=prompt.raw,
        messages=prompt.messages,
        settings=sampling,
        add_special=not isinstance(fmt, TemplateFormat),
        credential=usable_credential(credential),
    )
    if fmt is PLACEHOLDER:  # the template comes with the build's first download (Playground.stream renders it)
        return Prepared(request, t("raw_prompt_template_pending", lang, model=ref.label), pending=True)
    return Prepared(request=request, raw_prompt=prompt.raw)


def check_markers(format_name: str | PromptFormat, question: str, system: str, sources: Sequence[Source]) -> None:
    """Refuses the family's turn markers (and the retrieval delimiters) in the question, the sources and their
    metadata, and the turn markers in the system prompt (which names the delimiters on purpose)."""
    refuse_markers(question, format_name, "err_marker_question", retrieval=True)
    refuse_markers(system, format_name, "err_marker_system")
    for index, source in enumerate(sources, start=1):
        refuse_markers(source.text, format_name, "err_marker_source", retrieval=True, index=index)
        for key, value in source.metadata:
            refuse_markers(f"{key}: {value}", format_name, "err_marker_source", retrieval=True, index=index)


def preview_prompt(
    playground: Playground, model_id: str, sources: Sequence[Source], question: str, system: Any, lang: str = "de"
) -> str:
    """The raw prompt for the page's prompt view while typing (no length checks); with a control marker in the
    question, the sources or the system prompt, why it would be refused instead."""
    ref = playground.catalog.get(model_id) or playground.catalog.default
    try:
        for value, limit in ((question, LIMITS.max_message_chars), (system, LIMITS.max_system_chars)):
            if isinstance(value, str) and len(value) > 3 * limit:  # far too long: refused before any cleaning
                raise InputError("err_too_long_chars", chars=len(value), limit=limit)
        text = " ".join(clean_text(question).split())
        fmt = playground.format_for(ref)
        check_markers(fmt or PLACEHOLDER, text, clean_text(system), sources)
        if fmt is None:
            return t("raw_prompt_template_pending", lang, model=ref.label)
        return build_prompt(ref.family, sources, text, system, fmt).raw
    except InputError as exc:
        return t("raw_prompt_refused", lang, why=t(exc.key, lang, **exc.params))


# ---- does it fit? -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenFit:
    """Prompt length against the model's context; `method` is "tokenizer" (counted) or "estimate" (chars/4)."""

    prompt_tokens: int
    max_new_tokens: int
    context: int
    method: str
    source_tokens: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.max_new_tokens

    @property
    def excess(self) -> int:
        return max(0, self.total - self.context)

    @property
    def fits(self) -> bool:
        return self.excess == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "max_new_tokens": self.max_new_tokens,
            "context": self.context,
            "excess": self.excess,
            "method": self.method,
            "source_tokens": list(self.source_tokens),
        }

    def describe(self, lang: str) -> str:
        """One line for the page: how much of the context the prompt takes, and how it was counted."""
        return t(
            "retrieval_fit_line",
            lang,
            prompt_tokens=self.prompt_tokens,
            max_new_tokens=self.max_new_tokens,
            context=self.context,
            method=t(f"tokens_{self.method}", lang),
        )


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN_ESTIMATE))


async def measure(
    playground: Playground, ref: ModelRef, prompt: str, sources: Sequence[Source], max_new: int
) -> TokenFit:
    """Counts with the engine's tokenizer where it has one (llama.cpp, transformers, TGI /tokenize, …), else
    estimates; a tokenizer that fails or takes longer than COUNT_TIMEOUT_S means estimating too."""
    engine = playground.registry.engine_for(ref)
    texts = [prompt, *(s.text for s in sources)]
    counts: list[int] | None = None

    async def count_all() -> list[int | None]:
        return list(await asyncio.gather(*(engine.count_tokens(ref, text) for text in texts)))

    task = asyncio.ensure_future(count_all())
    # consumed here so that a count finishing after the timeout never logs "exception was never retrieved"
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        # shielded: a tokenizer that is still loading (llama.cpp loads the model, perhaps downloading it) goes
        # on loading after the timeout, and the generation that follows joins that load instead of restarting it
        counted = await asyncio.wait_for(asyncio.shield(task), COUNT_TIMEOUT_S)
        if all(isinstance(c, int) for c in counted):
            counts = [int(c) for c in counted]
    except Exception as exc:  # counting is a courtesy: the engine checks the length again before generating
        log.info("token count with %s failed (%s); estimating", engine.name, type(exc).__name__)
    method = "tokenizer" if counts is not None else "estimate"
    if counts is None:
        counts = [estimate_tokens(text) for text in texts]
    try:
        context = int(engine.context_length(ref))
    except Exception:
        context = ref.variant.context_length
    return TokenFit(counts[0], max_new, context, method, tuple(counts[1:]))


def refuse_if_too_long(fit: TokenFit, model_label: str) -> None:
    """Raises InputError saying by how many tokens the prompt is too long, and how they were counted."""
    if fit.fits:
        return
    largest = max(range(len(fit.source_tokens)), key=lambda i: fit.source_tokens[i]) if fit.source_tokens else 0
    # one key per counting method, so every caller renders it with plain t(exc.key, lang, **exc.params)
    raise InputError(
        f"err_sources_too_long_{fit.method}",
        model=model_label,
        prompt_tokens=fit.prompt_tokens,
        max_new_tokens=fit.max_new_tokens,
        total=fit.total,
        context=fit.context,
        excess=fit.excess,
        largest=largest + 1,
        largest_tokens=fit.source_tokens[largest] if fit.source_tokens else 0,
    )


async def check_fit(playground: Playground, prepared: Prepared, sources: Sequence[Source]) -> TokenFit:
    """Measures the prepared prompt and refuses it (InputError) when it does not fit the model's context."""
    request = prepared.request
    # a template not read yet: its messages' text, the template's few tokens of markup left out
    prompt = request.prompt or "\n".join(m["content"] for m in request.messages)
    fit = await measure(playground, request.model, prompt, sources, request.settings.max_new_tokens)
    refuse_if_too_long(fit, request.model.label)
    return fit


def sources_from_state(items: Iterable[Mapping[str, Any]]) -> list[Source]:
    """The page's stored sources (already checked when added) as Source objects."""
    return [Source(item["text"], tuple((k, v) for k, v in item.get("metadata", []))) for item in items]


__all__ = [
    "CARD_QUESTION",
    "CARD_SOURCE_TEXT",
    "CARD_SOURCE_URL",
    "RAG_SYSTEM_PROMPT",
    "RetrievalPrompt",
    "Source",
    "TokenFit",
    "build_prompt",
    "check_fit",
    "check_question",
    "check_source",
    "form_metadata",
    "measure",
    "parse_sources",
    "prepare_retrieval",
    "read_upload",
    "user_message",
]
