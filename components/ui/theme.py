"""The page's theme: Gradio's default look, with font files that hold every letter for every weight the page uses."""

from __future__ import annotations

import gradio as gr

#: Gradio 6.31 ships `SourceSansPro-SemiBold.woff2` and `IBMPlexMono-SemiBold.woff2` as subsets holding only a few
#: letters (A, B), so semibold text (its default weight 600 for labels and buttons) was drawn in two typefaces. The
#: Regular (400) and Bold (700) files are complete: the browser takes the 700 face for 600 and above and the 400 face
#: below, so every weight is drawn in one family.
COMPLETE_WEIGHTS = (400, 700)


def page_theme() -> gr.themes.Base:
    """gr.themes.Default with complete font faces only."""
    return gr.themes.Default(
        font=(
            gr.themes.LocalFont("Source Sans Pro", weights=COMPLETE_WEIGHTS),
            "ui-sans-serif",
            "system-ui",
            "sans-serif",
        ),
        font_mono=(
            gr.themes.LocalFont("IBM Plex Mono", weights=COMPLETE_WEIGHTS),
            "ui-monospace",
            "Consolas",
            "monospace",
        ),
    )
