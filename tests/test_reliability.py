"""Reliability of the real app: bursts of bad input, failing TGI servers, closed tabs, 64 sessions, isolation.

The app runs as `python app.py` in a subprocess with TGI_URL pointing at the TGI stand-in
(tests/tgi_standin.py) on loopback, which serves EM German LeoLM Mistral: its `tgi` build is what is asked. The
stand-in here echoes a per-request marker from the prompt, so each of many concurrent sessions can
tell its own answer from everyone else's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from components.vocabulary.messages import MESSAGES, t
from tests.app_server import RunningApp, free_port, running_app
from tests.browser import browser_fixture
from tests.tgi_standin import EOS_ID, EOS_TEXT, Standin, StandinConfig, StandinServer, tokenize

pytestmark = pytest.mark.slow

OFFLINE = "smollm2-135m-instruct/gguf-q4_1"
TGI_MODEL = "em-german-leo-mistral/tgi"
MARKER_RE = re.compile(r"MARKER-[0-9a-f]{12}")
#: greedy, the offline model answers this until max_new_tokens runs out (measured: 1500 of 1500 tokens,
#: finish "length", 15-32 s); "count to 500" ended by itself after 579 tokens, too soon for a busy machine
LONG_PROMPT = "Noch eine Frage"
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', "Exception:", "Error(")
REMOTE_TIMEOUT_S = 2.0


# ---- an echoing stand-in ----------------------------------------------------------------------------
class EchoStandin(Standin):
    """The TGI stand-in, answering `Echo MARKER-… fertig` for prompts that carry a marker.

    `http_error` (status, error_type, message) answers the next generations with a plain HTTP error
    before any streaming, as TGI's non-streaming routes and gateways in front of TGI do.
    """

    http_error: tuple[int, str | None, str] | None = None

    def validate(self, inputs: str, params: dict[str, Any], stream: bool) -> tuple[str | None, dict[str, Any]]:
        error, norm = super().validate(inputs, params, stream)
        markers = MARKER_RE.findall(inputs)
        if not error and markers:
            norm["echo"] = markers[-1]  # the newest message's marker; history may hold older ones
        return error, norm

    async def tokens(self, norm: dict[str, Any], fail_after: int | None) -> AsyncIterator[tuple[int, str, bool, Any]]:
        echo = norm.get("echo")
        if not echo:
            async for item in super().tokens(norm, fail_after):
                yield item
            return
        pieces = tokenize(f"Echo {echo} fertig.")
        delay = 1.0 / self.config.tokens_per_s if self.config.tokens_per_s > 0 else 0.0
        for i, (tid, piece, _, _) in enumerate(pieces):
            if fail_after is not None and i >= fail_after:
                return
            await asyncio.sleep(delay)
            if i + 1 >= norm["max_new_tokens"]:
                yield tid, piece, False, "length"
                return
            yield tid, piece, False, None
        await asyncio.sleep(delay)
        yield EOS_ID, EOS_TEXT, True, "eos_token"

    async def compat_generate(self, request: Request) -> Response:
        if self.http_error is not None:
            await self._record(request)
            status, error_type, message = self.http_error
            if error_type is None:  # a proxy or gateway in front of TGI answers in plain text
                return PlainTextResponse(message, status)
            return JSONResponse({"error": message, "error_type": error_type}, status)
        return await super().compat_generate(request)


class StandinHolder:
    """The running stand-in; a test may stop it and start a new one on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: StandinServer | None = None

    @property
    def standin(self) -> EchoStandin:
        assert self.server is not None
        return self.server.standin  # type: ignore[return-value]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, **config: Any) -> EchoStandin:
        server = StandinServer(StandinConfig(**config), port=self.port)
        server.standin = EchoStandin(server.standin.config)
        server._server.config.app = server.standin.app  # serve the echoing one (set before start)
        self.server = server.start()
        return self.standin

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def reset(self, **config: Any) -> EchoStandin:
        standin = self.standin
        standin.reset(**config)
        standin.http_error = None
        return standin


@pytest.fixture(scope="module")
def tgi() -> Iterator[StandinHolder]:
    holder = StandinHolder()
    holder.start(tokens_per_s=200)
    yield holder
    holder.stop()


@pytest.fixture(scope="module")
def live_app(tgi: StandinHolder) -> Iterator[RunningApp]:
    # one llama.cpp slot: the queue test needs a second visitor to wait (the default is up to 4 slots)
    env = {"TGI_URL": tgi.url, "PLAYGROUND_REMOTE_TIMEOUT_S": str(REMOTE_TIMEOUT_S), "PLAYGROUND_LLAMA_PARALLEL": "1"}
    with running_app(env) as app:
        yield app


@pytest.fixture(scope="module")
def live_patient(tgi: StandinHolder) -> Iterator[RunningApp]:
    """The app with the default first-token timeout: with 64 gradio_client threads on a busy 2-core machine a
    first token can take longer than the 2 s the timeout tests use, and this app is not about time-outs."""
    with running_app({"TGI_URL": tgi.url}) as app:
        yield app


@pytest.fixture
def fresh(tgi: StandinHolder) -> EchoStandin:
    """The stand-in back to normal behaviour before a test."""
    if tgi.server is None:
        tgi.start(tokens_per_s=200)
    return tgi.reset(tokens_per_s=200)


def new_marker() -> str:
    return f"MARKER-{uuid.uuid4().hex[:12]}"


def chat(client: Any, message: str, model: str = TGI_MODEL, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    text, info = client.predict(message=message, model=model, api_name="/chat", **kwargs)
    return text, info


def assert_clean(text: str) -> None:
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, f"{marker!r} in {text!r}"


def assert_still_serving(live_app: RunningApp, client: Any) -> None:
    assert live_app.process.poll() is None, "the app process died"
    marker = new_marker()
    text, info = chat(client, f"Wiederhole {marker}", max_new_tokens=20)
    assert marker in text and "error" not in info, info
    text, info = chat(client, "Sag Hallo.", model=OFFLINE, max_new_tokens=4, temperature=0)
    assert text.strip() and "error" not in info, info


# ---- bad input, in bursts ----------------------------------------------------------------------------
BAD_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("empty", {"message": ""}),
    ("whitespace", {"message": "   \n\t  "}),
    ("100k characters", {"message": "Wort " * 20_000}),
    ("only control characters", {"message": "\x00\x01\x02\x1b\x7f\u200b"}),
    ("temperature text", {"message": "Hallo", "temperature": "heiß"}),
    ("temperature negative", {"message": "Hallo", "temperature": -1}),
    ("temperature nan", {"message": "Hallo", "temperature": "nan"}),
    ("top_k fraction", {"message": "Hallo", "top_k": 1.5}),
    ("max_new_tokens huge", {"message": "Hallo", "max_new_tokens": 10**9}),
    ("seed negative", {"message": "Hallo", "seed": -5}),
    ("too many stops", {"message": "Hallo", "stop": ["a", "b", "c", "d", "e", "f"]}),
    ("stop not a list", {"message": "Hallo", "stop": 5}),
    ("unknown model", {"message": "Hallo", "model": "gibt-es-nicht/q4"}),
    ("path as model", {"message": "Hallo", "model": "../../etc/passwd"}),
    ("number as model", {"message": "Hallo", "model": 42}),
    ("model needs a GPU", {"message": "Hallo", "model": "instruct-igel-001/fp16"}),
    ("history text", {"message": "Hallo", "history": "kaputt"}),
    ("history numbers", {"message": "Hallo", "history": [[1, 2]]}),
    ("history half pairs", {"message": "Hallo", "history": [["nur eine Frage"]]}),
    ("history too long", {"message": "Hallo", "history": [["q", "a"]] * 60}),
    ("system prompt 100k", {"message": "Hallo", "system_prompt": "x" * 100_000}),
    ("unknown language", {"message": "", "lang": "xx"}),
]


@pytest.mark.parametrize(("name", "kwargs"), BAD_REQUESTS, ids=[n for n, _ in BAD_REQUESTS])
def test_each_bad_request_gets_a_clear_refusal(client: Any, name: str, kwargs: dict[str, Any]) -> None:
    from gradio_client.exceptions import AppError

    kwargs = {"model": TGI_MODEL, **kwargs}
    with pytest.raises(AppError) as caught:
        client.predict(api_name="/chat", **kwargs)
    message = str(caught.value)
    assert len(message) > 10, f"{name}: {message!r}"
    assert_clean(message)


def test_a_burst_of_bad_requests_then_good_ones_work(live_app: RunningApp, client: Any, fresh: EchoStandin) -> None:
    """176 bad requests from 16 visitors at once; every one refused quickly, then the app serves normally."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    # 16 visitors, each its own client sending its requests one after another: gradio_client 2.7's Client
    # shares one event stream between its calls, and a call posted from another thread while that stream is
    # closing (gradio sends close_stream once a session has nothing pending) gets the closing stream's end and
    # raises CancelledError although the server answered it (client.py send_data/close_stream; seen once in
    # CI with one client shared by 16 threads)
    visitors = list(
        concurrent.futures.ThreadPoolExecutor(16).map(
            lambda _: Client(live_app.url, verbose=False, httpx_kwargs={"timeout": 60}), range(16)
        )
    )
    burst = [kwargs for _, kwargs in BAD_REQUESTS] * 8

    def one(visitor: Any) -> list[str]:
        said = []
        for kwargs in burst[visitors.index(visitor) :: len(visitors)]:
            try:
                visitor.predict(api_name="/chat", **{"model": TGI_MODEL, **kwargs})
                said.append("NOT REFUSED")
            except AppError as exc:
                said.append(str(exc))
        return said

    start = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(len(visitors)) as pool:
            messages = [m for said in pool.map(one, visitors) for m in said]
    finally:
        for c in visitors:
            with contextlib.suppress(Exception):
                c.close()
    assert len(messages) == len(burst)
    elapsed = time.monotonic() - start
    assert "NOT REFUSED" not in messages
    for message in messages:
        assert_clean(message)
    assert elapsed < 60, f"{len(burst)} refusals took {elapsed:.1f} s"
    # nothing reached the server: refusals happen before any generation
    assert fresh.generation_calls() == []
    assert_still_serving(live_app, client)


# ---- failing servers ---------------------------------------------------------------------------------
STREAM_FAILURES = [
    ("overloaded", "err_remote_overloaded", False),
    ("validation", "err_remote_validation", False),
    ("generation", "err_remote_generation", True),
    ("incomplete", "err_remote_incomplete", True),
    ("unknown", "err_remote_unknown", True),
    ("cut", "err_remote_cut", True),
    ("malformed", "err_remote_malformed", True),
]


@pytest.mark.parametrize(("fail", "key", "partial"), STREAM_FAILURES, ids=[f for f, _, _ in STREAM_FAILURES])
def test_server_failure_in_the_stream(
    live_app: RunningApp, client: Any, tgi: StandinHolder, fresh: EchoStandin, fail: str, key: str, partial: bool
) -> None:
    fresh.config.fail = fail
    fresh.config.fail_after = 2
    text, info = chat(client, "Was ist die Hauptstadt von Deutschland?", lang="en")
    assert info.get("error_code") == key, info
    assert info["error"] and info["error"] != key, "the error is a sentence, not a key"
    assert_clean(info["error"])
    assert "TGI" in info["error"]  # names the endpoint by its label, never by URL
    assert tgi.url not in info["error"] and str(tgi.port) not in info["error"]
    if partial:
        assert text.startswith("Berlin ist"), "text streamed before the failure stays"
    else:
        assert text == ""
    assert info["stats"]["finish_reason"] == "error"
    tgi.reset(tokens_per_s=200)
    assert_still_serving(live_app, client)


HTTP_FAILURES = [
    (429, "overloaded", "Model is overloaded", "err_remote_overloaded"),
    (422, "validation", "Input validation error: `inputs` must have less than 4095 tokens", "err_remote_validation"),
    (424, "generation", "Request failed during generation: Server error: CUDA out of memory", "err_remote_generation"),
    (503, None, "Service Unavailable", "err_remote_http"),
]


@pytest.mark.parametrize(
    ("status", "error_type", "text", "key"), HTTP_FAILURES, ids=[str(s) for s, *_ in HTTP_FAILURES]
)
def test_server_failure_as_http_status(
    live_app: RunningApp,
    client: Any,
    tgi: StandinHolder,
    fresh: EchoStandin,
    status: int,
    error_type: str | None,
    text: str,
    key: str,
) -> None:
    fresh.http_error = (status, error_type, text)
    answer, info = chat(client, "Hallo?")
    assert answer == ""
    assert info.get("error_code") == key, info
    assert_clean(info["error"])
    tgi.reset(tokens_per_s=200)
    assert_still_serving(live_app, client)


def test_first_token_that_never_comes(
    live_app: RunningApp, client: Any, tgi: StandinHolder, fresh: EchoStandin
) -> None:
    fresh.config.fail = "stall"
    fresh.config.keepalive_s = 0.5  # keep-alive comments keep the connection busy without a token
    start = time.monotonic()
    text, info = chat(client, "Hallo?")
    elapsed = time.monotonic() - start
    assert text == ""
    assert info.get("error_code") == "err_remote_timeout", info
    assert_clean(info["error"])
    assert REMOTE_TIMEOUT_S - 0.5 < elapsed < REMOTE_TIMEOUT_S + 5, f"gave up after {elapsed:.1f} s"
    # the app hung up on the stalled server instead of leaving the request running there
    assert fresh.wait_disconnect(2) is not None
    tgi.reset(tokens_per_s=200)
    assert_still_serving(live_app, client)


def test_refused_connection_then_the_server_comes_back(live_app: RunningApp, client: Any, tgi: StandinHolder) -> None:
    tgi.stop()
    try:
        start = time.monotonic()
        text, info = chat(client, "Hallo?")
        assert time.monotonic() - start < 15
        assert text == ""
        assert info.get("error_code") == "err_remote_unreachable", info
        assert_clean(info["error"])
        assert str(tgi.port) not in info["error"]
        # the offline model is unaffected
        text, info = chat(client, "Sag Hallo.", model=OFFLINE, max_new_tokens=4, temperature=0)
        assert text.strip() and "error" not in info
    finally:
        tgi.start(tokens_per_s=200)
    assert_still_serving(live_app, client)


# ---- closing a request mid-answer ----------------------------------------------------------------
def wait_for_text(job: Any, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        outputs = job.outputs()
        if outputs and outputs[-1][0]:
            return outputs[-1][0]
        time.sleep(0.02)
    raise AssertionError(f"no text within {timeout_s} s: {job.status()} {job.outputs()[-1:]}")


def test_cancelled_api_call_closes_the_server_connection_within_a_second(
    live_app: RunningApp, client: Any, fresh: EchoStandin
) -> None:
    fresh.config.tokens_per_s = 20
    fresh.config.endless = True
    job = client.submit(
        message="Erzähl mir eine lange Geschichte.", model=TGI_MODEL, max_new_tokens=1000, api_name="/chat"
    )
    wait_for_text(job)
    cancelled_at = time.monotonic()
    job.cancel()
    gone = fresh.wait_disconnect(3)
    assert gone is not None, "the stand-in never saw the connection close"
    assert gone.at - cancelled_at < 1.0, f"closed {gone.at - cancelled_at:.2f} s after the cancel"
    assert 0 < gone.tokens_sent < 100
    assert fresh.active == 0


browser = browser_fixture()


def open_chat(browser: Any, url: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="de-DE")
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    page.locator("#chat-input textarea").wait_for()
    return context, page


def choose(page: Any, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id} [role=option]", has_text=option).first.click()


def send(page: Any, text: str) -> None:
    box = page.locator("#chat-input textarea")
    box.fill(text)
    box.press("Enter")


def last_answer(page: Any) -> str:
    bots = page.locator("#chat-bot [data-testid=bot]")
    return bots.last.inner_text() if bots.count() else ""


def wait_until(check: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.03)


def test_closed_tab_stops_the_work_on_the_server(live_app: RunningApp, browser: Any, fresh: EchoStandin) -> None:
    fresh.config.tokens_per_s = 20
    fresh.config.endless = True
    context, page = open_chat(browser, live_app.url)
    try:
        choose(page, "chat-family", "EM German")
        choose(page, "chat-quant", "TGI")
        send(page, "Erzähl mir eine lange Geschichte.")
        wait_until(lambda: "Berlin" in last_answer(page), "the answer to stream")
        closed_at = time.monotonic()
        page.close()
    finally:
        context.close()
    gone = fresh.wait_disconnect(5)
    assert gone is not None, "the TGI request kept running after the tab closed"
    assert gone.at - closed_at < 1.0, f"the server saw the close {gone.at - closed_at:.2f} s after the tab closed"
    assert fresh.active == 0


# ---- many sessions at once -------------------------------------------------------------------------
def test_64_concurrent_sessions_get_only_their_own_answers(live_patient: RunningApp, fresh: EchoStandin) -> None:
    from gradio_client import Client

    fresh.config.tokens_per_s = 50
    sessions = 64
    # 60 s per HTTP call: gradio_client's default 5 s can refuse a queue join waiting behind 63 others
    # on a busy 2-core machine; the test is about answers not crossing, the benchmark about speed
    clients = list(
        concurrent.futures.ThreadPoolExecutor(16).map(
            lambda _: Client(live_patient.url, verbose=False, httpx_kwargs={"timeout": 60}), range(sessions)
        )
    )
    assert len({c.session_hash for c in clients}) == sessions
    markers = [new_marker() for _ in range(sessions)]
    barrier = threading.Barrier(sessions)

    def one(i: int) -> tuple[str, dict[str, Any], float]:
        barrier.wait(30)
        start = time.monotonic()
        text, info = chat(clients[i], f"Wiederhole genau: {markers[i]}", max_new_tokens=50)
        return text, info, time.monotonic() - start

    try:
        with concurrent.futures.ThreadPoolExecutor(sessions) as pool:
            results = list(pool.map(one, range(sessions)))
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                c.close()
    for i, (text, info, _) in enumerate(results):
        assert "error" not in info, info
        assert MARKER_RE.findall(text) == [markers[i]], f"session {i} got {text!r}"
        assert markers[i] in info["prompt"] and all(m not in info["prompt"] for m in markers if m != markers[i])
    # all ran at once: the stand-in saw them overlap
    assert len(fresh.generation_calls()) == sessions
    slowest = max(r[2] for r in results)
    assert slowest < 60, f"the slowest session took {slowest:.1f} s"


def test_history_of_one_session_never_reaches_another(live_app: RunningApp, fresh: EchoStandin) -> None:
    """Two API sessions interleave multi-turn conversations; each prompt holds only its own history."""
    from gradio_client import Client

    a, b = Client(live_app.url, verbose=False), Client(live_app.url, verbose=False)
    try:
        history: dict[str, list[list[str]]] = {"a": [], "b": []}
        seen: dict[str, list[str]] = {"a": [], "b": []}
        for _turn in range(3):
            for name, c in (("a", a), ("b", b)):
                marker = new_marker()
                seen[name].append(marker)
                text, info = chat(c, f"{name}: {marker}", history=history[name], max_new_tokens=20)
                assert marker in text
                other = "b" if name == "a" else "a"
                assert all(m not in info["prompt"] for m in seen[other])
                assert all(m in info["prompt"] for m in seen[name])
                history[name].append([f"{name}: {marker}", text])
    finally:
        a.close()
        b.close()


def test_browser_sessions_keep_their_own_conversation(live_app: RunningApp, browser: Any, fresh: EchoStandin) -> None:
    """Two browser contexts chat at the same time; each page's history (and raw prompt) is its own."""
    pages = []
    contexts = []
    markers = {"a": [new_marker(), new_marker()], "b": [new_marker(), new_marker()]}
    try:
        for _ in range(2):
            context, page = open_chat(browser, live_app.url)
            contexts.append(context)
            choose(page, "chat-family", "EM German")
            choose(page, "chat-quant", "TGI")
            pages.append(page)
        page_a, page_b = pages
        for turn in range(2):
            send(page_a, f"Ich bin A {markers['a'][turn]}")
            send(page_b, f"Ich bin B {markers['b'][turn]}")
            for page, name in ((page_a, "a"), (page_b, "b")):
                wait_until(lambda p=page, n=name, k=turn: markers[n][k] in last_answer(p), f"answer {name}{turn}")
        for page, mine, theirs in ((page_a, "a", "b"), (page_b, "b", "a")):
            users = page.locator("#chat-bot [data-testid=user]").all_inner_texts()
            assert [MARKER_RE.findall(u) for u in users] == [[m] for m in markers[mine]]
            transcript = page.locator("#chat-bot").inner_text()
            assert all(m not in transcript for m in markers[theirs])
            # the raw prompt the model got for the second turn holds this page's history only
            page.locator("#chat-raw-prompt-box").get_by_text(t("raw_prompt", "de"), exact=True).first.click()
            raw = page.locator("#chat-raw-prompt textarea").input_value()
            assert markers[mine][0] in raw and all(m not in raw for m in markers[theirs])
    finally:
        for context in contexts:
            context.close()


# ---- a local model busy with someone else -----------------------------------------------------------
def test_waiting_visitor_sees_their_place_in_the_queue(live_app: RunningApp, client: Any, browser: Any) -> None:
    """With one llama.cpp slot (the `live_app` app), whoever waits behind an answer sees the queue message."""
    # 1800 new tokens: with the prompt this still fits the model's 2048-token context
    job = client.submit(message=LONG_PROMPT, model=OFFLINE, max_new_tokens=1800, temperature=0, api_name="/chat")
    context, page = open_chat(browser, live_app.url)
    try:
        wait_for_text(job, 60)
        send(page, "Sag Hallo.")
        queued = t("status_queued", "de", position=1)
        wait_until(lambda: queued in last_answer(page), f"{queued!r} in the chat", 20)
        job.cancel()  # the first visitor leaves: the waiting one gets the model
        stats_start = MESSAGES["stats_line"]["de"].split("{", 1)[0].strip()
        wait_until(lambda: stats_start in last_answer(page), "the waiting visitor's answer", 60)
        assert queued not in last_answer(page)
    finally:
        job.cancel()
        context.close()


# ---- limits through the running app --------------------------------------------------------------
def test_rate_limit_through_the_api(tgi: StandinHolder) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    env = {"TGI_URL": tgi.url, "PLAYGROUND_RATE_LIMIT": "3/min", "PLAYGROUND_TRUSTED_PROXIES": "0"}
    with running_app(env) as app:
        c = Client(app.url, verbose=False)
        for _ in range(3):
            _text, info = chat(c, f"Wiederhole {new_marker()}", max_new_tokens=10)
            assert "error" not in info
        with pytest.raises(AppError) as caught:
            chat(c, "noch eine", lang="en")
        assert "try again in" in str(caught.value) and "3/min" in str(caught.value)
        # a fresh session from the same address is the same visitor: no way around the limit
        with pytest.raises(AppError):
            chat(Client(app.url, verbose=False), "neue Sitzung")
        c.close()


def test_closed_api_refuses_clients_and_keeps_the_page() -> None:
    """PLAYGROUND_API_OPEN=0 semantics on the real page (apply_api_policy), served in-process."""
    import httpx
    from gradio_client import Client

    import app as app_module
    from components.serving.limits import apply_api_policy

    demo = app_module.build_app(app_module.create_playground())
    apply_api_policy(demo, open_api=False)
    demo.queue(default_concurrency_limit=None)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, css=app_module.CSS)
    url = f"http://127.0.0.1:{port}"
    try:
        assert httpx.get(url + "/", timeout=10).status_code == 200
        c = Client(url, verbose=False)
        assert c.view_api(print_info=False, return_format="dict")["named_endpoints"] == {}
        for name in ("/chat", "/models"):
            with pytest.raises(ValueError, match="Cannot find a function"):
                c.predict("Hallo", api_name=name)
        # nor through raw HTTP, queue-skipping or not
        for route in ("/gradio_api/run/models", "/gradio_api/call/chat", "/gradio_api/run/chat"):
            response = httpx.post(url + route, json={"data": ["Hallo"]}, timeout=10)
            assert response.status_code >= 400, route
        assert httpx.get(url + "/gradio_api/info", timeout=10).json()["named_endpoints"] == {}
        c.close()
    finally:
        demo.close()
