"""Whether a build runs here: now, after a download of N GB (and whether the Hub can be reached), or not (why);
for a remote build, whether its server answers."""

from __future__ import annotations

import concurrent.futures
import functools
import importlib.util
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.engines import disk
from components.engines.hub import cached_file, hub_offline
from components.engines.kinds import ENGINE_KINDS
from components.engines.model_cache import default_budget_gb
from components.engines.remote import endpoint_name
from components.vocabulary.catalog import Endpoint, ModelRef, QuantKind, remote_code_allowed

GPU_KINDS = {QuantKind.fp16, QuantKind.bf16, QuantKind.int8, QuantKind.int4, QuantKind.gptq, QuantKind.awq}
KIND_NAMES = {
    QuantKind.fp16: "fp16",
    QuantKind.bf16: "bf16",
    QuantKind.int8: "8-bit",
    QuantKind.int4: "4-bit",
    QuantKind.gptq: "GPTQ",
    QuantKind.awq: "AWQ",
    QuantKind.fp32: "fp32",
}

#: The three states a build can be in, everywhere (page, /models, batch).
READY = "ready"
DOWNLOAD = "download"
UNAVAILABLE = "unavailable"

#: Whether the Hub can be reached, for builds that need a download.
HUB_REACHABLE = "reachable"
HUB_UNREACHABLE = "unreachable"
HUB_OFFLINE = "offline"  # HF_HUB_OFFLINE=1

#: The Hub probe gives up after this long (name lookup included): "found out within a second".
PROBE_TIMEOUT_S = 1.0
#: A probe's answer is used this long; after that the next look starts a new probe in the background.
PROBE_MAX_AGE_S = 60.0
#: A remote server's answer is used this long (a server that comes back shows so within this, on the next look).
SERVER_PROBE_MAX_AGE_S = 15.0
#: Whether a remote build's server answers (Availability.server), for remote builds only.
SERVER_ANSWERS = "answers"
SERVER_SILENT = "silent"


@dataclass(frozen=True)
class Availability:
    """`ok`: a request may be sent now (ready, or a download from a reachable Hub). `state` is one of READY,
    DOWNLOAD, UNAVAILABLE; `key`/`params` the message saying why it cannot run (or that it needs a download)."""

    ok: bool
    key: str = "available"
    params: dict[str, Any] = field(default_factory=dict)
    state: str = READY
    download_gb: float | None = None
    hub: str | None = None
    #: remote builds: SERVER_ANSWERS or SERVER_SILENT (a silent server is still sent to: it may be back by then)
    server: str | None = None


# ---- the Hub probe ------------------------------------------------------------------------------------------
def hub_endpoint() -> str:
    """The Hub's base URL as huggingface_hub uses it (HF_ENDPOINT, else huggingface.co)."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def probe_hub(endpoint: str | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when the Hub (or the server at `endpoint`) answers an HTTP request below 500 within `timeout_s` (the
    name lookup counts too: it runs in a thread that is abandoned when it takes longer; httpx's time-outs do not
    cover getaddrinfo)."""
    url = endpoint or hub_endpoint()

    def ask() -> bool:
        import httpx

        try:
            response = httpx.head(url, timeout=timeout_s, follow_redirects=False)
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError):
            return False
        return response.status_code < 500

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-probe")
    try:
        return pool.submit(ask).result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        return False
    finally:
        pool.shutdown(wait=False)


def probe_server(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when the server at `url` gives an HTTP answer below 500 within `timeout_s` (a 401 or 404 is a
    server that answers; a proxy's 502 in front of a stopped one is not). No token is sent: the probe only asks
    whether something answers, so nothing secret goes out and a server that needs a key still counts."""
    return probe_hub(url, timeout_s)


class HubProbe:
    """Remembers whether the Hub was reachable. The first look probes (at most PROBE_TIMEOUT_S); later looks
    return the last answer at once and, once it is older than `max_age_s`, refresh it in a background thread,
    so that no page event ever waits for the network. `endpoint_of` names what is probed (the Hub's URL)."""

    def __init__(self, max_age_s: float = PROBE_MAX_AGE_S, probe: Any = None, endpoint_of: Any = None) -> None:
        self.max_age_s = max_age_s
        self._probe = probe or probe_hub
        self._endpoint_of = endpoint_of or hub_endpoint
        self._lock = threading.Lock()
        self._value: bool | None = None
        self._checked_at = 0.0
        self._refreshing = False
        self._endpoint: str | None = None

    def reachable(self) -> bool:
        endpoint = self._endpoint_of()
        with self._lock:
            known = self._value is not None and self._endpoint == endpoint
            stale = time.monotonic() - self._checked_at > self.max_age_s
            if known and stale and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, args=(endpoint,), daemon=True, name="hub-probe").start()
            if known:
                return bool(self._value)
        self._refresh(endpoint)
        return bool(self._value)

    def _refresh(self, endpoint: str) -> None:
        try:
            value = bool(self._probe(endpoint))
        except Exception:  # a probe that breaks means: not reachable
            value = False
        with self._lock:
            self._value, self._endpoint = value, endpoint
            self._checked_at = time.monotonic()
            self._refreshing = False

    def forget(self) -> None:
        with self._lock:
            self._value = None


HUB = HubProbe()


class ServerProbes:
    """One HubProbe-like memory per remote server URL: whether its server answers, never waiting on a page event
    longer than the first look's PROBE_TIMEOUT_S."""

    def __init__(self, max_age_s: float = SERVER_PROBE_MAX_AGE_S, probe: Any = None) -> None:
        self.max_age_s = max_age_s
        self._probe = probe or probe_server
        self._lock = threading.Lock()
        self._probes: dict[str, HubProbe] = {}

    def answers(self, url: str) -> bool:
        with self._lock:
            probe = self._probes.get(url)
            if probe is None:
                probe = HubProbe(self.max_age_s, probe=self._probe, endpoint_of=lambda: url)
                self._probes[url] = probe
        return probe.reachable()


SERVERS = ServerProbes()


def hub_state(probe: HubProbe | None = None) -> str:
    if hub_offline():
        return HUB_OFFLINE
    return HUB_REACHABLE if (probe or HUB).reachable() else HUB_UNREACHABLE


# ---- builds ---------------------------------------------------------------------------------------------------
@functools.cache
def gpu_memory_gb() -> float | None:
    """Total memory of the first CUDA device, or None without one (or without torch)."""
    if importlib.util.find_spec("torch") is None:
        return None
    # Importing torch takes seconds; without an NVIDIA driver there is no CUDA device to ask about.
    if not Path("/proc/driver/nvidia/version").exists() and not list(Path("/dev").glob("nvidia[0-9]*")):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / 1024**3


def _downloaded(ref: ModelRef) -> bool:
    quant = ref.quant
    if not quant.repo or quant.repo.startswith("/"):
        return True  # a local folder: nothing to download
    return cached_file(quant.repo, quant.file or "config.json") is not None


def check(
    ref: ModelRef,
    endpoint: Endpoint | None = None,
    budget_gb: float | None = None,
    probe: HubProbe | None = None,
    servers: ServerProbes | None = None,
) -> Availability:
    """Availability of one build. A remote build (`endpoint`: the catalog's endpoint it points at) is ready when
    that endpoint has a URL; `server` says whether its server answers now (a silent one is still sent to, and
    its refusal then says why); `params` name the endpoint as the engines' messages do, never by its URL."""
    quant = ref.quant
    kind = quant.kind
    if kind is QuantKind.remote:
        url = endpoint.url() if endpoint else None
        if endpoint is None or not url:
            env = endpoint.url_env if endpoint else "?"
            return Availability(False, "why_no_endpoint", {"endpoint": quant.endpoint, "env": env}, UNAVAILABLE)
        named = {"endpoint": endpoint_name(endpoint)}
        if (servers or SERVERS).answers(url):
            return Availability(True, params=named, server=SERVER_ANSWERS)
        silent = {**named, "env": endpoint.url_env}
        return Availability(True, "server_silent", silent, READY, server=SERVER_SILENT)
    if quant.trust_remote_code and not remote_code_allowed():  # the operator's choice; a visitor is never asked
        return Availability(False, "why_remote_code", {}, UNAVAILABLE)
    # what the engine needs here (components/engines/kinds.py), e.g. a packaged build's package
    missing = ENGINE_KINDS[ref.engine_kind].missing
    if kind is QuantKind.gguf and quant.package:
        # installed, taken from its wheel before, or pinned so that the engine fetches it on first use
        lacking = missing(ref) if missing else None
        return Availability(True) if lacking is None else Availability(False, *lacking, UNAVAILABLE)
    need = ref.estimated_memory_gb()
    if kind in GPU_KINDS:
        gpu = gpu_memory_gb()
        if gpu is None:
            return Availability(False, "why_needs_gpu", {"kind": KIND_NAMES[kind]}, UNAVAILABLE)
        lacking = missing(ref) if missing else None
        if lacking is not None:
            return Availability(False, lacking[0], {"kind": KIND_NAMES[kind], **lacking[1]}, UNAVAILABLE)
        if need > gpu:
            return Availability(False, "why_too_big", {"need": need, "have": gpu}, UNAVAILABLE)
    else:
        budget = default_budget_gb() if budget_gb is None else budget_gb
        if need > budget:
            return Availability(False, "why_too_big", {"need": need, "have": budget}, UNAVAILABLE)
    if _downloaded(ref):
        return Availability(True)
    # the operator's bounds on downloads (components/engines/disk.py): not "⬇ N GB" when it would be refused
    policy = disk.current_policy()
    if not policy.allows(ref.id):
        return Availability(False, "why_download_not_allowed", {}, UNAVAILABLE)
    on_disk = disk.download_gb(ref)
    if policy.budget_gb is not None and on_disk > policy.budget_gb:
        return Availability(False, "why_over_disk_budget", {"size": on_disk, "budget": policy.budget_gb}, UNAVAILABLE)
    size = round(need, 1)
    hub = hub_state(probe)
    if hub == HUB_REACHABLE:
        return Availability(True, "needs_download", {"size": size}, DOWNLOAD, need, hub)
    key = "why_offline" if hub == HUB_OFFLINE else "why_hub_unreachable"
    return Availability(False, key, {"size": size, "endpoint": hub_endpoint()}, DOWNLOAD, need, hub)
