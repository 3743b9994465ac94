"""Replicas of one remote build: least open streams, one retry before the first token, failed replicas probed back.

Servers that report the same model are replicas of one build (a `ReplicaGroup`). Each request goes to the healthy
replica with the fewest open streams; a replica that fails before the first token (not reachable, time-out, cut,
overloaded, a server error) is left for another one, once; after text has streamed the error stands as it is. A
replica that stops answering is marked down and asked again in the background (with backoff) until it answers
with the same model. That is all the scheduling there is: no queue of our own, no weights.

The same background thread asks the servers that did not answer at start which model they serve, and hands each
answer to the callback the serving layer gave (which adds the build), so a server that comes up later gets its
build without a restart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from components.engines.base import Engine
from components.engines.remote import endpoint_name
from components.engines.served_model import ServedModel, ServerSilent, ask_server
from components.vocabulary.catalog import Catalog, Endpoint, ModelRef
from components.vocabulary.generation import EngineDone, EngineError, GenerationRequest, PromptSent, Status, TextDelta

log = logging.getLogger(__name__)

UP, DOWN, WAITING = "up", "down", "waiting"
#: failures before the first token that another replica may well not have
RETRYABLE = frozenset(
    {
        "err_remote_unreachable",
        "err_remote_timeout",
        "err_remote_cut",
        "err_remote_overloaded",
        "err_remote_http",
        "err_remote_unhealthy",
        "err_remote_malformed",
        "err_remote_incomplete",
        "err_remote_generation",
        "err_remote_unknown",
    }
)
#: failures that take a replica out until a probe finds it back (an overloaded one is only busy)
TAKES_OUT = frozenset({"err_remote_unreachable", "err_remote_timeout", "err_remote_cut", "err_remote_http"})
#: background retries: first after this many seconds, doubling up to the maximum
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0


@dataclass
class Replica:
    """One server of a build, its state and its open streams."""

    endpoint: Endpoint
    served: str | None = None
    state: str = UP
    open_streams: int = 0
    error: str | None = None
    next_probe: float = 0.0
    backoff_s: float = BACKOFF_START_S

    @property
    def name(self) -> str:
        return endpoint_name(self.endpoint)


@dataclass
class ReplicaGroup:
    """The servers of one build. `chat`: the build is a served model outside the catalog's families, answered
    through the server's own chat template."""

    group_id: str
    served_model: str | None = None
    server: str | None = None
    chat: bool = False
    replicas: list[Replica] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, endpoint: Endpoint, served: str | None, state: str = UP) -> Replica:
        with self.lock:
            for replica in self.replicas:
                if replica.endpoint.id == endpoint.id:
                    return replica
            replica = Replica(endpoint, served, state, next_probe=time.monotonic() + BACKOFF_START_S)
            self.replicas = [*self.replicas, replica]
            return replica

    def pick(self, exclude: set[str]) -> Replica | None:
        """The healthy replica with the fewest open streams (not in `exclude`); with none healthy, the one whose
        failure is oldest (it may be back by now: a silent server is still sent to). Counts the stream as open."""
        with self.lock:
            left = [r for r in self.replicas if r.endpoint.id not in exclude]
            healthy = [r for r in left if r.state == UP]
            pool = healthy or sorted(left, key=lambda r: r.next_probe)[:1]
            if not pool:
                return None
            chosen = min(pool, key=lambda r: r.open_streams)
            chosen.open_streams += 1
            return chosen

    def release(self, replica: Replica) -> None:
        with self.lock:
            replica.open_streams -= 1

    def mark_down(self, replica: Replica, key: str) -> None:
        with self.lock:
            if replica.state != DOWN:
                replica.backoff_s = BACKOFF_START_S
                log.warning("replica %s of %s is down (%s)", replica.name, self.group_id, key)
            replica.state, replica.error = DOWN, key
            replica.next_probe = time.monotonic() + replica.backoff_s

    def mark_up(self, replica: Replica) -> None:
        with self.lock:
            if replica.state != UP:
                log.info("replica %s of %s answers again", replica.name, self.group_id)
            replica.state, replica.error, replica.backoff_s = UP, None, BACKOFF_START_S

    def best_endpoint(self) -> Endpoint | None:
        """The endpoint a request would go to now (for availability): a healthy one with the fewest streams."""
        with self.lock:
            if not self.replicas:
                return None
            healthy = [r for r in self.replicas if r.state == UP] or self.replicas
            return min(healthy, key=lambda r: r.open_streams).endpoint

    def snapshot(self) -> list[dict[str, Any]]:
        """Each replica's name, state and open streams; never a URL or a token."""
        with self.lock:
            return [
                {"name": r.name, "endpoint": r.endpoint.id, "state": r.state, "open_streams": r.open_streams}
                for r in self.replicas
            ]


class FleetEngine(Engine):
    """The engine of one build served by a ReplicaGroup: each replica's own engine (TGI, OpenAI-compatible; the
    OpenAI-compatible one in chat mode for a served model outside the catalog), chosen per request."""

    def __init__(self, group: ReplicaGroup, kind_name: str) -> None:
        self.group = group
        self.name = kind_name
        self._engines: dict[str, Engine] = {}

    def engine_of(self, endpoint: Endpoint) -> Engine:
        engine = self._engines.get(endpoint.id)
        if engine is None:
            if self.group.chat:
                from components.engines.openai_compat import OpenAICompatEngine

                engine = OpenAICompatEngine(endpoint, api_mode="chat")
            else:
                from components.engines.kinds import ENGINE_KINDS

                engine = ENGINE_KINDS[endpoint.type].create(endpoint=endpoint)
            self._engines[endpoint.id] = engine
        return engine

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextDelta | Status | PromptSent | EngineDone]:
        tried: set[str] = set()
        last: EngineError | None = None
        for _attempt in range(2):
            replica = self.group.pick(tried)
            if replica is None:
                break
            tried.add(replica.endpoint.id)
            streamed = False
            gen = self.engine_of(replica.endpoint).generate(request)
            try:
                async for item in gen:
                    if isinstance(item, TextDelta):
                        streamed = True
                    elif isinstance(item, EngineDone):
                        self.group.mark_up(replica)
                        served = replica.served or self.group.served_model
                        item = dataclasses.replace(item, served_model=served, replica=replica.name)
                    yield item
                return
            except EngineError as exc:
                if exc.key in TAKES_OUT:
                    self.group.mark_down(replica, exc.key)
                    PROBER.kick()
                if streamed or exc.key not in RETRYABLE or request.cancel.is_set():
                    raise
                last = exc
                log.info("replica %s failed before its first token (%s): one more try elsewhere", replica.name, exc.key)
            finally:
                self.group.release(replica)
                with contextlib.suppress(Exception):
                    await gen.aclose()
        if last is not None:
            raise last
        names = [r.name for r in self.group.replicas] or [self.group.group_id]
        raise EngineError("err_remote_unreachable", endpoint=", ".join(names))

    async def count_tokens(self, model: ModelRef, text: str) -> int | None:
        endpoint = self.group.best_endpoint()
        return None if endpoint is None else await self.engine_of(endpoint).count_tokens(model, text)

    def context_length(self, model: ModelRef) -> int:
        endpoint = self.group.best_endpoint()
        return model.variant.context_length if endpoint is None else self.engine_of(endpoint).context_length(model)

    async def aclose(self) -> None:
        for engine in self._engines.values():
            closer = getattr(engine, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()


def _ask(endpoint: Endpoint, hint: str | None) -> ServedModel:
    """What the endpoint's server serves now; ServerSilent when it has no address or does not answer."""
    url = endpoint.url()
    if not url:
        raise ServerSilent("err_remote_not_configured")
    return ask_server(url, endpoint.type, endpoint.token(), hint)


@dataclass
class Waiting:
    """A server that has not said yet which model it serves; `bind` adds its build once it does."""

    endpoint: Endpoint
    bind: Callable[[Endpoint, ServedModel], None]
    model_hint: str | None = None
    error: str | None = None
    next_try: float = 0.0
    backoff_s: float = BACKOFF_START_S


class Fleet:
    """A catalog's replica groups (by the build's endpoint id) and its servers still waiting to be bound."""

    def __init__(self) -> None:
        self.groups: dict[str, ReplicaGroup] = {}
        self.waiting: dict[str, Waiting] = {}
        self.lock = threading.Lock()

    def group(self, group_id: str | None) -> ReplicaGroup | None:
        return self.groups.get(group_id or "")

    def group_of_endpoint(self, endpoint_id: str) -> ReplicaGroup | None:
        for group in list(self.groups.values()):
            if any(r.endpoint.id == endpoint_id for r in group.replicas):
                return group
        return None

    def add_group(self, group: ReplicaGroup) -> ReplicaGroup:
        with self.lock:
            self.groups = {**self.groups, group.group_id: group}
        PROBER.watch(self)  # a replica marked down later is probed back
        return group

    def wait_for(self, waiting: Waiting) -> None:
        with self.lock:
            waiting.next_try = time.monotonic() + waiting.backoff_s
            self.waiting = {**self.waiting, waiting.endpoint.id: waiting}
        PROBER.watch(self)

    def waiting_rows(self) -> list[dict[str, Any]]:
        return [
            {"name": endpoint_name(w.endpoint), "endpoint": w.endpoint.id, "error": w.error}
            for w in list(self.waiting.values())
        ]

    # ---- one round of the background prober -------------------------------------------------------------------
    def due(self, now: float) -> tuple[list[Waiting], list[tuple[ReplicaGroup, Replica]]]:
        waiting = [w for w in list(self.waiting.values()) if w.next_try <= now]
        down = [
            (g, r)
            for g in list(self.groups.values())
            for r in list(g.replicas)
            if r.state == DOWN and r.next_probe <= now
        ]
        return waiting, down

    def busy(self) -> bool:
        """Whether anything waits for a server: a server not bound yet or a replica down."""
        return bool(self.waiting) or any(r.state == DOWN for g in list(self.groups.values()) for r in g.replicas)

    def next_due(self) -> float:
        times = [w.next_try for w in list(self.waiting.values())]
        times += [r.next_probe for g in list(self.groups.values()) for r in g.replicas if r.state == DOWN]
        return min(times, default=time.monotonic() + BACKOFF_MAX_S)

    def try_waiting(self, waiting: Waiting) -> None:
        endpoint = waiting.endpoint
        try:
            served = _ask(endpoint, waiting.model_hint)
        except ServerSilent as exc:
            waiting.error = exc.key
            waiting.backoff_s = min(BACKOFF_MAX_S, waiting.backoff_s * 2)
            waiting.next_try = time.monotonic() + waiting.backoff_s
            return
        with self.lock:
            self.waiting = {k: v for k, v in self.waiting.items() if k != endpoint.id}
        log.info("server %s answers now: %s", endpoint_name(endpoint), served.model_id)
        waiting.bind(endpoint, served)

    def probe(self, group: ReplicaGroup, replica: Replica) -> None:
        endpoint = replica.endpoint
        try:
            served = _ask(endpoint, replica.served)
        except ServerSilent as exc:
            with group.lock:
                replica.error = exc.key
                replica.backoff_s = min(BACKOFF_MAX_S, replica.backoff_s * 2)
                replica.next_probe = time.monotonic() + replica.backoff_s
            return
        expected = (replica.served or group.served_model or "").lower()
        if not expected:
            replica.served = served.model_id
        elif served.model_id.lower() != expected:
            # the server now serves another model: it stays out of this build (its answers would be booked wrongly)
            with group.lock:
                replica.error = "fleet_other_model"
                replica.next_probe = time.monotonic() + BACKOFF_MAX_S
            log.warning("replica %s now serves %s, not %s: kept out", replica.name, served.model_id, expected)
            return
        group.mark_up(replica)


class Prober:
    """One daemon thread for every fleet with something to wait for; it ends when nothing is left."""

    def __init__(self) -> None:
        self._fleets: weakref.WeakSet[Fleet] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, fleet: Fleet) -> None:
        with self._lock:
            self._fleets.add(fleet)
        self.kick()

    def kick(self) -> None:
        with self._lock:
            self._wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="fleet-prober")
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                fleets = [f for f in list(self._fleets) if f.busy()]
                if not fleets:
                    self._thread = None
                    return
                self._wake.clear()
            now = time.monotonic()
            for fleet in fleets:
                waiting, down = fleet.due(now)
                for item in waiting:
                    try:
                        fleet.try_waiting(item)
                    except Exception:  # a binding that fails must not end the thread for everyone else
                        log.exception("binding server %s failed", item.endpoint.id)
                for group, replica in down:
                    fleet.probe(group, replica)
            pause = min(f.next_due() for f in fleets) - time.monotonic()
            self._wake.wait(max(0.05, min(pause, BACKOFF_MAX_S)))


PROBER = Prober()
_FLEETS: weakref.WeakKeyDictionary[Catalog, Fleet] = weakref.WeakKeyDictionary()
_FLEETS_LOCK = threading.Lock()


def fleet_of(catalog: Catalog) -> Fleet:
    """The catalog's fleet (made on first use)."""
    with _FLEETS_LOCK:
        fleet = _FLEETS.get(catalog)
        if fleet is None:
            fleet = _FLEETS[catalog] = Fleet()
        return fleet
