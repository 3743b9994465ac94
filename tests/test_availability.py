"""Three availability states (runs now / after a download of N GB / not here, why), the Hub probe, /models, batch."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from components.core import availability
from components.core.service import Playground
from components.engines import hub
from components.features.batch import BatchError, check_models
from components.vocabulary.generation import InputError, Status
from components.vocabulary.messages import t

EM_GGUF = "em-german-leo-mistral/gguf-q4_k_m"


class FakeHub(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in for the Hub's file routes: the root answers, every file is missing (404 with the
    Hub's X-Error-Code header, as huggingface.co sends it for a file that is not in a repository)."""

    #: seconds before a file route answers (a Hub far away)
    delay_s = 0.0

    def _answer(self, body: bool) -> None:
        if self.path != "/" and self.delay_s:
            time.sleep(self.delay_s)
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            if body:
                self.wfile.write(b"ok")
            return
        self.send_response(404)
        self.send_header("X-Error-Code", "EntryNotFound")
        self.send_header("X-Error-Message", "Entry not found")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        self._answer(True)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def fake_hub(delay_s: float = 0.0) -> Iterator[str]:
    handler = type("SlowFakeHub", (FakeHub,), {"delay_s": delay_s})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers (a Hub behind a black hole)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(availability, "cached_file", lambda repo, name: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


# ---- the probe -----------------------------------------------------------------------------------------------
def test_probe_finds_a_reachable_hub() -> None:
    with fake_hub() as url:
        assert availability.probe_hub(url) is True


def test_probe_of_a_refused_connection_is_quick() -> None:
    start = time.monotonic()
    assert availability.probe_hub(closed_port()) is False
    assert time.monotonic() - start < 1.0


def test_probe_gives_up_within_a_second_on_a_silent_server() -> None:
    with silent_server() as url:
        start = time.monotonic()
        assert availability.probe_hub(url, timeout_s=1.0) is False
        assert time.monotonic() - start < 1.5


def test_probe_answer_is_remembered_and_refreshed_in_the_background() -> None:
    calls: list[float] = []

    def slow_probe(endpoint: str) -> bool:
        calls.append(time.monotonic())
        time.sleep(0.3)
        return len(calls) == 1  # reachable first, unreachable at the refresh

    probe = availability.HubProbe(max_age_s=0.2, probe=slow_probe)
    assert probe.reachable() is True
    assert len(calls) == 1
    assert probe.reachable() is True  # fresh: no new probe
    time.sleep(0.3)
    start = time.monotonic()
    assert probe.reachable() is True  # stale: the old answer at once, a refresh starts behind it
    assert time.monotonic() - start < 0.1
    time.sleep(0.5)
    assert len(calls) == 2
    assert probe.reachable() is False


# ---- three states --------------------------------------------------------------------------------------------
def test_three_states(monkeypatch: pytest.MonkeyPatch, catalog: Any, no_cache: None) -> None:
    monkeypatch.setenv("HF_ENDPOINT", closed_port())
    probe = availability.HubProbe()
    ready = availability.check(catalog.default, probe=probe)
    assert ready.ok and ready.state == availability.READY and ready.download_gb is None

    start = time.monotonic()
    em = availability.check(catalog.get(EM_GGUF), budget_gb=20, probe=probe)
    assert time.monotonic() - start < 1.5, "the Hub's reachability must be known within a second"
    assert em.state == availability.DOWNLOAD and not em.ok
    assert em.hub == availability.HUB_UNREACHABLE and em.key == "why_hub_unreachable"
    assert em.download_gb == pytest.approx(4.37)

    gpu = availability.check(catalog.get("em-german-leo-mistral/gptq"), probe=probe)
    assert gpu.state == availability.UNAVAILABLE and gpu.key == "why_needs_gpu"
    big = availability.check(catalog.get("em-german-70b/gguf-q4_k_m"), budget_gb=16, probe=probe)
    assert big.state == availability.UNAVAILABLE and big.key == "why_too_big"

    with fake_hub() as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        online = availability.check(catalog.get(EM_GGUF), budget_gb=20, probe=availability.HubProbe())
    assert online.ok and online.state == availability.DOWNLOAD and online.hub == availability.HUB_REACHABLE
    assert online.key == "needs_download"


def test_sending_to_a_download_without_network_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch, catalog: Any, no_cache: None
) -> None:
    """EM German GGUF on a machine without a network, HF_HUB_OFFLINE unset: a whole message, no 23 s wait."""
    monkeypatch.setenv("HF_ENDPOINT", closed_port())
    monkeypatch.setattr(availability, "default_budget_gb", lambda: 20.0)
    playground = Playground(catalog, hub=availability.HubProbe())
    start = time.monotonic()
    with pytest.raises(InputError) as err:
        playground.prepare(EM_GGUF, "Hallo")
    assert time.monotonic() - start < 2
    assert err.value.key == "err_download_unreachable"
    ref = catalog.get(EM_GGUF)
    de = t(err.value.key, "de", **err.value.params)
    en = t(err.value.key, "en", **err.value.params)
    assert ref.label in de and "4,4 GB" in de and "nicht erreichbar" in de and de.endswith(".")
    assert ref.label in en and "4.4 GB" in en and "cannot be reached" in en and en.endswith(".")


def test_models_endpoint_states(monkeypatch: pytest.MonkeyPatch, catalog: Any, no_cache: None) -> None:
    import gradio as gr

    from components.api.chat_models import register as register_api

    monkeypatch.setenv("HF_ENDPOINT", closed_port())
    monkeypatch.setattr(availability, "default_budget_gb", lambda: 20.0)
    playground = Playground(catalog, hub=availability.HubProbe())
    with gr.Blocks() as demo:
        register_api(playground)
    models_fn = next(f.fn for f in demo.fns.values() if f.api_name == "models")
    rows = {row["id"]: row for row in models_fn(lang="en")}
    assert rows[catalog.default.id]["state"] == "ready" and rows[catalog.default.id]["available"] is True
    em = rows[EM_GGUF]
    assert em["state"] == "download" and em["available"] is False
    assert em["download_gb"] == pytest.approx(4.37) and em["hub"] == "unreachable"
    assert "cannot be reached" in em["why_not"]
    gptq = rows["em-german-7b/gptq"]
    assert gptq["state"] == "unavailable" and gptq["why_not"] == t("why_needs_gpu", "en", kind="GPTQ")


def test_batch_refuses_a_download_it_cannot_make_and_notes_one_it_can(
    monkeypatch: pytest.MonkeyPatch, catalog: Any, no_cache: None
) -> None:
    monkeypatch.setattr(availability, "default_budget_gb", lambda: 20.0)
    monkeypatch.setenv("HF_ENDPOINT", closed_port())
    playground = Playground(catalog, hub=availability.HubProbe())
    with pytest.raises(BatchError) as err:
        check_models(playground, [catalog.default.id, EM_GGUF], {}, "de")
    assert "nicht erreichbar" in str(err.value)
    with fake_hub() as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        playground = Playground(catalog, hub=availability.HubProbe())
        notes = check_models(playground, [catalog.default.id, EM_GGUF], {}, "en")
    assert notes == [f"{EM_GGUF}: {t('needs_download', 'en', size=4.4)}"]


# ---- the download itself ---------------------------------------------------------------------------------------
async def test_stream_shows_the_download_from_the_first_moment(
    monkeypatch: pytest.MonkeyPatch, catalog: Any, no_cache: None
) -> None:
    """The first event of a build that needs a download says so, before the Hub has answered anything; a file the
    Hub does not have ends in our own message, never huggingface_hub's English."""
    import huggingface_hub.constants

    monkeypatch.setattr(availability, "default_budget_gb", lambda: 20.0)
    monkeypatch.setattr(hub, "cached_file", lambda repo, name: None)
    with fake_hub() as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", url)
        monkeypatch.setattr(
            huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        playground = Playground(catalog, hub=availability.HubProbe())
        prepared = playground.prepare(EM_GGUF, "Hallo")
        events = []
        start = time.monotonic()
        first_at = None
        async for event in playground.stream(prepared):
            if first_at is None:
                first_at = time.monotonic() - start
            events.append(event)
    assert isinstance(events[0], Status) and events[0].key == "status_download_starting"
    assert first_at is not None and first_at < 0.5
    assert events[-1].key == "err_download_no_file", events[-1]
    text = t(events[-1].key, "de", **events[-1].params)
    assert "em_german_leo_mistral.Q4_K_M.gguf" in text and "Entry" not in text


def test_download_errors_are_our_messages() -> None:
    import errno

    import httpx2
    from huggingface_hub import errors

    def response(status: int) -> Any:
        return httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/x"))

    cases = [
        (errors.LocalEntryNotFoundError("…make sure your Internet connection"), "err_download_network"),
        (errors.OfflineModeIsEnabled("offline"), "err_download_offline_mode"),
        (errors.GatedRepoError("gated", response=response(401)), "err_download_gated"),
        (errors.RepositoryNotFoundError("404", response=response(404)), "err_download_no_repo"),
        (errors.RemoteEntryNotFoundError("404", response=response(404)), "err_download_no_file"),
        (OSError(errno.ENOSPC, "No space left on device"), "err_download_disk"),
    ]
    for exc, key in cases:
        got = hub.download_error(exc, "org/m", "m.gguf")
        assert got.key == key, (exc, got.key)
        for lang in ("de", "en"):
            assert "{" not in t(got.key, lang, **got.params)
    server = hub.download_error(errors.HfHubHTTPError("Server Error", response=response(500)), "org/m", "m.gguf")
    assert server.key == "err_download" and server.params["detail"] == "HTTP 500"


def test_hub_probe_runs_off_the_event_loop_thread_in_time() -> None:
    """Even a probe that hangs in the name lookup gives up in time (the lookup runs in its own thread)."""

    async def main() -> float:
        start = time.monotonic()
        with silent_server() as url:
            await asyncio.to_thread(availability.probe_hub, url, 0.5)
        return time.monotonic() - start

    assert asyncio.run(main()) < 1.2


# ---- remote builds: does their server answer? ----------------------------------------------------------------
def test_server_probe_sends_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe asks whether something answers; it never carries the endpoint's key or the Hub token."""
    seen: list[dict[str, str]] = []

    class Recorder(FakeHub):
        def do_HEAD(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(401)  # a server that wants a key still answers
            self.send_header("Content-Length", "0")
            self.end_headers()

    monkeypatch.setenv("TGI_TOKEN", "hf_secret_endpoint_key")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_hub_token")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert availability.probe_server(f"http://127.0.0.1:{server.server_address[1]}/v1") is True
    finally:
        server.shutdown()
        server.server_close()
    assert len(seen) == 1 and "authorization" not in seen[0]
    assert not any("secret" in value for value in seen[0].values())


def test_server_probe_of_a_failing_proxy_says_no() -> None:
    class BadGateway(FakeHub):
        def do_HEAD(self) -> None:
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BadGateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert availability.probe_server(f"http://127.0.0.1:{server.server_address[1]}") is False
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("url", ["http://", "not a url", "http://127.0.0.1:notaport", "http://[::1"])
def test_server_probe_of_a_broken_url_says_no(url: str) -> None:
    assert availability.probe_server(url) is False


def test_server_probe_of_a_closed_port_and_a_silent_server_is_quick() -> None:
    start = time.monotonic()
    assert availability.probe_server(closed_port()) is False
    assert time.monotonic() - start < 1.0
    with silent_server() as url:
        start = time.monotonic()
        assert availability.probe_server(url) is False
        assert time.monotonic() - start < 1.5


def test_server_answers_are_remembered_per_url() -> None:
    calls: list[str] = []

    def probe(url: str) -> bool:
        calls.append(url)
        return "up" in url

    servers = availability.ServerProbes(max_age_s=60, probe=probe)
    assert servers.answers("http://up:1") is True and servers.answers("http://down:1") is False
    assert servers.answers("http://up:1") is True and servers.answers("http://down:1") is False
    assert calls == ["http://up:1", "http://down:1"]


@pytest.fixture
def remote_catalog(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from components.serving.endpoints import register_env_endpoints
    from components.vocabulary.catalog import load_catalog
    from tests.tgi_standin import StandinServer

    # two servers of EM German LeoLM Mistral, one through TGI_URL, one through OPENAI_BASE_URL; the second stops
    # after it was bound: its build stays and says that its server does not answer
    with StandinServer() as up, StandinServer() as down:
        for name in ("TGI_TOKEN", "OPENAI_API_KEY", "OPENAI_MODEL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("TGI_URL", up.url)
        monkeypatch.setenv("OPENAI_BASE_URL", down.url + "/v1")
        catalog = load_catalog()
        assert register_env_endpoints(catalog) == ["tgi", "openai"]
        down.stop()
        yield catalog


@pytest.mark.parametrize("lang", ["de", "en"])
def test_a_remote_build_says_whether_its_server_answers(remote_catalog: Any, lang: str) -> None:
    """A configured server that is down is not "✓ runs here": the picker says it is not answering, the model
    line why and which variable holds its address; Send stays (the server may be back by then)."""
    from components.ui.common import availability_line, quant_label, sendable

    playground = Playground(remote_catalog, servers=availability.ServerProbes())
    up, down = remote_catalog.get("em-german-leo-mistral/tgi"), remote_catalog.get("em-german-leo-mistral/openai")
    answers, silent = playground.availability(up), playground.availability(down)
    assert answers.ok and answers.server == availability.SERVER_ANSWERS
    assert silent.ok and silent.state == availability.READY and silent.server == availability.SERVER_SILENT
    assert quant_label(playground, up, lang) == t("quant_remote_ready", lang, quant=up.quant.display)
    assert quant_label(playground, down, lang) == t("quant_remote_silent", lang, quant=down.quant.display)
    assert t("quant_ready", lang, quant=down.quant.display) != quant_label(playground, down, lang)
    line = availability_line(playground, down, lang)
    assert "OPENAI_BASE_URL" in line and "OpenAI API" in line and line.startswith("⚠")
    assert "127.0.0.1" not in line, "the address stays on the server"
    assert "TGI" in availability_line(playground, up, lang)
    assert sendable(playground, down) and sendable(playground, up)


def test_models_endpoint_says_whether_a_server_answers(remote_catalog: Any) -> None:
    import gradio as gr

    from components.api.chat_models import register as register_api

    playground = Playground(remote_catalog, servers=availability.ServerProbes())
    with gr.Blocks() as demo:
        register_api(playground)
    models_fn = next(f.fn for f in demo.fns.values() if f.api_name == "models")
    rows = {row["id"]: row for row in models_fn(lang="en")}
    up, down = rows["em-german-leo-mistral/tgi"], rows["em-german-leo-mistral/openai"]
    assert (up["server"], up["server_note"], up["available"]) == ("answers", None, True)
    assert down["server"] == "silent" and down["available"] is True and "OPENAI_BASE_URL" in down["server_note"]
    assert rows[remote_catalog.default.id]["server"] is None


def test_compare_defaults_skip_a_server_that_does_not_answer(remote_catalog: Any) -> None:
    from components.ui.common import runnable_refs

    ids = [ref.id for ref in runnable_refs(Playground(remote_catalog, servers=availability.ServerProbes()))]
    assert ids[0] == remote_catalog.default.id
    assert "em-german-leo-mistral/tgi" in ids and not any(i.endswith("/openai") for i in ids)


def test_a_build_whose_endpoint_has_no_url_is_unavailable(tmp_path: Any) -> None:
    """Found in review: the playground answered such a build with state "ready" (and available false) in /models,
    beside availability.check()'s own "unavailable" for the same case; now one place says it."""
    import yaml

    from components.ui.common import quant_label, sendable
    from components.vocabulary.catalog import DEFAULT_CATALOG, load_catalog

    raw = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    raw["endpoints"] = [{"id": "lab", "type": "openai", "url_env": "LAB_URL_NOT_SET", "label": "Labor"}]
    igel = next(f for f in raw["families"] if f["id"] == "igel")
    igel["variants"][0]["quantizations"].append({"id": "lab", "kind": "remote", "endpoint": "lab", "label": "Labor"})
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    catalog = load_catalog(path)
    playground = Playground(catalog, servers=availability.ServerProbes(probe=lambda url: pytest.fail("probed")))
    ref = catalog.get("instruct-igel-001/lab")
    avail = playground.availability(ref)
    assert (avail.ok, avail.state, avail.server) == (False, availability.UNAVAILABLE, None)
    assert avail.key == "why_no_endpoint"
    assert avail.params["env"] == "LAB_URL_NOT_SET"
    assert not sendable(playground, ref) and "✗" in quant_label(playground, ref, "de")
