"""A model's own chat template as a prompt format: rendered by transformers' renderer, with its tokens as markers.

`prompt_format: model` in models.yaml means: the prompt is the chat template the model brings (a GGUF's
`tokenizer.chat_template[.NAME]` metadata, a Hub repository's tokenizer files), rendered exactly as
`tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)` renders it: by
transformers' own `render_jinja_template` (its sandboxed Jinja environment, `raise_exception`, `strftime_now`,
`tojson`), with the tokenizer's special tokens (`bos_token`, `eos_token`, …) as template variables.

What a visitor may not type (components/vocabulary/markers.py refuses it like today's markers): every special
token of the model (a GGUF's control tokens, a tokenizer's special added tokens, BOS and EOS), the added tokens
the template writes itself (as transformers' `sanitize_control_tokens` infers them), bracket and angle markers in
the template's literal text (`[INST]`, `<<SYS>>`, `<start_of_turn>`) and its role labels at a line's start
(`User:`, `Assistant:` where a template writes turns as plain text) — each also in its NFKC look-alike form.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from components.vocabulary.generation import InputError
from components.vocabulary.patterns import WS, re2_pattern
from components.vocabulary.prompts import MODEL_FORMAT, SPECIAL_MARKERS, PromptFormat, Turn

#: end-of-turn tokens of common templates; those the model has become stop strings (with its EOS)
END_OF_TURN = (
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<end_of_turn>",
    "<turn|>",
    "<|end|>",
    "<|endoftext|>",
    "<｜end▁of▁sentence｜>",
)
#: at most this many stop strings from a template (TGI takes 4 in all by default)
MAX_TEMPLATE_STOPS = 3


@dataclass(frozen=True)
class ChatTemplate:
    """A model's chat template and the tokens it is rendered with. `origin` says where it was read (shown)."""

    source: str
    origin: str
    name: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    unk_token: str | None = None
    pad_token: str | None = None
    #: the model's control tokens (special added tokens, a GGUF's CONTROL tokens), BOS and EOS among them
    special_tokens: tuple[str, ...] = ()
    #: end-of-turn token texts the model has (its EOS, EOT, …) in the order they stop an answer
    end_tokens: tuple[str, ...] = ()
    #: names of the other templates the model carries (for a message when `chat_template: NAME` is wrong)
    names: tuple[str, ...] = field(default=())

    def variables(self) -> dict[str, str]:
        """The special tokens as template variables, as `apply_chat_template` passes `special_tokens_map`."""
        tokens = {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "unk_token": self.unk_token,
            "pad_token": self.pad_token,
        }
        return {key: value for key, value in tokens.items() if value is not None}


def render_messages(template: ChatTemplate, messages: Sequence[dict[str, str]]) -> str:
    """The prompt as transformers renders it (add_generation_prompt=True); raises the template's own errors."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[[dict(m) for m in messages]],
        chat_template=template.source,
        add_generation_prompt=True,
        **template.variables(),
    )
    return str(rendered[0])


def literal_text(template: str) -> str:
    """The template's literal strings (its text and string constants), as transformers reads them to infer the
    control tokens a template writes itself."""
    from transformers.utils.chat_template_utils import _get_template_literal_text

    return str(_get_template_literal_text(template))


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _escape(token: str) -> str:
    return "".join(ch if ch.isalnum() else f"\\x{{{ord(ch):x}}}" for ch in token)


#: marker shapes in a template's literal text: `<start_of_turn>`, `<|turn>`, `[INST]`, `[/SYSTEM_PROMPT]`, `<<SYS>>`
_ANGLE = re2_pattern(r"<<?[^<>\s\x{0}]{1,40}>>?")
_BRACKET = re2_pattern(r"\[/?[A-Z][A-Z_]{1,30}\]")
#: a role label opening a line of the template's text (`User:`, `### Assistant:`); only words that name a turn
_ROLE = re2_pattern(r"(?:^|\n|\x{0})(?:#+ ?)?([A-Z][A-Za-z]{1,20}):")
ROLE_WORDS = frozenset(
    [
        "user",
        "assistant",
        "system",
        "human",
        "bot",
        "model",
        "ai",
        "gpt",
        "instruction",
        "response",
        "input",
        "output",
        "question",
        "answer",
        "anweisung",
        "antwort",
        "frage",
        "nutzer",
        "benutzer",
        "assistent",
    ]
)


def template_markers(template: ChatTemplate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(literal markers, role labels) of `template`: the tokens anywhere in a visitor's text, the labels at the start
    of one of its lines."""
    literals = literal_text(template.source)
    tokens: set[str] = {t for t in template.special_tokens if t and not t.isspace()}
    for pattern in (_ANGLE, _BRACKET):
        tokens.update(m.group(0) for m in pattern.finditer(literals))
    roles = {m.group(1) for m in _ROLE.finditer(literals) if m.group(1).lower() in ROLE_WORDS}
    if roles:  # a template writing turns as text may build a label from the role (`role|capitalize + ': '`)
        roles |= {"System", "User", "Assistant"}
    return tuple(sorted(tokens, key=len, reverse=True)), tuple(sorted(roles))


def _marker_patterns(template: ChatTemplate) -> tuple[Any, ...]:
    tokens, roles = template_markers(template)
    forms = sorted({form for token in tokens for form in (token, _nfkc(token))}, key=len, reverse=True)
    patterns: list[Any] = []
    if forms:
        patterns.append(re2_pattern("(" + "|".join(_escape(f) for f in forms) + ")"))
    if roles:
        labels = "|".join(_escape(r) for r in sorted({_nfkc(r) for r in roles}))
        patterns.append(re2_pattern(rf"(?m)^{WS}*(?:#+{WS}*)?((?:{labels}){WS}*:)"))
    return (*patterns, *SPECIAL_MARKERS)


@dataclass(frozen=True)
class TemplateFormat(PromptFormat):
    """The prompt format of one build whose family says `prompt_format: model`: its chat template, rendered by
    transformers. `model` names the build in messages; `template` is None for the catalog's placeholder (no
    template read yet: only the generic special-token markers apply)."""

    template: ChatTemplate | None = None
    model: str = ""

    @classmethod
    def of(cls, template: ChatTemplate, model: str) -> TemplateFormat:
        stops = tuple(dict.fromkeys(t for t in template.end_tokens if t))[:MAX_TEMPLATE_STOPS]
        fmt = cls(
            name=MODEL_FORMAT,
            label=f"Chat-Template ({model})",
            stop=stops,
            source=template.origin,
            markers=_marker_patterns(template),
            server_template=True,
            template=template,
            model=model,
        )
        return fmt

    def render(self, system: str, history: Sequence[Turn], message: str) -> str:
        return self.render_messages(self.messages(system, history, message))

    def render_messages(self, messages: Sequence[dict[str, str]]) -> str:
        """The rendered prompt; a template that raises (it needs tools or images, rejects a system role, …) gives
        an InputError naming the model and the template's own reason."""
        if self.template is None:
            raise InputError("err_template_pending", model=self.model)
        try:
            return render_messages(self.template, messages)
        except Exception as exc:  # the template's raise_exception, a Jinja error, a sandbox refusal
            reason = str(exc).strip()[:300] or type(exc).__name__
            has_system = bool(messages) and messages[0].get("role") == "system"
            if has_system and not self.system_role:
                raise InputError("err_template_system", model=self.model, reason=reason) from None
            raise InputError("err_template_render", model=self.model, reason=reason) from None

    @cached_property
    def system_role(self) -> bool:
        """Whether the template takes a system message (Gemma's, for one, raises on it)."""
        if self.template is None:
            return True
        probe = [{"role": "user", "content": "x"}]
        try:
            render_messages(self.template, [{"role": "system", "content": "s"}, *probe])
        except Exception:
            try:
                render_messages(self.template, probe)
            except Exception:
                return True  # it fails either way: the render's own message says why
            return False
        return True


#: the catalog's entry for `prompt_format: model` before a build's template is read
PLACEHOLDER = TemplateFormat(
    name=MODEL_FORMAT, label="Chat-Template", stop=(), source="the model's own chat template", server_template=True
)

__all__ = ["END_OF_TURN", "MODEL_FORMAT", "PLACEHOLDER", "ChatTemplate", "TemplateFormat", "render_messages"]
