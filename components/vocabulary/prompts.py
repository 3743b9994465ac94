"""Prompt formats of the model families: the exact prompt string (and chat messages) sent to a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from components.vocabulary.patterns import ANY_I, WORD, WS, re2_pattern


@dataclass(frozen=True)
class Turn:
    """One finished exchange of a conversation."""

    user: str
    assistant: str


#: special-token shapes `<|…|>` and Llama's `<s>`, `</s>`: markers of every format (every family here runs on a
#: Llama, Mistral or BLOOM tokenizer); the search itself is in components/vocabulary/markers.py. RE2, not Python's
#: backtracking `re`: `#{2,}\s*antwort` searched 200 000 `#` in quadratic time (minutes)
SPECIAL_MARKERS: tuple[Any, ...] = (
    re2_pattern(rf"<{WS}*\|[^|<>\n]{{0,40}}\|{WS}*>"),
    re2_pattern(rf"<{WS}*/?{WS}*s{WS}*>"),
)


@dataclass(frozen=True)
class PromptFormat:
    """A family's prompt convention. `render` gives the byte-exact raw prompt; `markers` find the format's own
    control markup in visitors' text, `label` names the format on the page, `stop` ends an answer at the next
    turn; `server_template`: a server's own chat template may render it (OpenAI-compatible servers' chat mode)."""

    name: str
    label: str
    stop: tuple[str, ...]
    source: str
    markers: tuple[Any, ...] = SPECIAL_MARKERS
    server_template: bool = False

    def render(self, system: str, history: Sequence[Turn], message: str) -> str:
        raise NotImplementedError

    def messages(self, system: str, history: Sequence[Turn], message: str) -> list[dict[str, str]]:
        """The same conversation as chat messages, for servers that apply a chat template."""
        out: list[dict[str, str]] = []
        if system:
            out.append({"role": "system", "content": system})
        for turn in history:
            out.append({"role": "user", "content": turn.user})
            out.append({"role": "assistant", "content": turn.assistant})
        out.append({"role": "user", "content": message})
        return out


@dataclass(frozen=True)
class IgelFormat(PromptFormat):
    """IGEL card (000_*): `### Anweisung:\\n{instruction}\\n\\n### Antwort:`.

    The original has neither a system prompt nor chat turns. Playground convention (Alpaca style,
    which IGEL's translated instruction data follows): a non-empty system prompt is a preamble
    followed by a blank line, and earlier turns repeat the block with the answer after a newline.
    """

    def render(self, system: str, history: Sequence[Turn], message: str) -> str:
        parts: list[str] = []
        if system:
            parts.append(f"{system}\n\n")
        for turn in history:
            parts.append(f"### Anweisung:\n{turn.user}\n\n### Antwort:\n{turn.assistant}\n\n")
        parts.append(f"### Anweisung:\n{message}\n\n### Antwort:")
        return "".join(parts)


@dataclass(frozen=True)
class EmGermanFormat(PromptFormat):
    """EM German card (001_*): Vicuna without line breaks, `{system} USER: {instruction} ASSISTANT:`.

    Multi-turn follows Vicuna v1.1 as FastChat defines it (separator " " after a user turn,
    "</s>" after an assistant turn): `{system} USER: u1 ASSISTANT: a1</s>USER: u2 ASSISTANT:`.
    """

    def render(self, system: str, history: Sequence[Turn], message: str) -> str:
        text = f"{system} " if system else ""
        for turn in history:
            text += f"USER: {turn.user} ASSISTANT: {turn.assistant}</s>"
        return text + f"USER: {message} ASSISTANT:"


@dataclass(frozen=True)
class ChatMLFormat(PromptFormat):
    """LeoLM chat card (003_*): ChatML, `<|im_start|>{role}\\n{content}<|im_end|>\\n` per message.

    Multi-turn is given by the card itself; the system block is left out when the system prompt is
    empty (the card's own pipeline example sends only the user block).
    """

    def render(self, system: str, history: Sequence[Turn], message: str) -> str:
        text = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
        for turn in history:
            text += f"<|im_start|>user\n{turn.user}<|im_end|>\n"
            text += f"<|im_start|>assistant\n{turn.assistant}<|im_end|>\n"
        return text + f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"


#: the prompt_format that means "the model's own chat template" (components/vocabulary/chat_template.py), read per
#: build from its files; not a row of PROMPT_FORMATS
MODEL_FORMAT = "model"


@dataclass(frozen=True)
class ServerChatFormat(PromptFormat):
    """A served model outside the catalog's families: the server applies the model's own chat template to the
    messages (OpenAI chat mode); no family's format is borrowed. The "raw prompt" is the messages as sent, in JSON,
    for the prompt view and a length estimate; the server's own rendering is shown where it can give one."""

    def render(self, system: str, history: Sequence[Turn], message: str) -> str:
        import json

        return json.dumps(self.messages(system, history, message), ensure_ascii=False, indent=1)


PROMPT_FORMATS: dict[str, PromptFormat] = {
    "igel": IgelFormat(
        name="igel",
        label="IGEL",
        stop=("### Anweisung:",),
        source="000 IGEL card",
        # `### Anweisung` and `### Antwort`, any case, two or more `#`; the marker is group 1, the group after it
        # Python's `\b` (RE2's is ASCII-only)
        markers=(
            re2_pattern(rf"(#{{2,}}{WS}*(?:anwe{ANY_I}sung|antwort))(?:[^{WORD}]|$)", ignore_case=True),
            *SPECIAL_MARKERS,
        ),
    ),
    "em_german": EmGermanFormat(
        name="em_german",
        label="EM German",
        stop=("USER:",),
        source="001 EM German card",
        # upper case, as the format writes them; spaces before the colon too; no word boundary in front: `xUSER:`
        # is read as a turn by the model as much as `USER:` is
        markers=(re2_pattern(rf"(?:USER|ASSISTANT){WS}*:"), *SPECIAL_MARKERS),
    ),
    "chatml": ChatMLFormat(
        name="chatml",
        label="ChatML",
        stop=("<|im_end|>", "<|im_start|>"),
        source="003 LeoLM chat card",
        server_template=True,
    ),
    "server_chat": ServerChatFormat(
        name="server_chat", label="Chat-Vorlage des Servers / server chat template", stop=(), source="the server"
    ),
}


def get_format(name: str) -> PromptFormat:
    """The format `name`; for MODEL_FORMAT the placeholder before a build's template is read (service.format_for
    gives a build's own)."""
    if name == MODEL_FORMAT:
        from components.vocabulary.chat_template import PLACEHOLDER

        return PLACEHOLDER
    return PROMPT_FORMATS[name]
