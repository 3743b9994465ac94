"""An answer with every token tinted by its probability, and each token's alternatives on click (plain HTML)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from components.vocabulary.messages import number, t

#: (lowest probability, CSS class) from the surest band down: a token takes the first band it reaches
BANDS = ((0.9, "tp-sure"), (0.5, "tp-fair"), (0.1, "tp-unsure"), (0.0, "tp-low"))

#: the view's styles: light tints under dark text in both themes (contrast above 12:1), the lowest band also
#: underlined (not colour alone); a token that has the focus (Tab, a click, a tap) shows its probability and its
#: alternatives in a box under its line, as wide as the text and in the flow (no box runs off a phone's screen or
#: hides under the next element). Plain CSS: a <details> cannot be inline in Chromium, and no script is needed.
CSS = """
.tp-view{font-size:var(--text-md)}
.tp-view .tp-text{white-space:pre-wrap;line-height:1.9;overflow-wrap:anywhere;position:relative}
.tp-view .tp{cursor:pointer;border-radius:3px}
.tp-view .tp-fair{background:#dbe9ff;color:#1f2328}
.tp-view .tp-unsure{background:#ffe9a8;color:#1f2328}
.tp-view .tp-low{background:#ffd0cc;color:#1f2328;text-decoration:underline dotted 2px}
.tp-view .tp:focus{outline:2px solid #1a56db;outline-offset:1px}
.tp-view .tp-alts{display:none}
.tp-view .tp-sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.tp-view .tp:focus>.tp-alts{display:block;margin:.2em 0;
padding:4px 8px;border:1px solid #8c959f;border-radius:6px;background:#fff;color:#1f2328;font-size:14px;
line-height:1.5;white-space:normal;box-shadow:0 2px 8px rgba(0,0,0,.25);cursor:auto}
.tp-view .tp-alts ol{margin:.2em 0 0;padding-left:1.6em}
.tp-view .tp-alts .tp-chosen{font-weight:bold}
.tp-view .tp-note{font-style:italic}
.tp-view h4{margin:.6em 0 .2em}
"""


def band(prob: float) -> str:
    """The CSS class of a probability's band (BANDS)."""
    return next(name for low, name in BANDS if prob >= low)


def _shown(token: str) -> str:
    """A token as the alternatives list shows it: whitespace made visible, escaped."""
    visible = token.replace("\n", "↵").replace("\t", "⇥")
    return html.escape(visible if visible.strip() else visible.replace(" ", "␣") or "∅", quote=True)


def percent(prob: float, lang: str) -> str:
    """A probability in percent: one decimal below 10 %, none above."""
    return number(100 * prob, lang, 1 if prob < 0.1 else 0)


def tokens_html(token_probs: Sequence[dict[str, Any]], lang: str) -> str:
    """One answer's tokens as focusable spans: tinted by probability, the probability as title; a screen reader reads
    the token, its probability and the alternatives (a visually hidden part of its name: what the box shows on
    focus). Every text from the model is escaped: nothing it writes becomes markup."""
    out = []
    heading = t("probs_alternatives", lang)
    for entry in token_probs:
        token = str(entry.get("token", ""))
        prob = float(entry.get("prob") or 0.0)
        label = t("probs_token", lang, token=token.strip() or token, prob=percent(prob, lang))
        alternatives = [
            (str(alt.get("token", "")), percent(float(alt.get("prob") or 0.0), lang)) for alt in entry.get("top") or ()
        ]
        spoken = (
            f" ({percent(prob, lang)} %; {heading}: "
            + ", ".join(f"{text.strip() or text} {p} %" for text, p in alternatives)
            + ")"
        )
        items = "".join(
            ('<li class="tp-chosen">' if text == token else "<li>") + f"{_shown(text)} {p} %</li>"
            for text, p in alternatives
        )
        out.append(
            f'<span class="tp {band(prob)}" tabindex="0" role="button" title="{html.escape(label, quote=True)}">'
            f'{html.escape(token)}<span class="tp-sr">{html.escape(spoken)}</span>'
            f'<span class="tp-alts" aria-hidden="true"><b>{html.escape(label)}</b> · {html.escape(heading)}:'
            f"<ol>{items}</ol></span></span>"
        )
    return "".join(out)


def probs_view(answers: Sequence[tuple[str, Any, str | None]], lang: str) -> str:
    """The view of several answers, each (heading, token_probs or None, note or None); "" when none has either
    (the view stays empty until probabilities were asked for)."""
    parts = []
    for heading, token_probs, note in answers:
        if token_probs:
            body = f'<div class="tp-text">{tokens_html(token_probs, lang)}</div>'
        elif note:
            body = f'<p class="tp-note">{html.escape(note)}</p>'
        else:
            continue
        parts.append(f'<div class="tp-answer"><h4>{html.escape(heading)}</h4>{body}</div>')
    if not parts:
        return ""
    return (
        f'<section class="tp-view" aria-label="{html.escape(t("probs_heading", lang), quote=True)}">'
        f"<h3>{html.escape(t('probs_heading', lang))}</h3>"
        f'<p class="tp-hint">{html.escape(t("probs_hint", lang))}</p>'
        f'<p class="tp-legend">{html.escape(t("probs_legend", lang))}</p>'
        f"{''.join(parts)}</section>"
    )
