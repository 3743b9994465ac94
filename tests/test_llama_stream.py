"""The llama.cpp engine's in-process stream (LlamaServer.completion on handle_completions) against a scripted stand-in
for xllamacpp's Server: Stop is heard at the prompt's progress reports and at every token, closing the stream
cancels the task, chunks that came between two looks become one delta, and an error becomes the engine's own.

The stand-in calls back as xllamacpp does (src/xllamacpp/server.cpp, `process_handler_response`: one parsed chunk
per call on the calling thread, a true return stops the request; errors come through the same callback) with the
chunks llama-server's /v1/completions streams (tools/server/server-task.cpp `to_json_oaicompat`, progress with
`return_progress`); test_llama_engine.py runs the same paths on the real server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from components.engines.llama_cpp import STREAM_POLL_S, LlamaCppEngine, LlamaServer, native_event
from components.vocabulary.catalog import load_catalog
from components.vocabulary.generation import EngineDone, EngineError, GenerationRequest, TextDelta
from components.vocabulary.settings import SamplingSettings


def progress(processed: int, total: int = 3000) -> dict[str, Any]:
    choice = {"text": "", "index": 0, "logprobs": None, "finish_reason": None}
    return {
        "choices": [choice],
        "object": "text_completion",
        "prompt_progress": {"total": total, "processed": processed},
    }


def token(text: str, prob: float | None = None) -> dict[str, Any]:
    logprobs = {"content": [{"id": 1, "token": text, "prob": prob, "top_probs": []}]} if prob is not None else None
    return {"choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": None}]}


def final(reason: str, completion_tokens: int, prompt_tokens: int) -> dict[str, Any]:
    usage = {"completion_tokens": completion_tokens, "prompt_tokens": prompt_tokens}
    return {"choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": reason}], "usage": usage}


class ScriptedServer:
    """handle_completions that plays a script: chunks, and pauses (float seconds) between them."""

    def __init__(self, script: list[Any], raises: Exception | None = None) -> None:
        self.script = script
        self.raises = raises
        self.body: dict[str, Any] | None = None
        self.stopped_at: int | None = None  # the index of the chunk whose callback asked to stop
        self.returned = threading.Event()

    def handle_completions(self, body: dict[str, Any], callback: Callable[[dict[str, Any]], bool]) -> None:
        self.body = body
        try:
            if self.raises is not None:
                raise self.raises
            for i, item in enumerate(self.script):
                if isinstance(item, float):
                    time.sleep(item)
                elif callback(item):
                    self.stopped_at = i
                    return
        finally:
            self.returned.set()


@contextlib.contextmanager
def scripted(server: ScriptedServer) -> Iterator[LlamaServer]:
    llama = object.__new__(LlamaServer)
    llama._server = server
    llama._streams = concurrent.futures.ThreadPoolExecutor(2)
    try:
        yield llama
    finally:
        llama._streams.shutdown(wait=True)


async def test_stop_while_the_prompt_is_read_is_heard_at_its_next_progress_report() -> None:
    """No token has come yet (a long prompt): Stop reaches the server at the next batch's report, which cancels."""
    script = [progress(0), 0.6, progress(2048), 0.6, progress(3000), token("zu spät"), final("length", 1, 3000)]
    server = ScriptedServer(script)
    cancel = threading.Event()
    with scripted(server) as llama:
        batches = []
        started = time.monotonic()
        stream = llama.completion({"prompt": [1, 2, 3], "n_predict": 5}, cancel)

        async def read() -> None:
            async for batch in stream:
                batches.append(batch)

        reading = asyncio.ensure_future(read())
        await asyncio.sleep(0.2)
        cancel.set()
        await asyncio.wait_for(reading, 5)
        assert server.returned.wait(5)
    assert batches == []  # no text: the request ended quietly, as Stop asked
    assert server.stopped_at == 2  # the report after the first batch, not the end of the prompt
    assert time.monotonic() - started < 1.2 + 2 * STREAM_POLL_S
    assert server.body == {"prompt": [1, 2, 3], "n_predict": 5, "stream": True, "return_progress": True}


async def test_stop_while_text_streams_is_heard_at_the_next_token() -> None:
    script = [progress(3), token("Ein"), 0.3, token(" Satz"), 0.3, token(" mehr"), final("length", 3, 3)]
    server = ScriptedServer(script)
    cancel = threading.Event()
    with scripted(server) as llama:
        texts = []
        async for batch in llama.completion({"prompt": [1]}, cancel):
            texts += [event["content"] for event in batch]
            cancel.set()
        assert server.returned.wait(5)
    assert texts == ["Ein"]
    assert server.stopped_at == 3


async def test_closing_the_stream_cancels_the_task() -> None:
    """The consumer went away (a closed tab, an aborted compare pane): the server is told at the next chunk."""
    server = ScriptedServer([token("a"), 0.3, token("b"), 0.3, token("c"), final("length", 3, 1)])
    with scripted(server) as llama:
        stream = llama.completion({"prompt": [1]}, threading.Event())
        first = await anext(stream)
        await stream.aclose()
        assert server.returned.wait(5)
    assert [event["content"] for event in first] == ["a"]
    assert server.stopped_at == 2


async def test_chunks_that_came_between_two_looks_become_one_delta() -> None:
    """The first text at once; then three tokens in one look: one TextDelta with their text, 3 tokens and their
    probabilities, in order."""
    script = [
        progress(7, 7),
        token("In", 0.9),
        0.2,
        token("Ham", 0.5),
        token("", 0.25),  # text held back for a stop string: a token without text
        token("burg", 0.75),
        0.3,
        final("stop", 4, 7),
    ]
    with scripted(ScriptedServer(script)) as llama:
        engine = LlamaCppEngine()
        ref = load_catalog().default
        request = GenerationRequest(model=ref, prompt="x", messages=[], settings=SamplingSettings(top_tokens=1))
        body = {"prompt": [1], "n_predict": 3, "n_probs": 1}
        out = [item async for item in engine._run(llama, request, body, 1)]
    deltas = [item for item in out if isinstance(item, TextDelta)]
    assert [(d.text, d.tokens) for d in deltas] == [("In", 1), ("Hamburg", 3)]
    assert [p.token for p in deltas[1].probs] == ["Ham", "", "burg"]
    done = out[-1]
    assert isinstance(done, EngineDone)
    assert (done.finish_reason, done.completion_tokens, done.prompt_tokens) == ("stop", 4, 7)


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        (
            ScriptedServer(
                [{"error": {"code": 400, "message": "Prompt contains invalid tokens", "type": "invalid_request_error"}}]
            ),
            "HTTP 400: Prompt contains invalid tokens",
        ),
        (ScriptedServer([token("a"), {"error": {"code": 500, "message": "slot failed"}}]), "slot failed"),
        (ScriptedServer([], raises=ValueError("not JSON")), "llama.cpp server: ValueError"),
    ],
    ids=["refused", "error-after-text", "call-failed"],
)
async def test_an_error_is_the_engines_error(server: ScriptedServer, expected: str) -> None:
    with scripted(server) as llama, pytest.raises(EngineError) as caught:
        async for _ in llama.completion({"prompt": [1]}, threading.Event()):
            pass
    assert caught.value.key == "err_internal" and expected in str(caught.value.params.get("detail"))


def test_chunks_read_as_completion_events() -> None:
    assert native_event(progress(10)) is None
    assert native_event(token("Hallo", 0.5)) == {
        "content": "Hallo",
        "token_count": 1,
        "completion_probabilities": [{"id": 1, "token": "Hallo", "prob": 0.5, "top_probs": []}],
    }
    assert native_event(final("length", 4, 9)) == {
        "content": "",
        "stop": True,
        "finish_reason": "length",
        "tokens_predicted": 4,
        "tokens_evaluated": 9,
    }
