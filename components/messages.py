"""Every user-facing text of the playground, in German and English, in one place."""

from __future__ import annotations

from typing import Any

LANGUAGES = ("de", "en")
DEFAULT_LANGUAGE = "de"

MESSAGES: dict[str, dict[str, str]] = {
    # ---- page and labels -------------------------------------------------------------------
    "title": {"de": "Playground für deutsche Sprachmodelle", "en": "German LLM Playground"},
    "subtitle": {
        "de": "IGEL, EM German und LeoLM im Vergleich: Modell und Quantisierung wählen, Systemprompt "
        "bearbeiten, Antworten live verfolgen.",
        "en": "IGEL, EM German and LeoLM side by side: pick a model and a quantization, edit the "
        "system prompt, watch answers stream.",
    },
    "language": {"de": "Sprache / Language", "en": "Sprache / Language"},
    "tab_chat": {"de": "Chat", "en": "Chat"},
    "family": {"de": "Modellfamilie", "en": "Model family"},
    "variant": {"de": "Variante", "en": "Variant"},
    "quant": {"de": "Quantisierung / Build", "en": "Quantization / build"},
    "system_prompt": {"de": "Systemprompt", "en": "System prompt"},
    "reset_system": {"de": "Systemprompt zurücksetzen", "en": "Reset system prompt"},
    "settings": {"de": "Einstellungen", "en": "Settings"},
    "temperature": {"de": "Temperatur", "en": "Temperature"},
    "top_p": {"de": "Top-p", "en": "Top-p"},
    "top_k": {"de": "Top-k", "en": "Top-k"},
    "max_new_tokens": {"de": "Max. neue Tokens", "en": "Max new tokens"},
    "repetition_penalty": {"de": "Wiederholungsstrafe", "en": "Repetition penalty"},
    "seed": {"de": "Seed (leer = zufällig)", "en": "Seed (empty = random)"},
    "stop_sequences": {
        "de": "Stoppsequenzen (eine pro Zeile, zusätzlich zu denen der Familie)",
        "en": "Stop sequences (one per line, in addition to the family's)",
    },
    "reset_settings": {"de": "Empfohlene Einstellungen", "en": "Recommended settings"},
    "message": {"de": "Nachricht", "en": "Message"},
    "message_placeholder": {
        "de": "Frag etwas auf Deutsch … (Enter sendet, Shift+Enter neue Zeile)",
        "en": "Ask something in German … (Enter sends, Shift+Enter new line)",
    },
    "send": {"de": "Senden", "en": "Send"},
    "stop": {"de": "Stopp", "en": "Stop"},
    "retry": {"de": "Nochmal", "en": "Retry"},
    "clear": {"de": "Leeren", "en": "Clear"},
    "chatbot": {"de": "Unterhaltung", "en": "Conversation"},
    "examples": {"de": "Beispiele aus den Modellkarten", "en": "Examples from the model cards"},
    "raw_prompt": {"de": "Roher Prompt, wie er ans Modell geht", "en": "Raw prompt as sent to the model"},
    "model_info": {"de": "Über das Modell", "en": "About the model"},
    "stats_line": {
        "de": "⏱ erstes Token {ttft} · {rate} Tokens/s · {tokens} Tokens · Ende: {reason}",
        "en": "⏱ first token {ttft} · {rate} tokens/s · {tokens} tokens · finish: {reason}",
    },
    "finish_length": {"de": "Längenlimit", "en": "length limit"},
    "finish_stop": {"de": "Modell fertig", "en": "model finished"},
    "finish_eos_token": {"de": "Modell fertig", "en": "model finished"},
    "finish_stop_sequence": {"de": "Stoppsequenz", "en": "stop sequence"},
    "finish_stopped": {"de": "gestoppt", "en": "stopped"},
    "finish_error": {"de": "Fehler", "en": "error"},
    "finish_unknown": {"de": "unbekannt", "en": "unknown"},
    "available": {"de": "läuft hier", "en": "runs here"},
    "unavailable": {"de": "nicht verfügbar", "en": "not available"},
    "model_card_line": {
        "de": "**{family}** · {variant} · {quant} · Kontext {context} Tokens · Engine: {engine}",
        "en": "**{family}** · {variant} · {quant} · context {context} tokens · engine: {engine}",
    },
    "settings_source": {"de": "Empfohlene Einstellungen: {source}", "en": "Recommended settings: {source}"},
    # ---- status while working ---------------------------------------------------------------
    "status_loading": {"de": "Lade {model} …", "en": "Loading {model} …"},
    "status_downloading": {
        "de": "Lade {file} herunter: {percent} % ({done_mb} von {total_mb} MB)",
        "en": "Downloading {file}: {percent} % ({done_mb} of {total_mb} MB)",
    },
    "status_queued": {
        "de": "In der Warteschlange: Position {position}",
        "en": "Waiting in queue: position {position}",
    },
    # ---- reasons a build cannot run here ---------------------------------------------------
    "why_needs_gpu": {"de": "{kind} braucht eine GPU (CUDA)", "en": "{kind} needs a GPU (CUDA)"},
    "why_needs_package": {
        "de": "{kind} braucht das Paket `{package}` (nicht installiert)",
        "en": "{kind} needs the package `{package}` (not installed)",
    },
    "why_too_big": {
        "de": "braucht ca. {need:.1f} GB Speicher, hier sind {have:.1f} GB frei",
        "en": "needs about {need:.1f} GB of memory, {have:.1f} GB are available here",
    },
    "why_offline": {
        "de": "nicht im Cache und Offline-Modus (HF_HUB_OFFLINE=1) aktiv",
        "en": "not in the cache and offline mode (HF_HUB_OFFLINE=1) is on",
    },
    "why_no_endpoint": {
        "de": "Endpunkt {endpoint} nicht konfiguriert (Umgebungsvariable {env} fehlt)",
        "en": "endpoint {endpoint} not configured (environment variable {env} is missing)",
    },
    "why_package_missing": {
        "de": "das Paket `{package}` mit der Modelldatei ist nicht installiert",
        "en": "the package `{package}` holding the model file is not installed",
    },
    # ---- refusals of bad input ------------------------------------------------------------
    "err_empty": {
        "de": "Bitte gib zuerst eine Nachricht ein.",
        "en": "Please type a message first.",
    },
    "err_too_long_chars": {
        "de": "Die Nachricht ist zu lang ({chars} Zeichen, höchstens {limit}).",
        "en": "The message is too long ({chars} characters, at most {limit}).",
    },
    "err_context": {
        "de": "Der Prompt passt nicht ins Kontextfenster: {prompt_tokens} Tokens Prompt + {max_new_tokens} "
        "neue Tokens = {total} Tokens, das Modell fasst {context}. Kürze den Verlauf (Leeren) oder senke "
        "„Max. neue Tokens“.",
        "en": "The prompt does not fit the context window: {prompt_tokens} prompt tokens + {max_new_tokens} "
        "new tokens = {total} tokens, the model takes {context}. Shorten the conversation (Clear) or lower "
        "'Max new tokens'.",
    },
    "err_setting_range": {
        "de": "Ungültige Einstellung „{name}“: {value} liegt nicht zwischen {low} und {high}.",
        "en": "Invalid setting '{name}': {value} is not between {low} and {high}.",
    },
    "err_setting_type": {
        "de": "Ungültige Einstellung „{name}“: {value} ist keine gültige Zahl.",
        "en": "Invalid setting '{name}': {value} is not a valid number.",
    },
    "err_stop_sequences": {
        "de": "Zu viele oder zu lange Stoppsequenzen (höchstens {count}, je {chars} Zeichen).",
        "en": "Too many or too long stop sequences (at most {count}, {chars} characters each).",
    },
    "err_unknown_model": {
        "de": "Unbekanntes Modell „{model}“. Gültig sind Kennungen wie {example}.",
        "en": "Unknown model '{model}'. Valid ids look like {example}.",
    },
    "err_unavailable": {
        "de": "{model} kann hier nicht laufen: {why}.",
        "en": "{model} cannot run here: {why}.",
    },
    "err_history": {
        "de": "Ungültiger Verlauf: erwartet wird eine Liste von [Frage, Antwort]-Paaren.",
        "en": "Invalid history: expected a list of [question, answer] pairs.",
    },
    "err_too_many_turns": {
        "de": "Die Unterhaltung ist zu lang ({turns} Runden, höchstens {limit}). Bitte leeren.",
        "en": "The conversation is too long ({turns} turns, at most {limit}). Please clear it.",
    },
    "err_nothing_to_retry": {
        "de": "Es gibt noch keine Antwort, die wiederholt werden könnte.",
        "en": "There is no answer to retry yet.",
    },
    "err_system_too_long": {
        "de": "Der Systemprompt ist zu lang ({chars} Zeichen, höchstens {limit}).",
        "en": "The system prompt is too long ({chars} characters, at most {limit}).",
    },
    # ---- engine failures ---------------------------------------------------------------------
    "err_internal": {
        "de": "Interner Fehler bei der Generierung ({detail}). Der Playground läuft weiter; bitte erneut versuchen.",
        "en": "Internal error during generation ({detail}). The playground keeps running; please try again.",
    },
    "err_load": {
        "de": "Das Modell {model} konnte nicht geladen werden: {detail}",
        "en": "The model {model} could not be loaded: {detail}",
    },
    "err_download": {
        "de": "Download von {file} aus {repo} fehlgeschlagen: {detail}",
        "en": "Download of {file} from {repo} failed: {detail}",
    },
    "err_memory": {
        "de": "Nicht genug Speicher für {model}: braucht ca. {need:.1f} GB, Budget {budget:.1f} GB.",
        "en": "Not enough memory for {model}: needs about {need:.1f} GB, budget {budget:.1f} GB.",
    },
    # ---- remote engines (TGI, OpenAI-compatible) -------------------------------------------
    # (keys for remote servers go here)
    # ---- transformers engine -------------------------------------------------------------------
    # (keys for the transformers engine go here)
    # ---- retrieval and structured output -----------------------------------------------------
    # (keys for retrieval / JSON go here)
    # ---- compare mode ----------------------------------------------------------------------------
    # (keys for the compare tab go here)
    # ---- space, limits, reliability -----------------------------------------------------------
    # (keys for limits and the Space go here)
    "err_stopped_partial": {"de": "(gestoppt)", "en": "(stopped)"},
    "err_prefix": {"de": "⚠️ ", "en": "⚠️ "},
}


def t(key: str, lang: str = DEFAULT_LANGUAGE, **params: Any) -> str:
    """The message `key` in `lang` with its placeholders filled; unknown keys show themselves."""
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry[DEFAULT_LANGUAGE]
    if not params:
        return text
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError):
        return text


def normalize_language(value: str | None) -> str:
    value = (value or "").strip().lower()[:2]
    return value if value in LANGUAGES else DEFAULT_LANGUAGE
