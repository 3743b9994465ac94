"""The `/compare` API endpoint: several models answer one message at once."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import gradio as gr

from components.api.common import checking, with_settings
from components.core.service import Playground
from components.core.validation import check_message
from components.features.compare import MAX_PANES, PaneSpec, catalog_ids, new_round, prepare_panes, stream_round
from components.serving.limits import check_rate
from components.vocabulary.generation import InputError
from components.vocabulary.messages import t


def pane_payload(pane: Any) -> dict[str, Any]:
    payload = {
        "model": pane.model_id,
        "label": pane.model_label,
        "text": pane.text,
        "stats": pane.stats,
        "language": pane.language,
        "register": pane.register,
        "error": pane.error,
        "error_code": pane.error_key,
        "done": pane.done,
        "prompt": pane.raw_prompt,
    }
    # with top_tokens: the token probabilities once the pane is done, or why there are none
    if pane.token_probs:
        payload["token_probs"] = pane.token_probs
    elif pane.token_probs_note:
        payload["token_probs_note"] = pane.token_probs_note
    return payload


def register(playground: Playground) -> None:
    """Adds `/compare` to the Blocks being built."""
    default_model = playground.catalog.default.id

    @with_settings(without=("stop",))
    async def compare(
        message: str,
        models: list[str] | None = None,
        system_prompt: str | None = None,
        lang: str = "de",
        request: gr.Request | None = None,
        **settings: Any,
    ) -> list[dict[str, Any]]:  # an async generator: streams the list as it grows
        """Streams answers of several models to one message, all generated at once.

        `models` is a list of 1 to 4 `variant/quantization` ids from `/models` (default: the offline
        model twice); `system_prompt` None means each family's default. Yields a list with one
        {model, label, text, stats, language, register, error, error_code, done, prompt} per model
        (`prompt`: the raw prompt that model got, in its own format), in the order given (with `top_tokens`,
        `token_probs` or `token_probs_note` once a model is done, as in `/chat`); a model that fails reports its
        `error` while the others go on. Once a pane is done, `language` ({code, de_share, other}) and `register`
        ({form, mixed, system, kept}) say how it answered (None before). Bad input is refused as a whole.
        """
        with checking(lang, "compare") as language:
            if isinstance(models, str):
                models = [models]
            if models is not None and not isinstance(models, (list, tuple)):
                raise InputError("err_wrong_type", name="models", kind=type(models).__name__, expected="list of ids")
            chosen = list(models) if models else [default_model, default_model]
            check_rate(request)
            text = check_message(message)
            if not 1 <= len(chosen) <= MAX_PANES or not all(isinstance(m, str) for m in chosen):
                raise InputError("err_compare_models", count=len(chosen), max=MAX_PANES)
            chosen = catalog_ids(playground, chosen)  # only the catalog's ids, as the catalog writes them
            specs = [PaneSpec(m, system_prompt, settings) for m in chosen]
            prepared = await asyncio.to_thread(prepare_panes, playground, specs, text, None, language)
            for spec, prep in zip(specs, prepared, strict=True):
                if isinstance(prep, InputError):
                    raise InputError(
                        "err_compare_model_refused",
                        model=str(spec.model_id)[:80],
                        why=t(prep.key, language, **prep.params),
                    )
        round_ = new_round(playground, specs, text, prepared, language, settings)
        async with contextlib.aclosing(stream_round(playground, round_, prepared)) as updates:
            async for update in updates:
                yield [pane_payload(p) for p in update.panes]

    gr.api(compare, api_name="compare", concurrency_limit=None)
