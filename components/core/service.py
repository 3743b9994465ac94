"""The playground's core, shared by the page and the API: validate input, build prompts, stream."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from components.core import availability
from components.core.answer_traits import assess
from components.core.validation import LIMITS, build_settings, check_message, check_system_prompt, clean_text
from components.engines.base import Engine
from components.engines.kinds import kind_of
from components.logs.logging_setup import record_conversation
from components.vocabulary.answer import Answer
from components.vocabulary.catalog import Catalog, ModelRef, QuantKind
from components.vocabulary.generation import (
    Assessed,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    InputError,
    PromptSent,
    Status,
    TextDelta,
)
from components.vocabulary.markers import check_prompt_parts
from components.vocabulary.messages import t
from components.vocabulary.prompts import Turn, get_format

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
    """A checked request, ready for an engine, plus what the page shows about it."""

    request: GenerationRequest
    raw_prompt: str


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

    # ---- requests ----------------------------------------------------------------------------
    def prepare(
        self,
        model_id: Any,
        message: Any,
        system_prompt: Any = None,
        history: list[Turn] | None = None,
        json_schema: dict[str, Any] | None = None,
        lang: str = "de",
        **settings: Any,
    ) -> Prepared:
        """Checks everything and builds the exact prompt; raises InputError with a message key."""
        ref = self.resolve(model_id)
        text = check_message(message)
        avail = self.availability(ref)
        if not avail.ok:
            raise self.refusal(ref, avail, lang)
        family = ref.family
        fmt = get_format(family.prompt_format)
        system = check_system_prompt(system_prompt, family.system_prompt)
        turns = history_turns(history)
        # user text never becomes the format's control markup (components/vocabulary/markers.py)
        check_prompt_parts(fmt.name, text, system, turns)
        sampling = build_settings(family, fmt.stop, **settings)
        raw = fmt.render(system, turns, text)
        request = GenerationRequest(
            model=ref,
            prompt=raw,
            messages=fmt.messages(system, turns, text),
            settings=sampling,
            json_schema=json_schema,
        )
        return Prepared(request=request, raw_prompt=raw)

    def render_prompt(
        self, model_id: str, message: str, system_prompt: str | None, history: list[Turn], lang: str = "de"
    ) -> str:
        """The raw prompt the model would get, for the page's prompt view (no length checks). Text holding a
        control marker shows why it would be refused instead of a forged prompt."""
        ref = self.catalog.get(model_id) or self.catalog.default
        fmt = get_format(ref.family.prompt_format)
        system = ref.family.system_prompt if system_prompt is None else system_prompt
        turns = history_turns(history)
        try:
            for text, limit in ((message, LIMITS.max_message_chars), (system, LIMITS.max_system_chars)):
                if len(text or "") > 3 * limit:  # far too long: refused before any cleaning, as when sending
                    raise InputError("err_too_long_chars", chars=len(text), limit=limit)
            check_prompt_parts(fmt.name, clean_text(message), clean_text(system), turns)
        except InputError as exc:
            return t("raw_prompt_refused", lang, why=t(exc.key, lang, **exc.params))
        return fmt.render(system, turns, message)

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
