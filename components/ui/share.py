"""The read-only page of a shared result (`/share/<id>`) and the "Share link" button of the compare tab and session.

The page is plain HTML made on the server, without script: what a model or a visitor wrote is Markdown rendered by
markdown-it-py with raw HTML off (a `<form>` in an answer is text), images off and every link `rel="nofollow
noopener noreferrer"`; the page sends no Referer, so a link in an answer cannot learn the share's address. Its
language is `?lang=`, else the browser's Accept-Language, else German.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr
from markdown_it import MarkdownIt

from components.features.compare import LETTERS, SETTING_LABELS, TIE, Round
from components.features.share import Expired, Found, share_store, sharing_enabled
from components.ui.common import Translations, warn
from components.vocabulary.answer import stats_line
from components.vocabulary.generation import InputError
from components.vocabulary.messages import LANGUAGES, normalize_language, number, t
from components.vocabulary.settings import SETTING_NAMES

log = logging.getLogger(__name__)

#: the route of a shared result, below the app's root
ROUTE = "/share/{share_id}"


# ---- Markdown without live HTML ------------------------------------------------------------------
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "breaks": True}).disable("image")

    def link_open(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
        return self.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


_MD = _markdown()


def markdown_html(text: str) -> str:
    """Markdown as HTML in which no tag of the text becomes an element (markdown-it escapes raw HTML)."""
    return _MD.render(text or "")


# ---- language ----------------------------------------------------------------------------------
def page_language(query_lang: str | None, accept_language: str | None) -> str:
    """`?lang=` where given; else the Accept-Language entry of ours with the highest weight; else German."""
    if query_lang:
        return normalize_language(query_lang)
    best, best_q = None, 0.0
    for part in (accept_language or "")[:1000].split(",")[:32]:
        tag, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower()[:2]
        if lang in LANGUAGES and q > best_q:
            best, best_q = lang, q
    return best or "de"


def format_date(timestamp: float, lang: str) -> str:
    when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return when.strftime("%d.%m.%Y, %H:%M UTC") if lang == "de" else when.strftime("%Y-%m-%d, %H:%M UTC")


# ---- the page ----------------------------------------------------------------------------------
PAGE_CSS = """
:root { color-scheme: light; }
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.5;
  color: #1f2937; background: #f9fafb; }
main { max-width: 1400px; margin: 0 auto; padding: 1rem; }
header { border-bottom: 1px solid #d1d5db; margin-bottom: 1rem; }
header nav { display: flex; flex-wrap: wrap; gap: 1rem; font-size: 0.95rem; }
a { color: #9a3412; }
h1 { font-size: 1.6rem; margin: 0.5rem 0; }
h2 { font-size: 1.3rem; margin: 0 0 0.5rem; }
h3 { font-size: 1.05rem; margin: 0 0 0.25rem; overflow-wrap: anywhere; }
.round { background: #fff; border: 1px solid #d1d5db; border-radius: 8px; padding: 1rem; margin-bottom: 1.5rem; }
.facts { margin: 0 0 0.75rem; padding-left: 1.2rem; }
.question-label { margin: 0 0 0.25rem; }
.question { white-space: pre-wrap; overflow-wrap: anywhere; background: #f3f4f6; border-left: 4px solid #c2410c;
  padding: 0.5rem 0.75rem; margin: 0 0 1rem; }
.panes { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 1rem; }
.pane { border: 1px solid #d1d5db; border-radius: 8px; padding: 0.75rem; min-width: 0; }
.pane.winner { border: 2px solid #15803d; }
.model-id { font-size: 0.85rem; margin: 0 0 0.5rem; overflow-wrap: anywhere; }
.answer { overflow-wrap: anywhere; }
.answer pre { overflow-x: auto; background: #f3f4f6; padding: 0.5rem; }
.notes, .stats { font-size: 0.9rem; color: #374151; margin: 0.5rem 0 0; }
.error { color: #991b1b; }
details { margin: 0.5rem 0; font-size: 0.9rem; }
details dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.1rem 0.75rem; margin: 0.5rem 0; }
details dd { margin: 0; overflow-wrap: anywhere; }
.system { white-space: pre-wrap; overflow-wrap: anywhere; }
@media (max-width: 640px) { main { padding: 0.5rem; } h1 { font-size: 1.35rem; } }
"""


def _document(lang: str, title: str, body: str) -> str:
    esc = html.escape
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow"><meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)} · {esc(t('title', lang))}</title><style>{PAGE_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _nav(lang: str) -> str:
    other = "en" if lang == "de" else "de"
    return (
        f'<nav aria-label="{html.escape(t("language", lang))}">'
        f'<a href="?lang={other}" lang="{other}">{html.escape(t("share_page_other", lang))}</a>'
        f'<a href="../?lang={lang}">{html.escape(t("share_page_home", lang))}</a></nav>'
    )


def message_page(lang: str, title_key: str, text: str) -> str:
    """A page with one message: unknown or expired link, sharing off."""
    title = t(title_key, lang)
    body = f'<header>{_nav(lang)}<h1>{html.escape(title)}</h1></header><p id="share-message">{html.escape(text)}</p>'
    return _document(lang, title, body)


def _setting_value(value: Any, lang: str) -> str:
    if isinstance(value, bool):
        return "✓" if value else "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "–"
    if isinstance(value, float):
        return number(value, lang)
    return "–" if value in (None, "") else str(value)


def _settings_list(settings: Any, lang: str) -> str:
    if not isinstance(settings, dict):
        return ""
    rows = [
        f"<dt>{html.escape(t(SETTING_LABELS.get(name, name), lang))}</dt>"
        f"<dd>{html.escape(_setting_value(settings[name], lang))}</dd>"
        for name in SETTING_NAMES
        if name in settings and settings[name] not in (None, "", [])
    ]
    return f"<dl>{''.join(rows)}</dl>" if rows else ""


def _form(value: Any, lang: str) -> str:
    return t("share_register_none", lang) if value in (None, "", "none") else str(value)


def _info_text(value: Any, lang: str) -> str:
    """An answer's language or register note, whatever its shape: a language `{"code": "en", "de_share": 0.1}`, a
    register `{"form": "Sie", "mixed": false, "system": "du"}`, a string, or another small dict (`key: value`)."""
    if isinstance(value, dict):
        code, share = value.get("code"), value.get("de_share")
        if isinstance(code, str):
            text = code
            if isinstance(share, (int, float)) and not isinstance(share, bool):
                text += " (" + t("share_german_share", lang, share=round(share * 100)) + ")"
            return text
        if "form" in value:
            text = t("share_register_mixed", lang) if value.get("mixed") is True else _form(value.get("form"), lang)
            if "system" in value:
                text += f" ({t('export_system', lang)}: {_form(value.get('system'), lang)})"
            return text
        return ", ".join(f"{k}: {_setting_value(v, lang)}" for k, v in value.items())
    return _setting_value(value, lang) if value is not None else ""


def _pane_html(pane: dict[str, Any], data_round: dict[str, Any], lang: str) -> str:
    esc = html.escape
    letter = pane.get("letter") if pane.get("letter") in LETTERS else "?"
    label = str(pane.get("model_label") or pane.get("model_id") or "")
    if data_round.get("blind"):
        heading = f"{t('compare_blind_name', lang, letter=letter)}: {label}"
    else:
        heading = f"{LETTERS.index(letter) + 1 if letter in LETTERS else '?'} · {label}"
    winner = data_round.get("blind") and data_round.get("winner") == letter
    out = [f'<article class="pane{" winner" if winner else ""}" data-letter="{esc(str(letter))}">']
    out.append(f"<h3>{esc(heading)}</h3>")
    if pane.get("model_id"):
        out.append(f'<p class="model-id"><code>{esc(str(pane["model_id"]))}</code></p>')
    notes = []
    for key, label_key in (("language", "share_language"), ("register", "share_register")):
        text = _info_text(pane.get(key), lang)
        if text:
            notes.append(f'<span class="{key}">{esc(t(label_key, lang))}: {esc(text)}</span>')
    if notes:
        out.append(f'<p class="notes">{" · ".join(notes)}</p>')
    details = _settings_list(pane.get("settings"), lang)
    system = pane.get("system_prompt")
    if isinstance(system, str) and system:
        details += f'<p class="system"><strong>{esc(t("export_system", lang))}:</strong> {esc(system)}</p>'
    if details:
        out.append(f"<details><summary>{esc(t('share_settings', lang))}</summary>{details}</details>")
    text = pane.get("text") if isinstance(pane.get("text"), str) else ""
    answer = markdown_html(text) if text.strip() else f"<p><em>{esc(t('export_no_answer', lang))}</em></p>"
    out.append(f'<div class="answer">{answer}</div>')
    error = pane.get("error")
    if isinstance(error, dict) and isinstance(error.get(lang), str):
        out.append(f'<p class="error">{esc(t("err_prefix", lang) + error[lang])}</p>')
    stats = pane.get("stats")
    if isinstance(stats, dict) and stats:
        out.append(f'<p class="stats">{esc(stats_line(stats, lang))}</p>')
    out.append("</article>")
    return "".join(out)


def _round_html(n: int, data_round: dict[str, Any], lang: str) -> str:
    esc = html.escape
    heading = t("export_round", lang, n=n)
    if data_round.get("title"):
        heading += f": {data_round['title']}"
    facts = []
    if data_round.get("blind"):
        winner = data_round.get("winner")
        choice = t("compare_vote_tie", lang) if winner == TIE else t("compare_blind_name", lang, letter=winner)
        facts.append(f"{t('export_mode', lang)}: {t('export_mode_blind', lang)} · {t('export_vote', lang)}: {choice}")
    else:
        facts.append(f"{t('export_mode', lang)}: {t('export_mode_open', lang)}")
    shared = data_round.get("shared_settings") or {}
    parts = [
        f"{t(SETTING_LABELS.get(k, k), lang)} = {_setting_value(shared[k], lang)}"
        for k in SETTING_NAMES
        if k in shared and shared[k] not in (None, "", [])
    ]
    if shared.get("family_defaults"):
        parts.insert(0, t("export_family_defaults", lang))
    if parts:
        facts.append(f"{t('export_shared_settings', lang)}: {'; '.join(parts)}")
    out = [f'<section class="round" aria-labelledby="round-{n}"><h2 id="round-{n}">{esc(heading)}</h2>']
    out.append('<ul class="facts">' + "".join(f"<li>{esc(f)}</li>" for f in facts) + "</ul>")
    out.append(f'<p class="question-label"><strong>{esc(t("share_question", lang))}</strong></p>')
    out.append(f'<p class="question">{esc(str(data_round["prompt"]))}</p>')
    panes = [p for p in data_round.get("panes") or [] if isinstance(p, dict)]
    out.append('<div class="panes">' + "".join(_pane_html(p, data_round, lang) for p in panes) + "</div></section>")
    return "".join(out)


def share_page(data: dict[str, Any], expires: float, lang: str) -> str:
    """The whole read-only page of a share (its JSON as features.share.snapshot wrote it)."""
    esc = html.escape
    title = t("share_page_title", lang)
    created = dt.datetime.fromisoformat(str(data.get("created"))).timestamp()
    intro = t("share_page_intro", lang, created=format_date(created, lang), expires=format_date(expires, lang))
    out = [f"<header>{_nav(lang)}<h1>{esc(title)}</h1><p>{esc(intro)}</p></header>"]
    omitted = data.get("omitted")
    if isinstance(omitted, int) and omitted > 0:
        out.append(f'<p class="omitted">{esc(t("share_omitted", lang, n=omitted))}</p>')
    rounds = [r for r in data.get("rounds") or [] if isinstance(r, dict) and isinstance(r.get("prompt"), str)]
    out += [_round_html(n, r, lang) for n, r in enumerate(rounds, 1)]
    return _document(lang, title, "".join(out))


# ---- the route ---------------------------------------------------------------------------------
PAGE_HEADERS = {
    "cache-control": "no-store",
    "x-robots-tag": "noindex, nofollow",
    "referrer-policy": "no-referrer",
}


def share_routes(store_of: Callable[[], Any] = share_store) -> list[Any]:
    """The `/share/<id>` route for the app's FastAPI (`app_kwargs["routes"]`, ahead of Gradio's own routes)."""
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def shared(request: Request) -> HTMLResponse:
        lang = page_language(request.query_params.get("lang"), request.headers.get("accept-language"))
        if not sharing_enabled():
            page = message_page(lang, "share_off_title", t("err_share_off", lang))
            return HTMLResponse(page, status_code=404, headers=PAGE_HEADERS)
        store = store_of()
        found = await asyncio.to_thread(store.get, request.path_params.get("share_id"))
        if isinstance(found, Found):
            try:
                page = share_page(found.data, found.expires, lang)
            except (TypeError, ValueError, KeyError) as exc:  # a file edited by hand: unknown rather than a 500
                log.warning("share not shown: %s", type(exc).__name__)
            else:
                return HTMLResponse(page, headers=PAGE_HEADERS)
        if isinstance(found, Expired):
            days = int(store.days) if float(store.days).is_integer() else store.days
            text = t("share_expired", lang, date=format_date(found.at, lang), days=days)
            return HTMLResponse(message_page(lang, "share_expired_title", text), status_code=410, headers=PAGE_HEADERS)
        text = t("share_unknown", lang)
        return HTMLResponse(message_page(lang, "share_unknown_title", text), status_code=404, headers=PAGE_HEADERS)

    return [Route(ROUTE, shared, methods=["GET"])]


# ---- the button ----------------------------------------------------------------------------------
#: turns the path the server returns into the address the visitor copies, as the browser sees the page (behind any
#: proxy and root path)
ABSOLUTE_LINK_JS = "(link) => (link && !/^https?:/.test(link)) ? new URL(link, window.location.href).href : link"


def share_button(tr: Translations, prefix: str) -> Any:
    """The button: idle until a result can be shared, hidden when sharing is off."""
    return tr.add(
        gr.Button(t("share_button"), interactive=False, visible=sharing_enabled(), elem_id=f"{prefix}-share"),
        "share_button",
        "value",
    )


def share_link_box(tr: Translations, prefix: str) -> Any:
    """The link, with a copy button; shown once a link is made."""
    return tr.add(
        gr.Textbox(
            "",
            label=t("share_link"),
            lines=2,  # a phone shows the whole address (about 60 characters) instead of its first line
            interactive=False,
            visible=False,
            buttons=["copy"],
            elem_id=f"{prefix}-share-link",
        ),
        "share_link",
    )


def can_share(rounds: Sequence[Round] | None) -> bool:
    """Whether the button is open: sharing on, the latest round over and, when blind, voted on."""
    if not sharing_enabled() or not rounds:
        return False
    last = rounds[-1]
    return last.done and not (last.blind and last.winner is None)


def share_button_update(rounds: Sequence[Round] | None) -> Any:
    return gr.update(interactive=can_share(rounds))


def no_link() -> Any:
    return gr.update(value="", visible=False)


def _same(value: Any) -> Any:
    return value


def wire_share(button: Any, link: Any, inputs: list[Any], rounds_of: Callable[[Any], Sequence[Round] | None]) -> None:
    """Click: the rounds checked and stored on the server (features.share), the link shown; refusals as a toast."""

    async def make_link(value: Any, lang: str, request: gr.Request) -> Any:
        try:
            if not sharing_enabled():
                raise InputError("err_share_off")
            share_id = await asyncio.to_thread(share_store().create, list(rounds_of(value) or []), request)
        except InputError as exc:
            warn(t(exc.key, lang, **exc.params), lang)
            return gr.update()
        except OSError as exc:
            log.warning("share not stored: %s", type(exc).__name__)
            warn(t("err_share_write", lang, detail=type(exc).__name__), lang)
            return gr.update()
        return gr.update(value=f"share/{share_id}", visible=True)

    # the page makes the address absolute (its own URL, behind any proxy); the identity function keeps the event
    # a backend one, so a visitor calling it by its index gets an answer instead of a logged IndexError
    button.click(make_link, inputs, [link], api_visibility="private").then(
        _same, [link], [link], js=ABSOLUTE_LINK_JS, api_visibility="private", queue=False
    )
