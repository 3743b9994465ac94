"""The playground's core, shared by the page and the API: validate input, build prompts, stream."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from components.core import availability
from components.core.answer_traits import assess
from components.core.validation import LIMITS, build_settings, check_message, check_system_prompt, clean_text
from components.engines import chat_templates
from components.engines.base import Engine
from components.engines.fleet import FleetEngine, fleet_of
from components.engines.kinds import kind_of
from components.engines.model_cache import progress_while
from components.logs.logging_setup import record_conversation
from components.vocabulary.answer import Answer
from components.vocabulary.catalog import Catalog, ModelRef, QuantKind
from components.vocabulary.chat_template import PLACEHOLDER, ChatTemplate, TemplateFormat
from components.vocabulary.generation import (
    Assessed,
    EngineError,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    InputError,
    PromptSent,
    Status,
    TextDelta,
    usable_credential,
)
from components.vocabulary.markers import check_messages, check_prompt_parts
from components.vocabulary.messages import t
from components.vocabulary.prompts import MODEL_FORMAT, PromptFormat, Turn, get_format

log = logging.getLogger(__name__)


class EngineRegistry:
    """One engine instance per kind (and per remote endpoint), created on first use."""

    def __init__(self, catalog: Catalog, overrides: dict[str, Engine] | None = None) -> None:
        self.catalog = catalog
        self._engines: dict[str, Engine] = dict(overrides or {})

    def key_for(self, ref: ModelRef) -> str:
        if ref.quant.kind is QuantKind.remote:
            return f"endpoint:{ref.quant.endpoint}"
        return ref.engine_kind

    def engine_for(self, ref: ModelRef) -> Engine:
        key = self.key_for(ref)
        engine = self._engines.get(key)
        if engine is None:
            engine = self._create(ref)
            self._engines[key] = engine
        return engine

    def _create(self, ref: ModelRef) -> Engine:
        row = kind_of(ref, self.catalog.endpoints)
        if row.remote:
            # a build served by replicas (components/engines/fleet.py): each request to one of them
            group = fleet_of(self.catalog).group(ref.quant.endpoint)
            if group is not None:
                return FleetEngine(group, row.name)
            return row.create(endpoint=self.catalog.endpoints[ref.quant.endpoint or ""])
        return row.create(hf_token=os.environ.get("HF_TOKEN") or None)

    def all(self) -> dict[str, Engine]:
        return dict(self._engines)


def history_turns(history: list[Turn] | None) -> list[Turn]:
    """Earlier answers as the next prompt's history: stripped of leading and trailing whitespace.

    SentencePiece models (Llama, Mistral: EM German, LeoLM) stream the first word with its leading space
    (" Das"); kept, the next EM German prompt would read `ASSISTANT:  Das …` where the model was trained on one
    space. FastChat strips answers before storing them (fastchat/serve/inference.py); the page may still show
    them as streamed.
    """
    return [Turn(turn.user, turn.assistant.strip()) for turn in history or []]


@dataclass(frozen=True)
class Prepared:
    """A checked request, ready for an engine, plus what the page shows about it. `pending`: the build's chat
    template comes with its first download; stream() reads it, renders and checks the prompt, then sends it."""

    request: GenerationRequest
    raw_prompt: str
    pending: bool = False


@functools.lru_cache(maxsize=64)
def _template_format(template: ChatTemplate, model: str) -> TemplateFormat:
    return TemplateFormat.of(template, model)


class Playground:
    """Everything the UI and the API do, without knowing about Gradio or any engine's details."""

    def __init__(
        self,
        catalog: Catalog,
        registry: EngineRegistry | None = None,
        hub: availability.HubProbe | None = None,
        servers: availability.ServerProbes | None = None,
    ) -> None:
        self.catalog = catalog
        self.registry = registry or EngineRegistry(catalog)
        self.hub = hub or availability.HUB
        self.servers = servers or availability.SERVERS

    # ---- catalog views -----------------------------------------------------------------------
    def resolve(self, model_id: Any) -> ModelRef:
        ref = self.catalog.get(str(model_id).strip()) if isinstance(model_id, str) else None
        if ref is None:
            raise InputError("err_unknown_model", model=str(model_id)[:80], example=self.catalog.default.id)
        return ref

    def availability(self, ref: ModelRef) -> availability.Availability:
        remote = ref.quant.kind is QuantKind.remote
        endpoint = self.catalog.endpoints.get(ref.quant.endpoint or "") if remote else None
        group = fleet_of(self.catalog).group(ref.quant.endpoint) if remote else None
        if group is not None:  # the replica a request would go to now
            endpoint = group.best_endpoint() or endpoint
        return availability.check(ref, endpoint=endpoint, probe=self.hub, servers=self.servers)

    def local_engines(self) -> list[dict[str, Any]]:
        """What the local engines have loaded: per model its label, size and, where the engine has them, its
        parallel slots (busy, total, waiting); and the memory the engine's cache uses of its budget."""
        out = []
        for engine in self.registry.all().values():
            cache = getattr(engine, "cache", None)
            if cache is None or not hasattr(cache, "items"):
                continue
            models = []
            for item in cache.items():
                ref = self.catalog.get(item.key)
                gate = getattr(item.value, "gate", None)
                models.append(
                    {
                        "id": item.key,
                        "label": ref.label if ref else item.key,
                        "size_gb": item.size_gb,
                        "slots": getattr(gate, "slots", None),
                        "busy": getattr(gate, "active", None),
                        "waiting": _count(getattr(gate, "waiting", None)),
                    }
                )
            out.append(
                {"engine": engine.name, "used_gb": cache.used_gb, "budget_gb": cache.budget_gb, "models": models}
            )
        return out

    def why_not(self, ref: ModelRef, lang: str) -> str | None:
        """Why the build cannot be used now (None when it runs now or after a download from a reachable Hub)."""
        avail = self.availability(ref)
        return None if avail.ok else t(avail.key, lang, **avail.params)

    def refusal(self, ref: ModelRef, avail: availability.Availability, lang: str) -> InputError:
        """The message for sending to a build that cannot take a request now."""
        if avail.state == availability.DOWNLOAD:
            key = "err_download_offline" if avail.hub == availability.HUB_OFFLINE else "err_download_unreachable"
            offline = self.catalog.default.family.name
            return InputError(key, model=ref.label, size=avail.params.get("size", 0.0), offline=offline)
        if avail.key == "why_offline_fetch_failed":  # what to do, in whole sentences
            return InputError("err_offline_model_missing", **avail.params)
        return InputError("err_unavailable", model=ref.label, why=t(avail.key, lang, **avail.params))

    # ---- prompt formats --------------------------------------------------------------------
    def format_for(self, ref: ModelRef) -> PromptFormat | None:
        """The build's prompt format: the family's, or for `prompt_format: model` the build's own chat template
        (a remote build: that of a build of the same model on disk); None while it is not on disk yet. A file
        without (such) a template raises InputError."""
        if ref.family.prompt_format != MODEL_FORMAT:
            return get_format(ref.family.prompt_format)
        try:
            template = chat_templates.template_for(ref)
            remote = ref.quant.kind is QuantKind.remote
            for other in self.catalog.quants_of(ref.variant.id) if template is None and remote else ():
                template = chat_templates.template_for(other)
                if template is not None:
                    break
        except EngineError as exc:
            raise InputError(exc.key, **exc.params) from None
        return None if template is None else _template_format(template, ref.label)

    def markers_format(self, ref: ModelRef) -> PromptFormat:
        """The format whose markers a visitor's text is checked against (a template not read yet: the special-token
        shapes every model has)."""
        return self.format_for(ref) or PLACEHOLDER

    # ---- requests ----------------------------------------------------------------------------
    def prepare(
        self,
        model_id: Any,
        message: Any,
        system_prompt: Any = None,
        history: list[Turn] | None = None,
        json_schema: dict[str, Any] | None = None,
        lang: str = "de",
        credential: str | None = None,
        **settings: Any,
    ) -> Prepared:
        """Checks everything and builds the exact prompt; raises InputError with a message key. `credential` is
        passed through untouched (GenerationRequest.credential)."""
        ref = self.resolve(model_id)
        text = check_message(message)
        avail = self.availability(ref)
        if not avail.ok:
            raise self.refusal(ref, avail, lang)
        family = ref.family
        fmt = self.format_for(ref)
        system = check_system_prompt(system_prompt, family.system_prompt)
        turns = history_turns(history)
        # user text never becomes the format's control markup (components/vocabulary/markers.py)
        check_prompt_parts(fmt or PLACEHOLDER, text, system, turns)
        credential = usable_credential(credential)
        if fmt is None:  # the template comes with the build's first download: rendered in stream()
            request = GenerationRequest(
                model=ref,
                prompt="",
                messages=PLACEHOLDER.messages(system, turns, text),
                settings=build_settings(family, (), **settings),
                json_schema=json_schema,
                add_special=False,
                credential=credential,
            )
            return Prepared(request, t("raw_prompt_template_pending", lang, model=ref.label), pending=True)
        sampling = build_settings(family, fmt.stop, **settings)
        raw = fmt.render(system, turns, text)
        request = GenerationRequest(
            model=ref,
            prompt=raw,
            messages=fmt.messages(system, turns, text),
            settings=sampling,
            json_schema=json_schema,
            # a chat template writes the whole prompt, BOS included where the model wants one (apply_chat_template
            # tokenizes with add_special_tokens=False)
            add_special=not isinstance(fmt, TemplateFormat),
            credential=credential,
        )
        return Prepared(request=request, raw_prompt=raw)

    def render_prompt(
        self, model_id: str, message: str, system_prompt: str | None, history: list[Turn], lang: str = "de"
    ) -> str:
        """The raw prompt the model would get, for the page's prompt view (no length checks). Text holding a
        control marker shows why it would be refused instead of a forged prompt."""
        ref = self.catalog.get(model_id) or self.catalog.default
        system = ref.family.system_prompt if system_prompt is None else system_prompt
        turns = history_turns(history)
        try:
            fmt = self.format_for(ref)
            for text, limit in ((message, LIMITS.max_message_chars), (system, LIMITS.max_system_chars)):
                if len(text or "") > 3 * limit:  # far too long: refused before any cleaning, as when sending
                    raise InputError("err_too_long_chars", chars=len(text), limit=limit)
            check_prompt_parts(fmt or PLACEHOLDER, clean_text(message), clean_text(system), turns)
            if fmt is None:
                return t("raw_prompt_template_pending", lang, model=ref.label)
            return fmt.render(system, turns, message)
        except InputError as exc:
            return t("raw_prompt_refused", lang, why=t(exc.key, lang, **exc.params))

    async def stream(self, prepared: Prepared, source: str = "", session: str | None = None) -> AsyncIterator[Event]:
        """The engine's event stream for a prepared request. Closing it cancels the work.

        With PLAYGROUND_CONVERSATION_LOG set, the finished exchange is also appended to that file.
        """
        engine = self.registry.engine_for(prepared.request.model)
        log.info(
            "generate model=%s engine=%s prompt_chars=%d",
            prepared.request.model.id,
            engine.name,
            len(prepared.raw_prompt),
        )
        ref = prepared.request.model
        avail = self.availability(ref)
        if avail.state == availability.DOWNLOAD:
            # shown from the first moment: the engine's own progress comes once the Hub has answered
            yield Status("status_download_starting", {"model": ref.label, "size": avail.params.get("size", 0.0)})
        if prepared.pending:
            async with contextlib.aclosing(self._render_pending(prepared)) as rendering:
                async for event in rendering:
                    yield event
                    if isinstance(event, Failed):
                        return
        events = record_conversation(prepared.request, engine.stream(prepared.request), source, session)
        answer = Answer()  # the text so far, folded as everywhere else
        try:
            async for event in events:
                answer.add(event)
                if isinstance(event, (Finished, Failed)) and prepared.request.json_schema is None:
                    # the answer's language, register and style, once, just before it ends (a JSON answer has none)
                    traits = await assessed(answer.text, prepared.request)
                    if traits is not None:
                        yield traits
                yield event
        finally:
            await events.aclose()

    def _template_source(self, ref: ModelRef) -> ModelRef:
        """The build whose files carry `ref`'s template: itself, or for a remote build one of the same model here
        (a transformers build first: its tokenizer files are small)."""
        if ref.quant.kind is not QuantKind.remote:
            return ref
        local = [o for o in self.catalog.quants_of(ref.variant.id) if o.quant.kind is not QuantKind.remote]
        return next((o for o in local if not chat_templates.gguf_of(o)), local[0] if local else ref)

    async def _render_pending(self, prepared: Prepared) -> AsyncIterator[Event]:
        """The first download of a template build: fetch the file that carries its template (progress as Status),
        check the visitor's texts against its tokens, render the prompt into the request and show it (PromptSent);
        a refusal or a template that cannot be rendered ends as Failed."""
        request = prepared.request
        queue: asyncio.Queue[Status] = asyncio.Queue()
        token = os.environ.get("HF_TOKEN") or None
        task = asyncio.ensure_future(
            chat_templates.fetch_template(self._template_source(request.model), token, queue.put_nowait)
        )
        async with contextlib.aclosing(progress_while(task, queue)) as progress:
            async for status in progress:
                yield status
        try:
            template = task.result()
            fmt = _template_format(template, request.model.label)
            check_messages(fmt, request.messages)
            request.prompt = fmt.render_messages(request.messages)
        except (EngineError, InputError) as exc:
            yield Failed(exc.key, exc.params)
            return
        except Exception as exc:  # a bug must not reach the page as a traceback
            log.exception("reading the chat template of %s failed", request.model.id)
            yield Failed("err_internal", {"detail": type(exc).__name__})
            return
        stops = tuple(dict.fromkeys((*fmt.stop, *request.settings.stop)))
        request.settings = request.settings.model_copy(update={"stop": stops})
        yield PromptSent(request.prompt)


async def assessed(text: str, request: GenerationRequest) -> Assessed | None:
    """The answer's traits (answer_traits.assess), computed off the event loop; None for an answer without text, or
    when the assessment fails (the answer itself stands)."""
    if not text.strip():
        return None
    system = next((m["content"] for m in request.messages if m.get("role") == "system"), None)
    try:
        return Assessed(**await asyncio.to_thread(assess, text, system))
    except Exception as exc:  # a broken language model must never cost the answer
        log.warning("answer assessment failed: %s", type(exc).__name__, exc_info=True)
        return None


def _count(value: Any) -> int | None:
    """A count an engine exposes as a number or as a method returning one."""
    value = value() if callable(value) else value
    return value if isinstance(value, int) else None


__all__ = [
    "EngineRegistry",
    "Failed",
    "Finished",
    "Playground",
    "Prepared",
    "PromptSent",
    "Status",
    "TextDelta",
]
