"""The status tab: each remote endpoint's health and model (from /health and /info), no secrets; the path
each loaded transformers model takes."""

from __future__ import annotations

from typing import Any

import gradio as gr

from components.core.service import Playground
from components.serving.endpoints import endpoint_health, fleet_rows, waiting_texts
from components.serving.limits import public_profile
from components.ui.common import Translations, md_literal
from components.vocabulary.messages import t


async def endpoints_markdown(playground: Playground, lang: str) -> str:
    """One line per endpoint; a hint when none is configured. The public profile names each server and never
    shows its address (an internal host, a port, a path are nobody's business on an open Space)."""
    rows = await endpoint_health(playground.catalog, playground.registry)
    if not rows:
        return t("endpoints_none", lang)
    line_key = "endpoint_line_public" if public_profile() else "endpoint_line"
    lines = []
    waiting = dict(waiting_texts(playground.catalog, lang))
    for row in rows:
        if row.get("waiting") and (row.get("label") or row["id"]) in waiting:
            state = waiting[row.get("label") or row["id"]]
        elif not row.get("configured"):
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
                line_key,
                lang,
                endpoint=row.get("label") or row["id"],
                type=row["type"],
                url=row.get("url") or "–",
                state=state,
                model_id=row.get("model_id") or "–",
                version=row.get("version") or "–",
                max_total_tokens=row.get("max_total_tokens") or "–",
            )
            + (
                " · " + t("endpoint_serves", lang, build=md_literal(row["build_label"]))
                if row.get("build_label")
                else ""
            )
        )
    return "\n".join(lines) + fleet_markdown(playground, lang)


def fleet_markdown(playground: Playground, lang: str) -> str:
    """Each remote build: the model its servers report and its replicas with their state and open streams."""
    rows = fleet_rows(playground.catalog)
    if not rows:
        return ""
    lines = ["", "", t("fleet_builds_md", lang)]
    for row in rows:
        replicas = ", ".join(
            t(
                "fleet_replica",
                lang,
                name=r["name"],
                state=t(f"fleet_state_{r['state']}", lang),
                open=r["open_streams"],
            )
            for r in row["replicas"]
        )
        served = (row["served_model"] or "–").replace("`", "ʼ")
        line = t("fleet_build_line", lang, build=md_literal(row["label"]), served=served, replicas=replicas)
        if row["outside_catalog"]:
            line += " · " + t("fleet_outside", lang)
        lines.append("- " + line)
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


def local_markdown(playground: Playground, lang: str) -> str:
    """The local engines: what is loaded, the memory it takes, and each model's parallel slots."""
    engines = playground.local_engines()
    if not any(e["models"] for e in engines):
        return t("local_none", lang)
    lines = []
    for e in engines:
        lines.append("- " + t("local_engine", lang, engine=e["engine"], used=e["used_gb"], budget=e["budget_gb"]))
        for m in e["models"]:
            line = t("local_model", lang, model=m["label"], size=m["size_gb"])
            if m["slots"] is not None:
                line += " · " + t("local_slots", lang, busy=m["busy"] or 0, slots=m["slots"], waiting=m["waiting"] or 0)
            lines.append("  - " + line)
    return "\n".join(lines)


def build_status_tab(playground: Playground, tr: Translations, lang_state: Any, tab: Any = None) -> Any:
    title = tr.add(gr.Markdown(t("endpoints_title_md"), elem_id="status-title"), "endpoints_title_md", "value")
    health = gr.Markdown("…", elem_id="status-endpoints")
    tr.add(gr.Markdown(t("local_title_md"), elem_id="status-local-title"), "local_title_md", "value")
    local = gr.Markdown(local_markdown(playground, "de"), elem_id="status-local")
    refresh = tr.add(
        gr.Button(t("endpoints_refresh"), size="sm", elem_id="status-refresh"), "endpoints_refresh", "value"
    )

    async def show(lang: str) -> list[str]:
        return [
            await endpoints_markdown(playground, lang),
            local_markdown(playground, lang) + "\n\n" + local_models_markdown(playground, lang),
        ]

    refresh.click(show, [lang_state], [health, local], api_visibility="private")
    lang_state.change(show, [lang_state], [health, local], api_visibility="private")
    if tab is not None:  # opening the tab shows what is loaded now
        tab.select(show, [lang_state], [health, local], api_visibility="private")
    return title, health
