"""The llama.cpp engine's loopback stream (LlamaServer.completion, h11 on a socket) against a scripted HTTP server
on loopback: Stop closes the connection while nothing arrives (the prompt still being processed), chunks that
arrive together become one delta, and a refusal or a broken stream becomes the engine's own error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from components.engines.llama_cpp import CANCEL_POLL_S, LlamaCppEngine, LlamaServer
from components.vocabulary.catalog import load_catalog
from components.vocabulary.generation import EngineDone, EngineError, GenerationRequest, TextDelta
from components.vocabulary.settings import SamplingSettings

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def chunk(raw: bytes) -> bytes:
    """One chunk of HTTP/1.1 chunked transfer coding, as cpp-httplib writes a streamed response."""
    return f"{len(raw):x}\r\n".encode() + raw + b"\r\n"


REFUSAL = b'{"error": {"code": 400, "message": "too many stops"}}'
STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, Any]]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head, json.loads(await reader.readexactly(length))


@contextlib.asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[LlamaServer]:
    """A LlamaServer whose loopback address is a scripted server (only `completion` is used)."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    llama = object.__new__(LlamaServer)
    llama.url = f"http://127.0.0.1:{port}"
    llama._key = "test-key"
    try:
        yield llama
    finally:
        server.close()
        await server.wait_closed()


async def test_stop_closes_the_connection_while_the_prompt_is_processed() -> None:
    """No token has come yet (a long prompt): Stop must still reach the server, which cancels on a closed socket."""
    closed = asyncio.Event()
    seen: dict[str, Any] = {}

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, body = await read_request(reader)
        seen["head"], seen["body"] = head, body
        writer.write(STREAM_HEAD)  # the headers come at once, the first token never
        await writer.drain()
        if await reader.read(1) == b"":  # EOF: the client closed the connection
            closed.set()
        writer.close()

    cancel = threading.Event()
    async with scripted(silent) as llama:
        stream = llama.completion({"prompt": [1, 2, 3], "n_predict": 5}, cancel)
        reading = asyncio.ensure_future(anext(stream, None))
        await asyncio.sleep(0.3)
        assert not reading.done() and not closed.is_set()
        stopped_at = time.monotonic()
        cancel.set()
        assert await asyncio.wait_for(reading, 2) is None  # the stream ends quietly, as Stop asked
        await asyncio.wait_for(closed.wait(), 2)
        assert time.monotonic() - stopped_at < CANCEL_POLL_S + 0.5
    assert seen["body"] == {"prompt": [1, 2, 3], "n_predict": 5, "stream": True}
    assert b"Authorization: Bearer test-key" in seen["head"] and b"Connection: close" in seen["head"]


async def test_chunks_that_arrive_together_become_one_delta() -> None:
    """Three tokens in one write: one TextDelta with their text, 3 tokens and their probabilities, in order."""

    async def burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        events = [
            {"content": "Ham", "tokens": [11], "completion_probabilities": [{"token": "Ham", "prob": 0.5}]},
            {"content": "", "tokens": [12], "completion_probabilities": [{"token": "b", "prob": 0.25}]},
            {"content": "burg", "tokens": [13], "completion_probabilities": [{"token": "urg", "prob": 0.75}]},
        ]
        writer.write(STREAM_HEAD + b"".join(chunk(event(e)) for e in events))
        await writer.drain()
        await asyncio.sleep(0.2)
        done = {"content": "", "stop": True, "stop_type": "eos", "tokens_predicted": 3, "tokens_evaluated": 7}
        writer.write(chunk(event(done)) + b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    async with scripted(burst) as llama:
        engine = LlamaCppEngine()
        ref = load_catalog().default
        request = GenerationRequest(model=ref, prompt="x", messages=[], settings=SamplingSettings(top_tokens=1))
        body = {"prompt": [1], "n_predict": 3, "n_probs": 1}
        out = [item async for item in engine._run(llama, request, body, 1)]
    deltas = [item for item in out if isinstance(item, TextDelta)]
    assert [(d.text, d.tokens) for d in deltas] == [("Hamburg", 3)]
    assert [p.token for p in deltas[0].probs] == ["Ham", "b", "urg"]
    done = out[-1]
    assert isinstance(done, EngineDone)
    assert (done.finish_reason, done.completion_tokens, done.prompt_tokens) == ("stop", 3, 7)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(REFUSAL), REFUSAL),
            "HTTP 400",
        ),
        (STREAM_HEAD + chunk(event({"content": "a", "tokens": [1]})) + b"40\r\npartial", "broke off"),
        (STREAM_HEAD + chunk(b'error: {"message": "slot failed"}\n\n') + b"0\r\n\r\n", "slot failed"),
    ],
    ids=["refused", "broken", "error-event"],
)
async def test_a_refusal_or_a_broken_stream_is_the_engines_error(response: bytes, expected: str) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response)
        await writer.drain()
        writer.close()

    async with scripted(answer) as llama:
        with pytest.raises(EngineError) as caught:
            async for _ in llama.completion({"prompt": [1]}, threading.Event()):
                pass
    assert caught.value.key == "err_internal" and expected in str(caught.value.params.get("detail"))


async def test_a_server_that_is_gone_is_the_engines_error() -> None:
    async def nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with scripted(nothing) as llama:
        port = int(llama.url.rsplit(":", 1)[1])
    llama.url = f"http://127.0.0.1:{port}"  # the listener is closed now
    with pytest.raises(EngineError) as caught:
        async for _ in llama.completion({"prompt": [1]}):
            pass
    assert caught.value.key == "err_internal"
