"""Structured logs: no prompts by default, secrets redacted everywhere, conversation log never blocks."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from components.logs import logging_setup
from components.logs.logging_setup import (
    ConversationLog,
    JsonFormatter,
    KeyValueFormatter,
    RedactionFilter,
    record_conversation,
    redact,
    setup_logging,
)
from components.vocabulary.generation import Event, Failed, Finished, GenerationRequest, GenerationStats, TextDelta
from components.vocabulary.settings import SamplingSettings

SECRET = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"
TGI_SECRET = "tgi-secret-value-4711"
PROMPT = "Mein geheimer Prompt über Wurstbrot"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("TGI_TOKEN", TGI_SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-0123456789abcdefXYZ")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """setup_logging() writing into a buffer; the root logger is restored afterwards."""
    monkeypatch.delenv("PLAYGROUND_LOG_PROMPTS", raising=False)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    setup_logging(level="INFO", fmt="json", stream=buffer)
    yield buffer
    for handler in list(root.handlers):
        if getattr(handler, "_playground", False):
            root.removeHandler(handler)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


# ---- redaction -----------------------------------------------------------------------------------
@pytest.mark.usefixtures("secrets")
@pytest.mark.parametrize(
    "text",
    [
        f"token is {SECRET}",
        f"calling with {TGI_SECRET} now",
        "Authorization: Bearer abc.def-ghi_jkl",
        "header bearer XYZ123456",
        "key sk-proj-0123456789abcdefXYZ",
        "an unknown hf_ZZZZZZZZZZZZZZZZZZZZ token",
        "https://user:p4ssw0rd@tgi.example.com/generate",
        "GET /x?api_key=supersecretvalue&y=1",
        '{"token": "abcdefgh12345678"}',
    ],
)
def test_redact_removes_secrets(text: str) -> None:
    out = redact(text)
    assert "[REDACTED]" in out
    for secret in (SECRET, TGI_SECRET, "abc.def-ghi_jkl", "XYZ123456", "p4ssw0rd", "supersecretvalue", "abcdefgh1234"):
        assert secret not in out
    assert "sk-proj-0123456789" not in out
    assert "hf_ZZZZ" not in out


def test_redact_leaves_ordinary_text_alone() -> None:
    for text in (
        "generate model=smollm2/gguf-q4_1 prompt_chars=42 max_new_tokens=256",
        "first token: 0.19 s, 128 tokens/s",
        "https://tgi.example.com/generate",
    ):
        assert redact(text) == text


@pytest.mark.usefixtures("secrets")
def test_every_logger_and_every_part_of_a_record_is_redacted(captured: io.StringIO) -> None:
    log = logging.getLogger("some.library")
    log.warning("connect failed with %s", f"Bearer {TGI_SECRET}")
    log.info("extra", extra={"url": f"https://x/?token={SECRET}"})
    try:
        raise RuntimeError(f"server said no to {SECRET}")
    except RuntimeError:
        log.exception("boom")
    out = captured.getvalue()
    assert SECRET not in out and TGI_SECRET not in out
    records = lines(captured)
    assert [r["logger"] for r in records] == ["some.library"] * 3
    assert "[REDACTED]" in records[0]["msg"]
    assert "[REDACTED]" in records[1]["url"]
    assert "RuntimeError" in records[2]["exc"] and "[REDACTED]" in records[2]["exc"]


@pytest.mark.usefixtures("secrets")
def test_handlers_set_up_by_others_see_redacted_records(captured: io.StringIO) -> None:
    # uvicorn installs its own handlers; the record factory redacts before any handler runs
    other = io.StringIO()
    handler = logging.StreamHandler(other)
    logger = logging.getLogger("uvicorn.error.test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("token %s leaked?", SECRET)
    finally:
        logger.removeHandler(handler)
    assert SECRET not in other.getvalue()
    assert "[REDACTED]" in other.getvalue()


def test_redaction_filter_alone() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "auth %s", ("Bearer abcdefghijk",), None)
    assert RedactionFilter().filter(record) is True
    assert "abcdefghijk" not in record.getMessage()


# ---- prompts stay out by default ---------------------------------------------------------------
def test_default_logs_carry_no_prompt(captured: io.StringIO) -> None:
    log = logging.getLogger("playground.test")
    log.info("generate", extra={"prompt": PROMPT, "messages": [{"role": "user", "content": PROMPT}], "model": "m"})
    out = captured.getvalue()
    assert PROMPT not in out
    (record,) = lines(captured)
    assert record["prompt_chars"] == len(PROMPT)
    assert record["messages_chars"] > len(PROMPT)
    assert record["model"] == "m"


def test_prompts_logged_only_when_asked(captured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYGROUND_LOG_PROMPTS", "1")
    logging.getLogger("playground.test").info("generate", extra={"prompt": PROMPT})
    (record,) = lines(captured)
    assert record["prompt"] == PROMPT


def test_the_real_request_log_line_has_no_prompt(captured: io.StringIO) -> None:
    """The service's own log line for a generation (through the real Playground)."""
    from components.core.service import Playground
    from components.vocabulary.catalog import load_catalog

    playground = Playground(load_catalog())
    prepared = playground.prepare(playground.catalog.default.id, PROMPT)

    async def first_event() -> None:
        stream = playground.stream(prepared)
        async for _ in stream:
            break
        await stream.aclose()

    asyncio.run(first_event())
    out = captured.getvalue()
    assert "generate" in out
    assert PROMPT not in out


def test_key_value_format() -> None:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello world", None, None)
    record.model = "a/b"
    line = KeyValueFormatter().format(record)
    assert 'msg="hello world"' in line and "model=a/b" in line and "level=INFO" in line
    assert json.loads(JsonFormatter().format(record))["msg"] == "hello world"


# ---- conversation log ------------------------------------------------------------------------------
def make_request(catalog, prompt: str = PROMPT) -> GenerationRequest:
    return GenerationRequest(
        model=catalog.default,
        prompt=prompt,
        messages=[{"role": "user", "content": prompt}],
        settings=SamplingSettings(),
    )


def stats(reason: str = "stop") -> GenerationStats:
    return GenerationStats(reason, 5, 2, 0.1, 0.2, 10.0)


async def events(*items: Event) -> AsyncIterator[Event]:
    for item in items:
        await asyncio.sleep(0)
        yield item


async def test_conversation_log_gets_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog) -> None:
    path = tmp_path / "conv" / "log.jsonl"
    monkeypatch.setenv("PLAYGROUND_CONVERSATION_LOG", str(path))
    monkeypatch.setenv("HF_TOKEN", SECRET)
    request = make_request(catalog, prompt=f"{PROMPT} {SECRET}")
    seen = [
        e
        async for e in record_conversation(
            request, events(TextDelta("Hal"), TextDelta("lo"), Finished(stats())), source="api", session="abc"
        )
    ]
    assert [type(e) for e in seen] == [TextDelta, TextDelta, Finished]  # passed through unchanged
    failing = record_conversation(make_request(catalog), events(TextDelta("x"), Failed("err_internal", {})), "ui")
    assert len([e async for e in failing]) == 2
    sink = logging_setup.conversation_log()
    assert sink is not None and sink.flush()
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(entries) == 2
    first, second = entries
    assert first["answer"] == "Hallo" and first["finish"] == "stop" and first["source"] == "api"
    assert first["model"] == catalog.default.id and first["stats"]["completion_tokens"] == 2
    assert first["session"] and first["session"] != "abc"  # a pseudonym, not the session hash
    assert PROMPT in first["prompt"] and SECRET not in path.read_text(encoding="utf-8")
    assert second["finish"] == "error" and second["error"]["key"] == "err_internal"
    sink.close()


async def test_conversation_log_records_a_closed_stream_and_closes_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog
) -> None:
    monkeypatch.setenv("PLAYGROUND_CONVERSATION_LOG", str(tmp_path / "c.jsonl"))
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[Event]:
        try:
            while True:
                await asyncio.sleep(0)
                yield TextDelta("a")
        finally:
            closed.set()

    stream = record_conversation(make_request(catalog), endless(), "ui")
    async for _ in stream:
        break
    await stream.aclose()
    assert closed.is_set()  # Stop still reaches the engine
    sink = logging_setup.conversation_log()
    assert sink is not None and sink.flush()
    (entry,) = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert entry["finish"] == "closed" and entry["answer"] == "a"
    sink.close()


async def test_without_conversation_log_nothing_is_written(monkeypatch: pytest.MonkeyPatch, catalog) -> None:
    monkeypatch.delenv("PLAYGROUND_CONVERSATION_LOG", raising=False)
    assert logging_setup.conversation_log() is None
    out = [e async for e in record_conversation(make_request(catalog), events(TextDelta("a"), Finished(stats())))]
    assert len(out) == 2


def test_record_never_blocks_even_when_the_disk_is_stuck(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    sink = ConversationLog(tmp_path / "slow.jsonl", max_pending=100)
    real_dumps = json.dumps

    def stuck_dumps(*args, **kwargs):  # the writer thread hangs on its first write
        gate.wait(10)
        return real_dumps(*args, **kwargs)

    monkeypatch.setattr(logging_setup.json, "dumps", stuck_dumps)
    start = time.perf_counter()
    accepted = [sink.record({"n": i}) for i in range(1000)]
    elapsed = time.perf_counter() - start
    # a blocking record() would wait the stuck writer's 10 s; far below that is "never blocks" on any machine
    assert elapsed < 5, f"recording 1000 entries took {elapsed:.2f} s"
    assert sum(accepted) <= 101 and sink.dropped >= 899  # overflow is dropped and counted, not waited for
    gate.set()
    assert sink.flush(10)
    monkeypatch.setattr(logging_setup.json, "dumps", real_dumps)
    sink.close()
    written = (tmp_path / "slow.jsonl").read_text().splitlines()
    assert len(written) == sum(accepted)


def test_unwritable_log_does_not_break_anything(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    sink = ConversationLog(blocker / "sub" / "log.jsonl")  # parent is a file: cannot be created
    assert sink.record({"a": 1}) in (True, False)
    assert sink.flush(5)
    sink.close()
