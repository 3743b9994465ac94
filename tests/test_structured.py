"""Structured (JSON) output: schema checks, the card's example, answer validation, grammars per engine, the APIs."""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from components.core.service import Playground
from components.features.retrieval import CARD_QUESTION, CARD_SOURCE_TEXT, CARD_SOURCE_URL
from components.features.structured import (
    EXAMPLE_CARD_OUTPUT,
    EXAMPLE_SCHEMA,
    EXAMPLE_TEXT,
    MAX_SCHEMA_CHARS,
    check_answer,
    example_schema_text,
    json_instruction,
    parse_answer,
    parse_schema,
    prepare_structured,
)
from components.vocabulary.catalog import Catalog
from components.vocabulary.generation import Finished, InputError, TextDelta
from components.vocabulary.messages import MESSAGES, number, t
from tests.cards import card_path
from tests.conftest import free_port
from tests.tgi_standin import Standin

CARD = card_path("001")
OFFLINE = "smollm2-135m-instruct/gguf-q4_1"


# ---- the card's example --------------------------------------------------------------------------------
def test_example_is_the_cards_and_its_output_validates() -> None:
    text = CARD.read_text(encoding="utf-8")
    section = text[text.index("## Grammar-based structured Output with GGUF") : text.index("## Factual Retrieval")]
    assert f'"{EXAMPLE_TEXT}"' in section
    (output,) = re.findall(r"```python\n(.*?)\n```", section, re.DOTALL)
    card_output = ast.literal_eval(output)
    assert card_output == EXAMPLE_CARD_OUTPUT
    check = check_answer(json.dumps(card_output), EXAMPLE_SCHEMA)
    assert check.valid and check.value == EXAMPLE_CARD_OUTPUT and check.errors == []
    assert set(EXAMPLE_SCHEMA["required"]) == set(card_output)
    assert parse_schema(example_schema_text()) == EXAMPLE_SCHEMA


def test_the_instruction_tells_the_model_what_to_extract() -> None:
    message = json_instruction(EXAMPLE_TEXT, EXAMPLE_SCHEMA)
    assert message == (
        "Extrahiere die gesuchten Angaben aus dem folgenden Text. Antworte nur mit JSON, das diesem JSON-Schema "
        "entspricht, ohne weiteren Text.\nJSON-Schema: " + json.dumps(EXAMPLE_SCHEMA, ensure_ascii=False) + "\n\n"
        f"Text: {EXAMPLE_TEXT}"
    )


# ---- schema checks -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("schema", "key", "needle_de"),
    [
        ("", "err_schema_empty", "Kein JSON-Schema"),
        ('{"type": "object", "properties": {', "err_schema_json", "Zeile 1"),
        ('{"type": "object" "properties": {}}', "err_schema_json", "„,“ erwartet"),
        ("[1, 2]", "err_schema_not_object", "JSON-Objekt"),
        ('{"type": "objekt", "properties": {"a": {}}}', "err_schema_invalid", '"objekt" ist kein Typ'),
        ({"type": "object", "properties": {"a": {"type": 5}}}, "err_schema_invalid", "properties/a/type"),
        ({"type": "object", "required": "a", "properties": {"a": {}}}, "err_schema_invalid", "required"),
        ({"type": "object"}, "err_schema_no_properties", "properties"),
        (
            {"type": "object", "properties": {"a": {"$ref": "https://example.org/s.json"}}},
            "err_schema_remote_ref",
            "https://example.org/s.json",
        ),
        ("x" * (MAX_SCHEMA_CHARS + 1), "err_schema_too_long", number(MAX_SCHEMA_CHARS, "de")),
    ],
)
def test_invalid_schemas_are_refused_with_a_clear_message(schema: Any, key: str, needle_de: str) -> None:
    with pytest.raises(InputError) as refused:
        parse_schema(schema)
    assert refused.value.key == key
    text_de = t(key, "de", **refused.value.params)
    assert needle_de in text_de and "{" not in text_de.replace("{{", "")
    assert t(key, "en", **refused.value.params) != text_de


def test_local_refs_and_non_object_schemas_are_fine() -> None:
    schema = {
        "$defs": {"ort": {"type": "string"}},
        "type": "object",
        "properties": {"ort": {"$ref": "#/$defs/ort"}},
    }
    assert parse_schema(json.dumps(schema)) == schema
    assert parse_schema({"type": "array", "items": {"type": "integer"}})["type"] == "array"


# ---- answers -------------------------------------------------------------------------------------------
def test_answer_validation_names_every_problem() -> None:
    check = check_answer('{"jahr": "2020", "name": 7}', EXAMPLE_SCHEMA)
    assert not check.valid and check.parsed and check.error_key == "json_invalid"
    # in the page's language, not jsonschema's English
    assert check.errors == [
        "$: das Pflichtfeld „ort“ fehlt",
        '$.jahr: "2020" ist kein Wert vom Typ ganze Zahl (integer)',
        "$.name: 7 ist kein Wert vom Typ Text (string)",
    ]
    english = check_answer('{"jahr": "2020", "name": 7, "extra": 1}', EXAMPLE_SCHEMA, "en")
    assert english.errors == [
        "$: the required field 'ort' is missing",
        '$: the field "extra" is not allowed',
        '$.jahr: "2020" is not of type integer',
        "$.name: 7 is not of type string",
    ]
    assert check.as_info() == {"valid": False, "errors": check.errors, "validation": "json_invalid"}


def test_answers_that_are_not_json_or_wrapped() -> None:
    truncated = check_answer('{"jahr": 2020, "name": "Par', EXAMPLE_SCHEMA)
    assert (truncated.valid, truncated.parsed, truncated.error_key) == (False, False, "json_not_json")
    assert truncated.errors == ["ein Text ist nicht abgeschlossen (Zeile 1, Spalte 24)"]
    assert check_answer('{"jahr": 2020, "name": "Par', EXAMPLE_SCHEMA, "en").errors == [
        "a string is not closed (line 1, column 24)"
    ]
    fenced = check_answer('Hier:\n```json\n{"jahr": 2020, "name": "Paris", "ort": "Frankreich"}\n```', EXAMPLE_SCHEMA)
    assert fenced.valid and fenced.value == EXAMPLE_CARD_OUTPUT
    assert parse_answer('  {"a": 1} ') == (True, {"a": 1}, None)
    assert parse_answer("")[0] is False


# ---- requests ------------------------------------------------------------------------------------------
def test_request_carries_the_schema_and_the_instruction(catalog: Catalog) -> None:
    prepared, schema = prepare_structured(Playground(catalog), OFFLINE, EXAMPLE_TEXT, example_schema_text())
    assert schema == EXAMPLE_SCHEMA and prepared.request.json_schema == EXAMPLE_SCHEMA
    system = catalog.get(OFFLINE).family.system_prompt  # type: ignore[union-attr]
    message = json_instruction(EXAMPLE_TEXT, EXAMPLE_SCHEMA)
    assert prepared.raw_prompt == (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"
    )
    with pytest.raises(InputError) as refused:
        prepare_structured(Playground(catalog), OFFLINE, "  ", EXAMPLE_SCHEMA)
    assert refused.value.key == "err_structured_empty"  # the JSON tab's own words, not the chat's


def test_transformers_refusal_has_a_message() -> None:
    assert set(MESSAGES["err_json_unsupported_engine"]) == {"de", "en"}
    assert "transformers" in t("err_json_unsupported_engine", "en", engine="transformers")


# ---- TGI: the grammar reaches the server as {"type": "json", "value": schema} ----------------------------
async def test_tgi_receives_the_schema_as_json_grammar(tgi_playground: tuple[Standin, Playground]) -> None:
    standin, playground = tgi_playground
    standin.config.json_reply = json.dumps(EXAMPLE_CARD_OUTPUT, ensure_ascii=False)
    prepared, schema = prepare_structured(playground, "em-german-leo-mistral/tgi", EXAMPLE_TEXT, EXAMPLE_SCHEMA)
    events = [e async for e in playground.stream(prepared)]
    answer = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert isinstance(events[-1], Finished)
    (call,) = standin.generation_calls()
    assert call.body["parameters"]["grammar"] == {"type": "json", "value": EXAMPLE_SCHEMA}
    assert call.body["inputs"] == (
        f"Du bist ein hilfreicher Assistent. USER: {json_instruction(EXAMPLE_TEXT, EXAMPLE_SCHEMA)} ASSISTANT:"
    )
    check = check_answer(answer, schema)
    assert check.valid and check.value == EXAMPLE_CARD_OUTPUT


async def test_a_server_answer_that_breaks_the_schema_is_reported(tgi_playground: tuple[Standin, Playground]) -> None:
    standin, playground = tgi_playground
    standin.config.json_reply = '{"jahr": "zwanzig", "name": "Paris", "ort": "Frankreich"}'
    prepared, schema = prepare_structured(playground, "em-german-leo-mistral/tgi", EXAMPLE_TEXT, EXAMPLE_SCHEMA)
    answer = "".join([e.text async for e in playground.stream(prepared) if isinstance(e, TextDelta)])
    check = check_answer(answer, schema)
    assert not check.valid and check.errors == ['$.jahr: "zwanzig" ist kein Wert vom Typ ganze Zahl (integer)']


# ---- llama.cpp with the real offline model -------------------------------------------------------------
def test_llama_cpp_builds_a_grammar_from_the_cards_schema() -> None:
    from components.engines.llama_cpp import _grammar_for

    grammar = _grammar_for(EXAMPLE_SCHEMA)
    assert grammar is not None
    # xllamacpp's llama.cpp is built with llguidance: the grammar is the schema itself, compiled lazily
    head, schema = grammar.split("start: %json ", 1)
    assert head.startswith("%llguidance") and json.loads(schema) == EXAMPLE_SCHEMA


@pytest.mark.slow
async def test_offline_model_answers_the_cards_example_with_valid_json(catalog: Catalog) -> None:
    """SmolLM2 through llama.cpp with the grammar: the answer must parse and validate (its content is the
    small model's guess; the card's 7B model answers {'jahr': 2020, 'name': 'Paris', 'ort': 'Frankreich'})."""
    playground = Playground(catalog)
    started = time.perf_counter()
    prepared, schema = prepare_structured(
        playground, OFFLINE, EXAMPLE_TEXT, EXAMPLE_SCHEMA, temperature=0, max_new_tokens=96
    )
    events = [e async for e in playground.stream(prepared)]
    answer = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert isinstance(events[-1], Finished), events[-1]
    assert events[-1].stats.finish_reason == "stop"
    check = check_answer(answer, schema)
    assert check.valid, (answer, check.errors)
    assert json.loads(answer) == check.value and set(check.value) == {"jahr", "name", "ort"}
    print(f"grammar answer {answer!r} in {time.perf_counter() - started:.1f} s, {events[-1].stats.as_dict()}")


# ---- the APIs through gradio_client, on the real page with the offline model ----------------------------
@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    import app as app_module

    demo = app_module.build_app(app_module.create_playground())
    demo.queue(default_concurrency_limit=None)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, css=app_module.CSS)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        demo.close()


@pytest.mark.slow
def test_structured_api_returns_raw_parsed_and_validity(api_url: str) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(api_url, verbose=False)
    raw, parsed, info = client.predict(
        EXAMPLE_TEXT, example_schema_text(), api_name="/structured", temperature=0, max_new_tokens=96
    )
    assert info["valid"] is True and info["errors"] == [], info
    assert parsed == json.loads(raw) and set(parsed) == {"jahr", "name", "ort"}
    assert info["schema"] == EXAMPLE_SCHEMA and info["stats"]["finish_reason"] == "stop"
    assert json_instruction(EXAMPLE_TEXT, EXAMPLE_SCHEMA) in info["prompt"]
    with pytest.raises(AppError) as refused:
        client.predict(EXAMPLE_TEXT, '{"type": "objekt"}', api_name="/structured", lang="en")
    assert "not a valid JSON schema (Draft 2020-12)" in str(refused.value)
    client.close()


@pytest.mark.slow
def test_retrieve_api_streams_the_answer_with_the_exact_prompt(api_url: str) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(api_url, verbose=False)
    sources = [{"text": CARD_SOURCE_TEXT, "metadata": {"Url": CARD_SOURCE_URL}}]
    job = client.submit(CARD_QUESTION, sources, api_name="/retrieve", temperature=0, max_new_tokens=48)
    updates = list(job)
    text, info = job.result()
    assert text.strip() and len(updates) >= 2
    assert info["prompt"].startswith("<|im_start|>system\nDu bist ein hilfreicher Assistent. Für die folgende")
    assert "BEGININPUT\nBEGINCONTEXT\nUrl: https://www.jph.me\nENDCONTEXT \n" in info["prompt"]
    assert info["fit"]["method"] == "tokenizer" and info["fit"]["context"] == 2048
    assert info["stats"]["completion_tokens"] >= 1
    too_big = [{"text": " ".join(["Das Wetter wird schön."] * 600), "metadata": {"Url": "u"}}]
    with pytest.raises(AppError) as refused:
        client.predict(CARD_QUESTION, too_big, api_name="/retrieve", lang="en")
    assert "tokens too many (counted with the model's tokenizer" in str(refused.value)
    client.close()


def test_page_verdicts() -> None:
    from components.ui.structured import schema_status, verdict_markdown

    assert verdict_markdown(check_answer(json.dumps(EXAMPLE_CARD_OUTPUT), EXAMPLE_SCHEMA), "de") == t(
        "json_valid", "de"
    )
    invalid = verdict_markdown(check_answer('{"jahr": "x", "name": "a", "ort": "b"}', EXAMPLE_SCHEMA, "en"), "en")
    assert invalid.startswith(t("json_invalid", "en")) and '`$.jahr: "x" is not of type integer`' in invalid
    assert verdict_markdown(check_answer("kein JSON", EXAMPLE_SCHEMA), "de").startswith("✗ Die Antwort ist kein")
    assert schema_status(example_schema_text(), "de") == t("structured_schema_ok", "de")
    assert "Draft 2020-12" in schema_status('{"type": "objekt"}', "de").replace("\\", "")  # Markdown-escaped
    assert schema_status("", "de") == ""


def test_an_empty_text_is_refused_with_the_json_tabs_own_message(catalog: Catalog) -> None:
    with pytest.raises(InputError) as refused:
        prepare_structured(Playground(catalog), OFFLINE, "  ", EXAMPLE_SCHEMA)
    assert refused.value.key == "err_structured_empty"
    assert t("err_structured_empty", "de") != t("err_empty", "de")
