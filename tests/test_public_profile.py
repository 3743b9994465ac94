"""The public-Space profile (components/serving/launch.py, components/serving/limits.py), replaying hostile probes.

Fast tests check the pieces (who counts as a visitor, the caps, the ASGI middleware, the temporary folder,
the session store); slow ones run the real app (`python app.py`) against the TGI stand-in, a recording
stand-in for the Hugging Face Hub (HF_ENDPOINT) and, for the images, Debian's chromium.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from components.serving import launch as serving
from components.serving import limits
from components.serving.limits import VisitorSlots, visitor_key
from components.vocabulary.messages import MESSAGES
from components.vocabulary.settings import SETTING_NAMES
from tests.app_server import RunningApp, free_port, running_app
from tests.browser import browser_fixture

TGI_MODEL = "em-german-leo-mistral/tgi"
CANARY_TOKEN = "hf_CanaryOperatorToken0123456789abcdef"
CHAT_PARAMS = ["message", "model", "system_prompt", "history", *SETTING_NAMES, "lang"]  # /chat's order

PROFILE_VARS = (
    "SPACE_ID",
    "PLAYGROUND_PUBLIC",
    "PLAYGROUND_RATE_LIMIT",
    "PLAYGROUND_VISITOR_CONCURRENCY",
    "PLAYGROUND_TRUSTED_PROXIES",
    "PLAYGROUND_TRUSTED_PROXY_IPS",
    "PLAYGROUND_RUN_HISTORY",
    "PLAYGROUND_MAX_SESSIONS",
    "PLAYGROUND_SECURITY_HEADERS",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROFILE_VARS:
        monkeypatch.delenv(name, raising=False)
    limits.reset_rate_limiter()
    yield monkeypatch
    limits.reset_rate_limiter()


def request(host: str, xff: str | None = None, session: str = "s1") -> Any:
    headers = {"x-forwarded-for": xff} if xff else {}
    return SimpleNamespace(headers=headers, client=SimpleNamespace(host=host), session_hash=session)


# ---- the profile's switches -------------------------------------------------------------------------
def test_public_profile_is_on_on_a_space_and_turns_on_the_limits(clean_env: pytest.MonkeyPatch) -> None:
    assert not limits.public_profile()
    assert limits.rate_setting() is None and limits.visitor_concurrency() is None
    clean_env.setenv("SPACE_ID", "someone/german-llm-playground")
    assert limits.public_profile()
    assert limits.rate_setting() == "20/min" and limits.visitor_concurrency() == 2
    assert limits.rate_limiter().enabled
    policy = serving.serving_policy()
    assert policy.public and not policy.run_history and policy.max_sessions == 2000
    clean_env.setenv("PLAYGROUND_PUBLIC", "0")
    assert not limits.public_profile()
    clean_env.delenv("SPACE_ID")
    clean_env.setenv("PLAYGROUND_PUBLIC", "1")
    clean_env.setenv("PLAYGROUND_RATE_LIMIT", "off")
    assert limits.public_profile() and limits.rate_setting() == "off"
    assert limits.parse_rate(limits.rate_setting()) is None  # an explicit "off" wins


def test_run_history_stays_off_in_public_even_when_asked_for(clean_env: pytest.MonkeyPatch) -> None:
    assert not serving.serving_policy().run_history
    clean_env.setenv("PLAYGROUND_RUN_HISTORY", "1")
    assert serving.serving_policy().run_history
    clean_env.setenv("PLAYGROUND_PUBLIC", "1")
    assert not serving.serving_policy().run_history


# ---- who is a visitor ------------------------------------------------------------------------------
def test_forwarded_for_from_an_untrusted_peer_does_not_make_a_new_visitor(clean_env: pytest.MonkeyPatch) -> None:
    # a loopback client that writes a new X-Forwarded-For into each request stays one visitor
    clean_env.setenv("PLAYGROUND_TRUSTED_PROXIES", "1")
    keys = {visitor_key(request("127.0.0.1", f"203.0.113.{i}")) for i in range(10)}
    assert keys == {"ip:127.0.0.1"}


def test_forwarded_for_from_a_configured_proxy_counts(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PLAYGROUND_TRUSTED_PROXIES", "1")
    clean_env.setenv("PLAYGROUND_TRUSTED_PROXY_IPS", "127.0.0.1, 10.0.0.0/8")
    assert visitor_key(request("127.0.0.1", "forged, 203.0.113.7")) == "ip:203.0.113.7"
    assert visitor_key(request("10.1.2.3", "203.0.113.8")) == "ip:203.0.113.8"
    # any other peer is keyed by its own address, whatever it writes
    assert visitor_key(request("198.51.100.9", "203.0.113.9")) == "ip:198.51.100.9"


def test_on_a_space_the_platform_header_counts(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SPACE_ID", "someone/space")
    # the Space's proxy has an internal address; the visitor's is the last entry it appended
    assert visitor_key(request("10.16.3.80", "forged, 198.51.100.20")) == "ip:198.51.100.20"
    assert visitor_key(request("10.16.3.80")) == "session:s1"  # no header: never the proxy's shared address


def test_a_malformed_proxy_list_stops_the_start(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PLAYGROUND_TRUSTED_PROXY_IPS", "127.0.0.1, proxy.example")
    with pytest.raises(limits.RateLimitError, match=r"proxy\.example"):
        limits.apply_api_policy(SimpleNamespace(fns={}), open_api=True)


def test_visitor_slots() -> None:
    slots = VisitorSlots(2)
    assert slots.acquire("a") and slots.acquire("a")
    assert not slots.acquire("a")
    assert slots.acquire("b")
    slots.release("a")
    assert slots.acquire("a")
    for _ in range(2):
        slots.release("a")
    slots.release("b")
    assert len(slots) == 0
    unlimited = VisitorSlots(None)
    assert all(unlimited.acquire("a") for _ in range(100))


def test_the_cap_wraps_streaming_events_and_keeps_their_signature() -> None:
    import gradio as gr

    async def stream(text: str, lang: str, request: Any = None) -> Any:
        yield text

    def plain(text: str) -> str:
        return text

    with gr.Blocks() as demo:
        box, lang, out = gr.Textbox(), gr.State("en"), gr.Textbox()
        box.submit(stream, [box, lang], [out])
        box.change(plain, [box], [out])
    slots = VisitorSlots(1)
    assert serving.cap_visitor_generators(demo, slots) == ["stream"]
    capped = next(f.fn for f in demo.fns.values() if f.name == "stream")
    import inspect

    assert inspect.isasyncgenfunction(capped)
    assert list(inspect.signature(capped).parameters) == ["text", "lang", "request"]

    async def run() -> None:
        first = capped("one", "en", SimpleNamespace())  # no gr.Request: keyed "anonymous"
        assert await first.__anext__() == "one"
        second = capped("two", "en", SimpleNamespace())
        with pytest.raises(gr.Error, match="already have 1 answers running"):
            await second.__anext__()
        await first.aclose()  # a closed stream gives its slot back
        third = capped("three", "de", SimpleNamespace())
        assert await third.__anext__() == "three"
        await third.aclose()

    asyncio.run(run())
    assert len(slots) == 0


# ---- headers and guarded routes ---------------------------------------------------------------------
def asgi_call(
    middleware: serving.ServingMiddleware, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict[str, str]]:
    """(status, response headers, request headers the app saw) for one GET through the middleware."""
    seen: dict[str, str] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update({k.decode(): v.decode() for k, v in scope["headers"]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware.app = app
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {
        "type": "http",
        "path": path,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    asyncio.run(middleware(scope, receive, send))
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, seen


def policy(**changes: Any) -> serving.ServingPolicy:
    base = serving.ServingPolicy(
        public=False,
        run_history=False,
        max_sessions=100,
        session_idle_s=60,
        closed_session_grace_s=60,
        file_max_age_s=3600,
        security_headers=True,
        frame_ancestors=serving.DEFAULT_FRAME_ANCESTORS,
        visitor_concurrency=None,
    )
    return serving.ServingPolicy(**{**base.__dict__, **changes})


def test_every_response_carries_the_security_headers() -> None:
    status, headers, _ = asgi_call(serving.ServingMiddleware(None, policy()), "/")
    assert status == 200
    csp = headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    # images (Markdown or HTML in an answer) only from the page's own origin
    assert directives["img-src"] == "'self' data: blob:"
    assert directives["connect-src"] == "'self'"
    assert "https://huggingface.co" in directives["frame-ancestors"] and "*" not in directives["img-src"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    _, bare, _ = asgi_call(serving.ServingMiddleware(None, policy(security_headers=False)), "/")
    assert "content-security-policy" not in bare


def test_run_history_routes_and_the_bucket_header_are_refused() -> None:
    off = serving.ServingMiddleware(None, policy())
    for path in ("/gradio_api/run-history/buckets", "/gradio_api/run-history/connect", "/gradio_api/runs"):
        assert asgi_call(off, path)[0] == 404, path
    _, _, seen = asgi_call(off, "/gradio_api/queue/join", {"X-Gradio-History-Bucket": "visitor/bucket"})
    assert "x-gradio-history-bucket" not in seen
    # a local operator who opts in keeps them for this host's own browser, never for a proxied request
    on = serving.ServingMiddleware(None, policy(run_history=True))
    assert asgi_call(on, "/gradio_api/run-history/buckets")[0] == 200
    assert asgi_call(on, "/gradio_api/run-history/buckets", {"X-Forwarded-For": "203.0.113.1"})[0] == 404
    _, _, kept = asgi_call(on, "/gradio_api/queue/join", {"X-Gradio-History-Bucket": "me/runs"})
    assert kept["x-gradio-history-bucket"] == "me/runs"
    _, _, dropped = asgi_call(
        on, "/gradio_api/queue/join", {"X-Gradio-History-Bucket": "me/runs", "X-Forwarded-For": "203.0.113.1"}
    )
    assert "x-gradio-history-bucket" not in dropped


def test_deep_links_are_off_in_public() -> None:
    assert asgi_call(serving.ServingMiddleware(None, policy(public=True)), "/gradio_api/deep_link")[0] == 404
    assert asgi_call(serving.ServingMiddleware(None, policy()), "/gradio_api/deep_link")[0] == 200


# ---- temporary files ---------------------------------------------------------------------------------
HOLDER = """
import fcntl, sys, time
from pathlib import Path
d = Path(sys.argv[1]); d.mkdir(); (d / "upload.txt").write_text("secret")
lock = open(d / ".lock", "a+"); fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("ready", flush=True); time.sleep(60)
"""


def test_folders_of_dead_runs_are_removed_and_living_ones_kept(tmp_path: Path) -> None:
    living = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run-living")], stdout=subprocess.PIPE)
    dead = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run-dead")], stdout=subprocess.PIPE)
    try:
        assert living.stdout.readline().strip() == b"ready" and dead.stdout.readline().strip() == b"ready"
        dead.send_signal(signal.SIGKILL)
        dead.wait(10)
        removed = serving.remove_stale_runtime_dirs(tmp_path)
        assert removed == [tmp_path / "run-dead"]
        assert not (tmp_path / "run-dead").exists() and (tmp_path / "run-living" / "upload.txt").exists()
    finally:
        living.kill()
        living.wait(10)


# ---- session state --------------------------------------------------------------------------------
def test_a_new_session_keeps_a_few_kb_instead_of_a_copy_of_every_config(
    demo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradio import state_holder

    monkeypatch.setattr(state_holder, "SessionState", state_holder.SessionState)  # restored afterwards
    assert serving.install_lean_sessions()
    holder = state_holder.StateHolder()
    holder.set_blocks(demo)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            holder[f"session-{i}"]
        per_session = (tracemalloc.get_traced_memory()[0] - before) / 200
    finally:
        tracemalloc.stop()
    # Gradio's own: 425 KB per session (the config of each of the page's ~300 blocks)
    assert per_session < 40_000, f"{per_session / 1024:.0f} KB per session"
    # what the page's events need is still there: component values and gr.State values per session
    state = holder["session-0"]
    chatbot = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "chat-bot")
    assert state[chatbot._id] is chatbot
    conversation = next(b for b in demo.blocks.values() if type(b).__name__ == "State")
    state[conversation._id] = ["mine"]
    assert holder["session-0"][conversation._id] == ["mine"]
    assert holder["session-1"][conversation._id] != ["mine"]


def test_idle_and_closed_sessions_are_freed_busy_ones_kept() -> None:
    import datetime

    from gradio.state_holder import StateHolder

    holder = StateHolder()
    holder.blocks = SimpleNamespace()
    now = datetime.datetime.now()
    old = now - datetime.timedelta(seconds=120)
    for name, used, closed in (
        ("idle", old, False),
        ("fresh", now, False),
        ("closed", old, True),
        ("busy", old, False),
    ):
        holder.session_data[name] = SimpleNamespace(is_closed=closed)
        holder.time_last_used[name] = used
    holder.session_data["recent-closed"] = SimpleNamespace(is_closed=True)
    holder.time_last_used["recent-closed"] = now - datetime.timedelta(seconds=30)
    queue = SimpleNamespace(event_ids_to_events={"e1": SimpleNamespace(session_hash="busy")})
    app = SimpleNamespace(state_holder=holder, get_blocks=lambda: SimpleNamespace(_queue=queue))
    freed = serving.sweep_sessions(app, idle_s=60, closed_grace_s=20, now=now.timestamp())
    assert freed == 3
    assert set(holder.session_data) == {"fresh", "busy"}
    assert set(holder.time_last_used) == {"fresh", "busy"}


# ---- the real app -------------------------------------------------------------------------------------
class Recorder:
    """A loopback HTTP server that records every request (method, path, Authorization) and answers 200 `{}`.

    Stands in for the Hugging Face Hub (HF_ENDPOINT) and for a third-party image host.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                recorder.requests.append((self.command, self.path, self.headers.get("authorization") or ""))
                body = b"{}"
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_HEAD = _answer

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hub() -> Iterator[Recorder]:
    with Recorder() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def public_app(tgi_server: Any, hub: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    env = {
        "TGI_URL": tgi_server.url,
        "PLAYGROUND_PUBLIC": "1",
        "PLAYGROUND_RATE_LIMIT": "1000/min",
        "PLAYGROUND_TEMP_DIR": str(tmp_path_factory.mktemp("runtime")),
        "HF_TOKEN": CANARY_TOKEN,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
    }
    with running_app(env) as app:
        yield app


def call_chat(url: str, message: str, headers: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """/chat over Gradio's REST route (POST, then the event's SSE): {"ok": (text, info)} or {"error": message}."""
    values = {"message": message, "model": TGI_MODEL, "max_new_tokens": 3, "lang": "en", **kwargs}
    data = [values.get(name) for name in CHAT_PARAMS]
    with httpx.Client(timeout=60, headers=headers or {}) as http:
        join = http.post(url + "/gradio_api/call/chat", json={"data": data})
        join.raise_for_status()
        event_id = join.json()["event_id"]
        kind = None
        with http.stream("GET", f"{url}/gradio_api/call/chat/{event_id}") as response:
            for line in response.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    payload = json.loads(line[5:].strip() or "null")
                    if kind == "error":
                        return {"error": payload if isinstance(payload, str) else json.dumps(payload)}
                    return {"ok": payload}
    raise AssertionError("the event ended without complete or error")


def message_pattern(key: str, lang: str = "en") -> str:
    return re.escape(MESSAGES[key][lang].split("{", 1)[0])


@pytest.mark.slow
def test_the_public_app_sends_the_security_headers(public_app: RunningApp) -> None:
    page = httpx.get(public_app.url + "/", timeout=30)
    assert page.status_code == 200
    assert "img-src 'self' data: blob:" in page.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://huggingface.co https://*.hf.space" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(public_app.url + "/gradio_api/info", timeout=30).headers["referrer-policy"]


@pytest.mark.slow
def test_run_history_never_acts_on_the_hub_with_the_operators_token(public_app: RunningApp, hub: Recorder) -> None:
    # peer and Host are loopback: to Gradio these requests look local, as behind a same-host proxy
    before = len(hub.requests)
    url = public_app.url
    assert httpx.get(url + "/gradio_api/run-history/buckets", timeout=30).status_code == 404
    connect = httpx.post(url + "/gradio_api/run-history/connect", json={"bucket_id": "visitor/loot"}, timeout=30)
    assert connect.status_code == 404
    assert httpx.get(url + "/gradio_api/run-history/records", timeout=30).status_code == 404
    answer = call_chat(url, "Hallo", headers={"x-gradio-history-bucket": "visitor/loot"})
    assert "ok" in answer, answer
    time.sleep(2.0)  # Gradio writes run history from a background task
    calls = hub.requests[before:]
    assert calls == [], f"the app called the Hub: {calls}"
    assert CANARY_TOKEN not in public_app.log()


@pytest.mark.slow
def test_a_visitor_runs_at_most_two_answers_at_once(public_app: RunningApp, tgi_server: Any) -> None:
    from gradio_client import Client

    standin = tgi_server.standin
    standin.reset(tokens_per_s=20.0, endless=True)
    clients = [Client(public_app.url, verbose=False) for _ in range(2)]
    try:
        jobs = [c.submit(message="Erzähl", model=TGI_MODEL, max_new_tokens=40, api_name="/chat") for c in clients]
        deadline = time.monotonic() + 30
        while standin.active < 2:
            assert time.monotonic() < deadline, "the two answers did not start"
            time.sleep(0.05)
        third = call_chat(public_app.url, "noch eine", max_new_tokens=3)
        assert "error" in third and re.search(message_pattern("err_visitor_busy"), third["error"]), third
        german = call_chat(public_app.url, "noch eine", max_new_tokens=3, lang="de")
        assert re.search(message_pattern("err_visitor_busy", "de"), german.get("error", "")), german
        for job in jobs:
            _text, info = job.result(timeout=60)
            assert "error" not in info, info
    finally:
        for c in clients:
            c.close()
        standin.reset()
    assert "ok" in call_chat(public_app.url, "jetzt wieder")  # the slots came back


@pytest.mark.slow
def test_page_events_without_arguments_log_no_traceback(public_app: RunningApp) -> None:
    config = httpx.get(public_app.url + "/config", timeout=30).json()
    picker_events = [d for d in config["dependencies"] if str(d.get("api_name") or "").startswith("on_family")]
    assert picker_events, "no /on_family event on the page"
    mark = len(public_app.log())
    for dep in config["dependencies"]:
        if dep.get("queue") is not False:
            continue
        body = {"fn_index": dep["id"], "data": [None] * len(dep.get("inputs", [])), "session_hash": uuid.uuid4().hex}
        response = httpx.post(public_app.url + "/gradio_api/run/predict", json=body, timeout=30)
        assert response.status_code < 500 or dep["id"] not in {d["id"] for d in picker_events}, dep.get("api_name")
    time.sleep(0.5)
    fresh = public_app.log()[mark:]
    assert "KeyError" not in fresh and "IndexError" not in fresh
    # no traceback through the app's own code, printed raw or inside a JSON record's `exc`
    assert str(Path(__file__).resolve().parent.parent / "components") not in fresh, fresh[-3000:]


@pytest.mark.slow
def test_a_forged_forwarded_for_does_not_get_around_the_default_public_rate_limit(tgi_server: Any) -> None:
    env = {"TGI_URL": tgi_server.url, "PLAYGROUND_PUBLIC": "1", "PLAYGROUND_VISITOR_CONCURRENCY": "0"}
    with running_app(env) as app:
        for i in range(20):  # the public default: 20 answers per minute
            answer = call_chat(app.url, "Hallo", headers={"X-Forwarded-For": f"203.0.113.{i}"}, max_new_tokens=1)
            assert "ok" in answer, (i, answer)
        refused = call_chat(app.url, "Hallo", headers={"X-Forwarded-For": "198.51.100.77"}, max_new_tokens=1)
        assert re.search(message_pattern("err_rate_limited"), refused.get("error", "")), refused
        assert "20/min" in refused["error"]


def upload(url: str, name: str, text: str) -> str:
    response = httpx.post(url + "/gradio_api/upload", files={"files": (name, text.encode(), "text/plain")}, timeout=30)
    response.raise_for_status()
    return response.json()[0]


@pytest.mark.slow
def test_uploads_do_not_outlive_the_app(tgi_server: Any, tmp_path: Path) -> None:
    env = {"TGI_URL": tgi_server.url, "PLAYGROUND_TEMP_DIR": str(tmp_path)}
    with running_app(env) as app:
        stopped = upload(app.url, "quelle.txt", "erste Sitzung")
        served = httpx.get(f"{app.url}/gradio_api/file={stopped}", timeout=30)
        assert served.status_code == 200 and served.text == "erste Sitzung"
        assert Path(stopped).is_relative_to(tmp_path)
    assert not Path(stopped).exists(), "an upload outlived a normal stop (SIGTERM)"
    with running_app(env) as app:
        killed = upload(app.url, "quelle.txt", "zweite Sitzung")
        app.process.send_signal(signal.SIGKILL)
        app.process.wait(15)
    assert Path(killed).exists()  # a hard kill leaves it behind: the next start removes it
    with running_app(env) as app:
        assert not Path(killed).exists(), "an upload of a killed run outlived the restart"
        assert httpx.get(f"{app.url}/gradio_api/file={killed}", timeout=30).status_code in (403, 404)
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []


@pytest.mark.slow
def test_sessions_stay_bounded_in_the_running_app(tgi_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many API callers, each with a new session: the store keeps at most PLAYGROUND_MAX_SESSIONS, a few KB each."""
    from gradio import state_holder

    import app as app_module

    monkeypatch.setenv("TGI_URL", tgi_server.url)
    monkeypatch.setenv("PLAYGROUND_MAX_SESSIONS", "40")
    monkeypatch.setattr(state_holder, "SessionState", state_holder.SessionState)
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")  # configure() changes it; restored afterwards
    tgi_server.standin.reset()
    demo = app_module.build_app(app_module.create_playground())
    extra = serving.configure(demo)
    demo.queue(default_concurrency_limit=None)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, css=app_module.CSS, **extra)
    url = f"http://127.0.0.1:{port}"
    try:
        fn_index = next(
            d["id"]
            for d in httpx.get(url + "/config", timeout=30).json()["dependencies"]
            if d.get("api_name") == "chat"
        )

        async def one(http: httpx.AsyncClient, session: str) -> None:
            given = {"message": "Hallo", "model": TGI_MODEL, "max_new_tokens": 1, "lang": "de"}
            data = [given.get(name) for name in CHAT_PARAMS]
            join = await http.post(
                url + "/gradio_api/queue/join",
                json={"data": data, "fn_index": fn_index, "session_hash": session, "trigger_id": None},
            )
            join.raise_for_status()
            async with http.stream("GET", url + "/gradio_api/queue/data", params={"session_hash": session}) as sse:
                async for line in sse.aiter_lines():
                    if '"process_completed"' in line:
                        assert '"success":true' in line.replace(" ", ""), line
                        return

        async def many(count: int) -> None:
            async with httpx.AsyncClient(timeout=60) as http:
                for start in range(0, count, 10):
                    await asyncio.gather(*(one(http, uuid.uuid4().hex) for _ in range(start, min(count, start + 10))))

        asyncio.run(many(120))
        holder = demo.app.state_holder
        assert 0 < len(holder.session_data) <= 40
        assert all(getattr(s, "_playground_lean", False) for s in holder.session_data.values())
        kept = len(holder.session_data)
        assert serving.sweep_sessions(demo.app, idle_s=0, closed_grace_s=0) == kept
        assert len(holder.session_data) == 0
    finally:
        demo.close()


# ---- images in answers: only from the page's own origin (real browser) ---------------------------------
browser = browser_fixture()


@pytest.mark.slow
def test_an_answer_cannot_load_images_from_elsewhere(public_app: RunningApp, tgi_server: Any, browser: Any) -> None:
    with Recorder() as images:
        tgi_server.standin.reset(
            reply=f'Hier: ![a]({images.url}/markdown.png) und <img src="{images.url}/html.png"> fertig.'
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="de-DE")
        blocked: list[str] = []
        try:
            page = context.new_page()
            page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
            page.set_default_timeout(30_000)
            page.goto(public_app.url)
            page.locator("#chat-input textarea").wait_for()
            page.locator("#chat-family input").click()
            page.locator("#chat-family [role=option]", has_text="EM German").first.click()
            page.locator("#chat-quant input").click()
            page.locator("#chat-quant [role=option]", has_text="TGI").first.click()
            box = page.locator("#chat-input textarea")
            box.fill("Zeig mir ein Bild.")
            box.press("Enter")
            answer = page.locator("#chat-bot [data-testid=bot]").last
            deadline = time.monotonic() + 30
            while "fertig" not in (answer.inner_text() if answer.count() else ""):
                assert time.monotonic() < deadline, "the answer did not arrive"
                time.sleep(0.1)
            time.sleep(1.5)  # time enough for an image request to go out
            assert page.locator("#chat-bot img").count() >= 1, "the answer's image was not rendered at all"
        finally:
            context.close()
            tgi_server.standin.reset()
        assert images.requests == [], f"an answer loaded images from elsewhere: {images.requests}"
        assert blocked, "the browser reported no blocked image"


# ---- many visitors: pacing adapts to the load -------------------------------------------------------
def test_the_pace_slows_with_many_streams_and_never_past_the_ceiling() -> None:
    from components.core.streaming import STREAMS_PER_STEP, paced_interval

    assert paced_interval(0.05, 1, 0.25) == 0.05
    assert paced_interval(0.05, STREAMS_PER_STEP, 0.25) == 0.05
    assert paced_interval(0.05, 2 * STREAMS_PER_STEP, 0.25) == pytest.approx(0.1)
    assert paced_interval(0.05, 256, 0.25) == 0.25
    assert paced_interval(0.05, 256, 0.0) == 0.05  # a ceiling at or below the base switches adapting off


def test_many_streams_get_fewer_updates_and_their_end_is_not_held_back() -> None:
    """Runs on its own thread's event loop: an in-process Gradio launch earlier in this file leaves the main
    thread's loop state behind, which pytest-asyncio's runner then trips over."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _many_streams()).result(timeout=120)


async def _many_streams() -> None:
    from components.core.streaming import active_streams, batched

    async def consume() -> tuple[int, float]:
        produced: list[float] = []

        async def tokens() -> Any:
            for i in range(40):
                await asyncio.sleep(0.01)
                produced.append(time.monotonic())
                yield i

        updates = 0
        delay = 0.0
        async for batch in batched(tokens(), min_interval_s=0.02):
            updates += 1
            if 39 in batch:
                delay = time.monotonic() - produced[-1]
        return updates, delay

    alone, _ = await consume()
    results = await asyncio.gather(*(consume() for _ in range(64)))
    crowded = statistics.median(u for u, _ in results)
    assert crowded < alone / 2, (alone, crowded)  # 64 streams: far fewer updates each
    # a stream's last token goes out when it comes, not after the (longer) pause under load: 0.16 s here
    assert statistics.median(d for _, d in results) < 0.06, sorted(d for _, d in results)
    assert active_streams() == 0
