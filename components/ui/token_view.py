"""An answer with every token tinted by its probability, and each token's alternatives on click (plain HTML)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from components.vocabulary.messages import number, t

#: (lowest probability, CSS class) from the surest band down: a token takes the first band it reaches
BANDS = ((0.9, "tp-sure"), (0.5, "tp-fair"), (0.1, "tp-unsure"), (0.0, "tp-low"))

#: the view's styles: light tints under dark text in both themes (contrast above 12:1), the lowest band also
#: underlined (not colour alone), the probability above a token on hover and keyboard focus
CSS = """
.tp-view{font-size:var(--text-md)}
.tp-view .tp-text{white-space:pre-wrap;line-height:1.9;overflow-wrap:anywhere}
.tp-view details.tp{display:inline}
.tp-view details.tp>summary{display:inline;list-style:none;cursor:pointer;position:relative;border-radius:3px}
.tp-view details.tp>summary::-webkit-details-marker{display:none}
.tp-view .tp-fair>summary{background:#dbe9ff;color:#1f2328}
.tp-view .tp-unsure>summary{background:#ffe9a8;color:#1f2328}
.tp-view .tp-low>summary{background:#ffd0cc;color:#1f2328;text-decoration:underline dotted 2px}
.tp-view details.tp>summary:focus-visible{outline:2px solid #1a56db;outline-offset:1px}
.tp-view details.tp>summary:hover::after,.tp-view details.tp>summary:focus-visible::after{content:attr(data-p);
position:absolute;left:0;bottom:100%;z-index:20;white-space:nowrap;background:#1f2328;color:#fff;
font-size:12px;line-height:1.3;padding:1px 4px;border-radius:3px;pointer-events:none}
.tp-view .tp-alts{display:inline-block;vertical-align:top;margin:0 4px;padding:2px 6px;border:1px solid #8c959f;
border-radius:4px;background:#fff;color:#1f2328;font-size:13px;line-height:1.5;white-space:normal;max-width:100%}
.tp-view .tp-alts ol{margin:0;padding-left:1.4em}
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
    """One answer's tokens as inline <details>: the token (tinted, its probability as title and label) and, opened,
    its alternatives. Every text from the model is escaped: nothing it writes becomes markup."""
    out = []
    for entry in token_probs:
        token = str(entry.get("token", ""))
        prob = float(entry.get("prob") or 0.0)
        label = html.escape(t("probs_token", lang, token=token.strip() or token, prob=percent(prob, lang)), quote=True)
        alternatives = "".join(
            ('<li class="tp-chosen">' if str(alt.get("token")) == token else "<li>")
            + f"{_shown(str(alt.get('token', '')))} {percent(float(alt.get('prob') or 0.0), lang)} %</li>"
            for alt in entry.get("top") or ()
        )
        out.append(
            f'<details class="tp {band(prob)}"><summary title="{label}" aria-label="{label}" '
            f'data-p="{percent(prob, lang)} %">{html.escape(token)}</summary>'
            f'<span class="tp-alts"><b>{html.escape(t("probs_alternatives", lang))}</b><ol>{alternatives}</ol></span>'
            "</details>"
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
