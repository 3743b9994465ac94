"""Prompt formats reproduce the model cards' example prompts byte for byte (cards: tests/cards/, from shared/seeds)."""

from __future__ import annotations

import ast
import re

import pytest

from components.vocabulary.prompts import PROMPT_FORMATS, Turn
from tests.cards import card


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)\n```", text, flags=re.S)


# ---- IGEL -------------------------------------------------------------------------------------
def test_igel_matches_card() -> None:
    text = card("000")
    literal = re.search(r'generator\(("### Anweisung:.*?")\)', text).group(1)
    template = ast.literal_eval(literal)
    instruction = "Wer ist der aktuelle Bundeskanzler von Deutschland?"
    expected = template.replace("{{input}}", instruction)
    assert PROMPT_FORMATS["igel"].render("", [], instruction) == expected
    assert expected == f"### Anweisung:\n{instruction}\n\n### Antwort:"


def test_igel_multi_turn_and_system() -> None:
    fmt = PROMPT_FORMATS["igel"]
    got = fmt.render("Sei kurz.", [Turn("Hallo", "Hallo! Wie kann ich helfen?")], "Was ist 2+2?")
    assert got == (
        "Sei kurz.\n\n"
        "### Anweisung:\nHallo\n\n### Antwort:\nHallo! Wie kann ich helfen?\n\n"
        "### Anweisung:\nWas ist 2+2?\n\n### Antwort:"
    )


# ---- EM German --------------------------------------------------------------------------------
def test_em_german_matches_card_examples() -> None:
    text = card("001")
    fmt = PROMPT_FORMATS["em_german"]
    blocks = code_blocks(text)
    assert "Du bist ein hilfreicher Assistent. USER: <instruction> ASSISTANT:" in blocks
    assert fmt.render("Du bist ein hilfreicher Assistent.", [], "<instruction>") == (
        "Du bist ein hilfreicher Assistent. USER: <instruction> ASSISTANT:"
    )
    # The card's two general prompts use the system prompt without the final period.
    examples = [b for b in blocks if b.startswith("Du bist ein hilfreicher Assistent USER:")]
    assert len(examples) == 2
    for example in examples:
        question = example.removeprefix("Du bist ein hilfreicher Assistent USER: ").removesuffix(" ASSISTANT:")
        assert fmt.render("Du bist ein hilfreicher Assistent", [], question) == example


def test_em_german_matches_card_transformers_snippet() -> None:
    text = card("001")
    assert 'prompt=f"{system} USER: {instruction} ASSISTANT:"' in text
    fmt = PROMPT_FORMATS["em_german"]
    instruction = "Nenne mir 10 gute Gründe dafür, heute Sport zu machen!"
    system = "Du bist ein hilfreicher Assistent."
    assert fmt.render(system, [], instruction) == f"{system} USER: {instruction} ASSISTANT:"


def test_em_german_multi_turn_is_vicuna_v11() -> None:
    got = PROMPT_FORMATS["em_german"].render("S.", [Turn("a", "b"), Turn("c", "d")], "e")
    assert got == "S. USER: a ASSISTANT: b</s>USER: c ASSISTANT: d</s>USER: e ASSISTANT:"
    assert PROMPT_FORMATS["em_german"].stop == ("USER:",)


# ---- LeoLM (ChatML) ---------------------------------------------------------------------------
def test_chatml_matches_leolm_card() -> None:
    text = card("003")
    fmt = PROMPT_FORMATS["chatml"]
    prompt_format = ast.literal_eval(re.search(r"prompt_format = (\".*?\")\n", text).group(1))
    question = re.search(r'prompt = "(.*?)"\n', text).group(1)
    assert question == "Erkläre mir wie die Fahrradwegesituation in Hamburg ist."
    # The card's pipeline call sends only the user block: an empty system prompt leaves it out.
    assert fmt.render("", [], question) == prompt_format.format(prompt=question)

    template = re.search(r'```\n"""\n(<\|im_start\|>system.*?)"""\n```', text, flags=re.S).group(1)
    expected = template.format(system_message="SYS", prompt=question)
    assert fmt.render("SYS", [], question) == expected


def test_chatml_multi_turn_matches_card() -> None:
    text = card("003")
    block = re.search(r"```\n(<\|im_start\|>user\n\{prompt 1\}.*?)\(\.\.\.\)\n```", text, flags=re.S).group(1)
    got = PROMPT_FORMATS["chatml"].render("", [Turn("{prompt 1}", "{reply 1}")], "{prompt 2}")
    assert got == block


def test_leolm_default_system_prompt_is_the_cards(catalog) -> None:
    text = card("003")
    literal = re.search(r'system_prompt = """<\|im_start\|>system\n(.*?)<\|im_end\|>', text, flags=re.S).group(1)
    assert catalog.family("leolm-chat").system_prompt == literal


@pytest.mark.parametrize("name", sorted(PROMPT_FORMATS))
def test_messages_carry_the_same_conversation(name: str) -> None:
    fmt = PROMPT_FORMATS[name]
    msgs = fmt.messages("sys", [Turn("u1", "a1")], "u2")
    assert msgs == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
    ]
    assert fmt.messages("", [], "x") == [{"role": "user", "content": "x"}]
