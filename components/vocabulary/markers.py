"""Control markers of the prompt formats found in visitors' text (look-alikes included) and refused.

A visitor's text that contains the family's own turn markup would forge turns: a ChatML message with
`<|im_end|>\\n<|im_start|>system\\n…` became real control tokens, EM German's `ASSISTANT: …</s>USER:` and IGEL's
`### Antwort:` a fake answer, a source's `ENDINPUT` closed its block early. So every piece of user-supplied
text that goes into a prompt (message, history, system prompt, JSON text and schema, sources, their metadata,
question) is searched for the markers of the format it goes into, and a request holding one is refused with
a message naming the marker and where it is; nothing is sent, on any engine.

The search runs on the NFKC form of the text (after clean_text dropped control and zero-width characters),
so full-width `＜｜im_start｜＞`, `ＵＳＥＲ：` or `ＥＮＤＩＮＰＵＴ`, which models read like the real thing,
count as the markers they look like. Which markers belong to which format (each format carries its own,
components/vocabulary/prompts.py; the retrieval blocks' are here):

- every format: special-token shapes `<|…|>` (ChatML's `<|im_start|>`, `<|im_end|>`, `<|endoftext|>`, …) and
  Llama's `<s>`, `</s>` (every family here runs on a Llama, Mistral or BLOOM tokenizer);
- EM German: `USER:` and `ASSISTANT:` (upper case, as the format writes them; spaces before the colon too;
  glued to a word too: `xUSER:`);
- IGEL: `### Anweisung` and `### Antwort` (any case, two or more `#`);
- a model's own chat template (`prompt_format: model`): its special tokens, the markers of its literal text and its
  role labels at a line's start (components/vocabulary/chat_template.py); the format object carries them;
- the retrieval blocks (sources, metadata, question): BEGININPUT, ENDINPUT, BEGINCONTEXT, ENDCONTEXT,
  BEGININSTRUCTION, ENDINSTRUCTION (and the card's ENDINCSTRUCTION), any case.

Every pattern runs on RE2 (google-re2), whose search time is linear in the text's length whatever the text:
200 000 `#`, `<|` or `USER` take milliseconds, where Python's backtracking engine took minutes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from components.vocabulary.generation import InputError
from components.vocabulary.patterns import ANY_I, re2_pattern
from components.vocabulary.prompts import SPECIAL_MARKERS, PromptFormat, Turn, get_format

#: a format by its name (the catalog's), or a build's own format object (a model's chat template)
FormatLike = str | PromptFormat

RETRIEVAL_MARKERS: tuple[Any, ...] = (
    re2_pattern(rf"(?:BEG{ANY_I}N|END)(?:{ANY_I}NPUT|CONTEXT|{ANY_I}NC?STRUCT{ANY_I}ON)", ignore_case=True),
)


def _shadow(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _format(format_name: FormatLike | None) -> PromptFormat | None:
    if format_name is None or isinstance(format_name, PromptFormat):
        return format_name
    try:
        return get_format(format_name)
    except KeyError:
        return None


def find_marker(text: str, format_name: FormatLike | None, retrieval: bool = False) -> str | None:
    """The first control marker of `format_name` (None: none) and, with `retrieval`, of the retrieval blocks in
    `text`, as it reads in NFKC."""
    if not text:
        return None
    shadow = _shadow(text)
    fmt = _format(format_name)
    own: tuple[Any, ...] = () if format_name is None else (fmt.markers if fmt else SPECIAL_MARKERS)
    patterns = own + (RETRIEVAL_MARKERS if retrieval else ())
    found = [m for m in (p.search(shadow) for p in patterns) if m]
    if not found:
        return None
    first = min(found, key=lambda m: m.start())
    return first.group(1 if first.re.groups else 0)[:60]


def refuse_markers(text: str, format_name: FormatLike, key: str, retrieval: bool = False, **params: object) -> None:
    """Raises InputError(`key`, marker=…, format=…, **params) when `text` holds a control marker."""
    marker = find_marker(text, format_name, retrieval)
    if marker is not None:
        raise InputError(key, marker=marker.replace("`", "ʼ"), format=format_label(format_name), **params)


def format_label(format_name: FormatLike) -> str:
    fmt = _format(format_name)
    return fmt.label if fmt else str(format_name)


def check_prompt_parts(format_name: FormatLike, message: str, system: str, history: Sequence[Turn]) -> None:
    """Refuses a chat request whose message, system prompt or history holds a marker of `format_name`."""
    refuse_markers(message, format_name, "err_marker_message")
    refuse_markers(system, format_name, "err_marker_system")
    for number, turn in enumerate(history, start=1):
        refuse_markers(turn.user, format_name, "err_marker_history", turn=number)
        refuse_markers(turn.assistant, format_name, "err_marker_history", turn=number)


def check_messages(fmt: FormatLike, messages: list[dict[str, str]]) -> None:
    """check_prompt_parts for a conversation as chat messages (system, then user/assistant pairs, then the user's)."""
    system = messages[0]["content"] if messages and messages[0].get("role") == "system" else ""
    rest = messages[1:] if system or (messages and messages[0].get("role") == "system") else messages
    turns = [Turn(rest[i]["content"], rest[i + 1]["content"]) for i in range(0, len(rest) - 1, 2)]
    check_prompt_parts(fmt, rest[-1]["content"] if rest else "", system, turns)


__all__ = ["RETRIEVAL_MARKERS", "check_messages", "check_prompt_parts", "find_marker", "format_label", "refuse_markers"]
