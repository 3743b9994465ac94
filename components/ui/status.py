"""The status tab: each remote endpoint's health and model (from /health and /info), no secrets; the path
each loaded transformers model takes."""

from __future__ import annotations

from typing import Any

import gradio as gr

from components.core.messages import t
from components.core.service import Playground
from components.serving.endpoints import endpoint_health
from components.ui.common import Translations


async def endpoints_markdown(playground: Playground, lang: str) -> str:
    """One line per endpoint; a hint when none is configured."""
    rows = await endpoint_health(playground.catalog, playground.registry)
    if not rows:
        return t("endpoints_none", lang)
    lines = []
    for row in rows:
        if not row.get("configured"):
            state = t("endpoint_not_configured", lang)
        elif row.get("ok"):
            state = "✓ " + t("endpoint_ok", lang)
        else:
            state = "✗ " + t("endpoint_down", lang)
            if row.get("error"):
                state += ": " + t(row["error"], lang, **(row.get("error_params") or {}))
        lines.append(
            "- "
            + t(
                "endpoint_line",
                lang,
                endpoint=row.get("label") or row["id"],
                type=row["type"],
                url=row.get("url") or "–",
                state=state,
                model_id=row.get("model_id") or "–",
                version=row.get("version") or "–",
                max_total_tokens=row.get("max_total_tokens") or "–",
            )
        )
    return "\n".join(lines)


def local_models_markdown(playground: Playground, lang: str) -> str:
    """One line per loaded local model that reports its generation path (engines with `loaded_models()`)."""
    lines = []
    for engine in playground.registry.all().values():
        rows = getattr(engine, "loaded_models", None)
        for row in rows() if callable(rows) else []:
            path = t(row["reason"], lang, **row["params"])
            lines.append("- " + t("tf_model_line", lang, model=row["model"], device=row["device"], path=path))
    return "\n".join([t("tf_models_title_md", lang), *(lines or [t("tf_models_none", lang)])])


def build_status_tab(playground: Playground, tr: Translations, lang_state: Any) -> Any:
    title = tr.add(gr.Markdown(t("endpoints_title_md"), elem_id="status-title"), "endpoints_title_md", "value")
    health = gr.Markdown("…", elem_id="status-endpoints")
    refresh = tr.add(
        gr.Button(t("endpoints_refresh"), size="sm", elem_id="status-refresh"), "endpoints_refresh", "value"
    )

    async def show(lang: str) -> str:
        return await endpoints_markdown(playground, lang) + "\n\n" + local_models_markdown(playground, lang)

    refresh.click(show, [lang_state], [health], api_visibility="private")
    lang_state.change(show, [lang_state], [health], api_visibility="private")
    return title, health
