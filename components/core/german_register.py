"""How a German text addresses its reader: "du" (informal, also plural "ihr"), "Sie" (polite) or neither, by rules.

Why rules and not a tagger: polite "Sie" and "sie" (they) share every verb form ("Sie können" is "you can" or
"they can"), and a part-of-speech tagger (spaCy's German models, HanTa) tags both as the same personal pronoun; only
capitalisation and the context tell them apart, which is what these rules read:

- informal: du/dich/dir/dein*, euch/euer/eure*, and "ihr" as a pronoun (followed by a lower-case word, or in a
  clause with a form of the second person plural only: habt, seid, könnt …), in any case ("Du" in a letter);
- polite: "Sie", "Ihnen", "Ihr*" capitalised and not at a sentence's start ("Sehen Sie", "wenn Sie möchten",
  "bei Ihrer Bewerbung"); lower-case "sie/ihnen/ihr*" are they/them/their and count for nothing;
- at a sentence's start (also after a colon, an opening quotation mark or a list bullet) a capitalised "Sie" or
  "Ihr*" is read from its context: "Sie" before a verb of the third person singular ("Sie ist", "Sie arbeitet",
  "Sie erhielt") is "she"; "Ihr" before a verb form of the second person plural ("Ihr habt") is informal; otherwise
  an object pronoun "sie"/"ihnen" later in the same sentence makes it polite (a clause's object pronoun never means
  its subject: "Sie können sie morgen anrufen"), as does "bitte"; a possessive "ihr*" makes it "they" ("Sie
  verdoppeln ihre DNA"); what is left is polite in the text's first sentence (there is nothing "they" could refer
  to: "Sie können den Ofen vorheizen") and "they" after one ("Äpfel sind gesund. Sie enthalten Vitamine").

The text's register is the kind with more evidence; unambiguous evidence counts before context-read evidence.
Limits: an answer whose first sentence says "Sie sind Säugetiere" about the question's subject reads as polite;
imperatives without a pronoun ("Klicke auf …") carry no evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DU = "du"
SIE = "Sie"
NONE = "none"

_INFORMAL = re.compile(r"^(du|dich|dir|dein|deine|deinen|deinem|deiner|deines|euch|euer|eure|euren|eurem|eurer|eures)$")
_POLITE_POSSESSIVE = re.compile(r"^Ihr(e|en|em|er|es)?$")
#: finite verbs of the second person plural that no other person shares ("ihr habt" but "er hat")
_SECOND_PLURAL = frozenset(
    [
        "habt",
        "seid",
        "könnt",
        "müsst",
        "wollt",
        "sollt",
        "dürft",
        "mögt",
        "wisst",
        "werdet",
        "wart",
        "hattet",
        "wurdet",
        "konntet",
        "musstet",
        "wolltet",
        "solltet",
        "durftet",
        "mochtet",
        "wusstet",
    ]
)
#: third person singular forms that do not end in -t (strong verbs' past tense, modals)
_THIRD_SINGULAR = frozenset(
    [
        "ist",
        "war",
        "kann",
        "muss",
        "soll",
        "will",
        "darf",
        "mag",
        "weiß",
        "wird",
        "hat",
        "ging",
        "kam",
        "sah",
        "gab",
        "lag",
        "saß",
        "stand",
        "fand",
        "nahm",
        "sprach",
        "schrieb",
        "las",
        "blieb",
        "fiel",
        "hielt",
        "lief",
        "rief",
        "trug",
        "wuchs",
        "starb",
        "zog",
        "bekam",
        "begann",
        "gewann",
        "verlor",
        "erhielt",
    ]
)
_COURTESY = frozenset({"bitte", "gerne", "gern"})
#: words of a greeting or an interjection: a sentence of only these gives "Sie" nothing to refer to
_GREETING = frozenset(
    [
        "guten",
        "gute",
        "hallo",
        "tag",
        "morgen",
        "abend",
        "liebe",
        "lieber",
        "sehr",
        "geehrte",
        "geehrter",
        "herzlich",
        "willkommen",
        "gerne",
        "gern",
        "natürlich",
        "danke",
        "vielen",
        "dank",
        "ja",
        "nein",
        "klar",
        "okay",
        "ok",
        "hi",
        "servus",
        "moin",
        "grüß",
        "gott",
    ]
)
_WORD = re.compile(r"[A-Za-zÄÖÜäöüß]+(?:-[A-Za-zÄÖÜäöüß]+)*")
#: where a sentence (or a clause that starts with a capital) ends: . ! ? … : ; and line breaks
_SENTENCE_END = re.compile(r"(?<=[.!?…:;])\s+|\n+")
_CLAUSE_END = re.compile(r"[,;–—(]")
_FENCE = re.compile(r"```.*?(```|$)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LEAD = re.compile(r"^[\s>#*_\-+•–—\"„“”‚‘'«»(\[]*(\d+[.)]\s*)?[\s*_\"„“”‚‘'«»(]*")


@dataclass(frozen=True)
class Register:
    """A text's register: `form` du / Sie / none; `mixed` when it uses both unambiguously; the evidence counted."""

    form: str
    mixed: bool
    du: int
    sie: int

    def as_dict(self) -> dict[str, object]:
        return {"form": self.form, "mixed": self.mixed, "du": self.du, "sie": self.sie}


def sentences(text: str) -> list[str]:
    """The text without code, cut into sentences (a colon and a line break end one too)."""
    text = _INLINE_CODE.sub(" ", _FENCE.sub(" ", text))
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _is_plural_verb(word: str) -> bool:
    """A finite verb form that the polite "Sie" and "sie" (they) share: -en/-ern/-eln, or "sind"."""
    lower = word.lower()
    return lower == "sind" or lower.endswith(("en", "rn", "ln"))


def _initial_sie(words: list[str], clause: list[str], earlier: bool) -> str | None:
    """A capitalised "Sie" that opens a sentence (`clause`: the words up to its first comma): SIE, or None (she,
    they)."""
    following = words[1] if len(words) > 1 else ""
    if following.lower() in _THIRD_SINGULAR or (following.islower() and not _is_plural_verb(following)):
        return None  # "Sie ist", "Sie arbeitet": she
    rest = clause[1:]
    if any(w in ("sie", "ihnen") for w in rest) or any(w.lower() in _COURTESY for w in rest):
        return SIE  # "Sie können sie morgen anrufen", "Sie können ihnen gerne zuschauen"
    if any(w.startswith("ihr") and w.islower() for w in rest):
        return None  # "Sie verdoppeln ihre DNA": their own
    return None if earlier else SIE


def _initial_ihr(words: list[str], earlier: bool) -> str | None:
    """A capitalised "Ihr*" that opens a sentence: DU ("Ihr habt"), SIE ("Ihre Bestellung …"), or None (her/their)."""
    following = words[1] if len(words) > 1 else ""
    if words[0] == "Ihr" and (following.lower() in _SECOND_PLURAL or (following.islower() and following)):
        return DU
    return None if earlier else SIE


def _lower_ihr(words: list[str], i: int) -> bool:
    """A lower-case "ihr" that is the pronoun "you" (plural), not the possessive "her/their"."""
    following = words[i + 1] if i + 1 < len(words) else ""
    before = words[i - 1] if i > 0 else ""
    if before.lower() in _SECOND_PLURAL or following.lower() in _SECOND_PLURAL:
        return True
    if following and following.islower():
        return True
    return any(w in _SECOND_PLURAL for w in words[i + 1 : i + 8])


def _substantial(words: list[str]) -> bool:
    """A sentence that can hold something for "sie" to refer to (not "Guten Tag!", "Gerne!")."""
    return any(w.lower() not in _GREETING for w in words) and len(words) >= 2


def register(text: str) -> Register:
    """The register of a German text (see the module's docstring for the rules)."""
    strong = {DU: 0, SIE: 0}
    weak = {DU: 0, SIE: 0}
    earlier = False  # a sentence before this one that could hold what "sie" refers to
    for sentence in sentences(text):
        body = _LEAD.sub("", sentence)
        words = _WORD.findall(body)
        if not words:
            continue
        for i, word in enumerate(words):
            lower = word.lower()
            if _INFORMAL.match(lower) or (word == "ihr" and _lower_ihr(words, i)):
                strong[DU] += 1
            elif i == 0:
                if word == "Sie":
                    found = _initial_sie(words, _WORD.findall(_CLAUSE_END.split(body, 1)[0]), earlier)
                elif word == "Ihnen" or _POLITE_POSSESSIVE.match(word):
                    found = _initial_ihr(words, earlier)
                else:
                    found = None
                if found is not None:
                    weak[found] += 1
            elif word in ("Sie", "Ihnen") or _POLITE_POSSESSIVE.match(word):
                strong[SIE] += 1
        earlier = earlier or _substantial(words)
    du, sie = strong[DU] + weak[DU], strong[SIE] + weak[SIE]
    if strong[DU] or strong[SIE]:
        form = DU if strong[DU] > strong[SIE] else SIE if strong[SIE] > strong[DU] else (DU if du >= sie else SIE)
    elif du or sie:
        form = DU if du > sie else SIE
    else:
        form = NONE
    # context-read evidence beside the other form's unambiguous one is more likely "they" than a switch of register
    return Register(form=form, mixed=bool(strong[DU] and strong[SIE]), du=du, sie=sie)


def kept(answer: Register, system: Register) -> bool | None:
    """Whether an answer keeps the system prompt's register: None where the system prompt or the answer addresses
    nobody (nothing to keep, or nothing to break); False when it uses the other form, or both."""
    if system.form == NONE or answer.form == NONE:
        return None
    return answer.form == system.form and not answer.mixed
