"""The page's own script: Gradio's component texts and `<html lang>` follow the page language, not the browser's.

Gradio picks its locale (the texts of its components: "Drop File Here", "Copy", …) and `<html lang>` from the
browser's language. The page language is the playground's own (`?lang=`, the language switch), so this script
switches Gradio's locale through the `changeLocale` export of Gradio's own frontend module (the same module
instance the page runs on), keeps `<html lang>` on the page language, writes the language into the address
(a reload keeps it), and names toast headers and their close buttons in the page language (Gradio 6 writes the
toast type, "Warning", there whatever title is given). Every text comes from components/vocabulary/messages.py.
"""

from __future__ import annotations

import json

from components.vocabulary.messages import LANGUAGES, t

#: Toast types Gradio uses, with the message key of each header.
TOAST_KEYS = {"warning": "toast_warning", "info": "toast_info", "error": "toast_error", "success": "toast_success"}

_SCRIPT = """
<script>
(() => {
  const TEXTS = __TEXTS__;
  const LANGS = __LANGS__;
  const normal = (lang) => (LANGS.includes(lang) ? lang : LANGS[0]);
  const fromAddress = () => normal((new URLSearchParams(location.search).get("lang") || "").slice(0, 2));
  let pageLang = fromAddress();
  let core = null;

  async function gradioCore() {
    if (core) return core;
    const entry = performance.getEntriesByType("resource").map((e) => e.name)
      .find((name) => /\\/assets\\/core-[^/]*\\.js$/.test(name));
    if (!entry) return null;
    const module = await import(entry);
    if (typeof module.changeLocale === "function") core = module;
    return core;
  }

  function relabel(root) {
    const texts = TEXTS[pageLang];
    for (const title of root.querySelectorAll(".toast-title")) {
      const kind = Object.keys(texts.toast).find((k) => title.classList.contains(k));
      const node = title.firstChild;
      if (kind && node && node.nodeType === Node.TEXT_NODE && node.nodeValue !== texts.toast[kind] + " ") {
        node.nodeValue = texts.toast[kind] + " ";
      }
    }
    for (const close of root.querySelectorAll("[data-testid=toast-close]")) {
      if (close.getAttribute("aria-label") !== texts.close) close.setAttribute("aria-label", texts.close);
    }
    accessible(root);
  }

  // Gradio's fixed English names that axe-core flags: the upload area's name differs from the text it shows
  // (let the shown text name it), and an empty JSON view puts aria-label on a plain div (give it a role)
  function accessible(root) {
    const all = (selector) => [...(root.matches && root.matches(selector) ? [root] : []),
      ...root.querySelectorAll(selector)];
    for (const button of all("button.upload-container[aria-label]")) button.removeAttribute("aria-label");
    for (const div of all("div.empty[aria-label]:not([role])")) div.setAttribute("role", "img");
  }

  // Gradio's own dictionaries (de, en, …), flattened to "key.sub" -> text
  const dictionaries = {};
  async function dictionary(lang) {
    if (dictionaries[lang]) return dictionaries[lang];
    const module = await gradioCore();
    const entry = module && module.process_langs ? module.process_langs()[lang] : null;
    if (!entry) return {};
    let data = entry.type === "lazy" ? await entry.data() : entry.data;
    data = (data && data.default) || data || {};
    const flat = {};
    const walk = (node, prefix) => {
      for (const [k, v] of Object.entries(node)) {
        if (typeof v === "string") flat[prefix + k] = v; else if (v && typeof v === "object") walk(v, prefix + k + ".");
      }
    };
    walk(data, "");
    return (dictionaries[lang] = flat);
  }

  // Texts Gradio wrote once, in the locale it had when a component was drawn (the upload area, the names of
  // icon buttons): put them into the page's language
  async function translateDrawn() {
    const want = await dictionary(pageLang);
    const others = await Promise.all(LANGS.filter((l) => l !== pageLang).map(dictionary));
    const back = new Map();
    for (const other of others) {
      for (const [key, text] of Object.entries(other)) if (want[key]) back.set(text, want[key]);
    }
    const swap = (text) => {
      const core = text.trim();
      const dashed = /^- (.*) -$/.exec(core);
      if (dashed && back.has(dashed[1])) return text.replace(core, "- " + back.get(dashed[1]) + " -");
      return back.has(core) ? text.replace(core, back.get(core)) : null;
    };
    for (const area of document.querySelectorAll("[data-testid=upload-text]")) {
      const walker = document.createTreeWalker(area, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const swapped = swap(node.nodeValue);
        if (swapped !== null) node.nodeValue = swapped;
      }
    }
    for (const el of document.querySelectorAll("[aria-label], [title]")) {
      for (const attr of ["aria-label", "title"]) {
        const value = el.getAttribute(attr);
        const swapped = value ? swap(value) : null;
        if (swapped !== null) el.setAttribute(attr, swapped);
      }
    }
    accessible(document);
  }

  let localeTries = 0;
  async function applyLocale() {
    try {
      const module = await gradioCore();
      if (module) {
        module.changeLocale(pageLang);
        await translateDrawn();
        setTimeout(translateDrawn, 800);  // after the server's own updates for the switch have been drawn
        return;
      }
    } catch (err) { /* Gradio's texts stay in the browser's language */ }
    if (localeTries++ < 50) setTimeout(applyLocale, 200);  // the app's modules are still loading
  }

  window.playgroundSetLanguage = (lang) => {
    pageLang = normal(lang);
    document.documentElement.lang = pageLang;
    const address = new URL(location.href);
    if (address.searchParams.get("lang") !== pageLang) {
      address.searchParams.set("lang", pageLang);
      history.replaceState(history.state, "", address);
    }
    localeTries = 0;
    applyLocale();
    relabel(document);
    return pageLang;
  };
  window.playgroundLanguage = () => pageLang;

  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "attributes" && r.target === document.documentElement) {
        // Gradio sets <html lang> to its own locale (the browser's at first): the page language wins
        if (document.documentElement.lang !== pageLang) { document.documentElement.lang = pageLang; applyLocale(); }
      } else if (r.type === "childList" || r.type === "characterData") {
        const target = r.target.nodeType === Node.ELEMENT_NODE ? r.target : r.target.parentElement;
        if (target && target.closest && target.closest(".toast-wrap, [data-testid=toast-body]")) relabel(document);
        else for (const n of r.addedNodes || []) if (n.nodeType === Node.ELEMENT_NODE) relabel(n);
      }
    }
  }).observe(document.documentElement, {attributes: true, attributeFilter: ["lang"], childList: true,
    subtree: true, characterData: true});

  document.documentElement.lang = pageLang;
  applyLocale();
})();
</script>
"""


def page_texts() -> dict[str, dict[str, object]]:
    return {
        lang: {"toast": {kind: t(key, lang) for kind, key in TOAST_KEYS.items()}, "close": t("toast_close", lang)}
        for lang in LANGUAGES
    }


def page_head() -> str:
    """The `<script>` for `launch(head=...)`."""
    texts = json.dumps(page_texts(), ensure_ascii=False).replace("</", "<\\/")
    return _SCRIPT.replace("__TEXTS__", texts).replace("__LANGS__", json.dumps(list(LANGUAGES)))


#: The language switch's client-side step (runs before its server handler, with the chosen language).
SET_LANGUAGE_JS = "(lang) => (window.playgroundSetLanguage ? window.playgroundSetLanguage(lang) : lang)"
