"""Remote servers configured without code, each bound to the model it serves; replicas; their health.

- `TGI_URL` and `OPENAI_BASE_URL` take one URL or several, separated by commas; `TGI_TOKEN` / `OPENAI_API_KEY` one
  token for all of them or a comma-separated list in the same order (a count that does not match is refused at
  start, naming the variable, never the token). Each server is one endpoint (`tgi`, `tgi-2`, …; `openai`, …).
- Each server is asked which model it serves (components/engines/served_model.py) and becomes a build of that
  catalog variant only (its own repository or one of its quantized ones). A served model the catalog does not know
  becomes one build of the run-time family `served` ("other served models"), answered through the server's own
  chat template. Servers of one kind that report the same model are replicas of one build
  (components/engines/fleet.py). A server that does not answer at start gets no build until it does: it is asked
  again in the background, and `/models` and the Server tab say that the app waits for it.
- `OPENAI_MODEL` names the served model where an OpenAI-compatible server cannot say (and picks one where it lists
  several); `OPENAI_API_MODE=chat|completions` as before.
- Endpoints written in models.yaml (`endpoints:`) keep their own `url_env` / `token_env` and the variants that name
  them; several URLs there are replicas too, and each server is still asked what it serves (a vote records it).

Each endpoint gets exactly the token its `token_env` names (its place in a list) and nothing else: the Hugging
Face token (HF_TOKEN) never goes to an endpoint configured without a token (the engines enforce this per request).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from components.engines.fleet import ReplicaGroup, Waiting, fleet_of
from components.engines.kinds import ENGINE_KINDS
from components.engines.remote import SIDE_TIMEOUT_S, endpoint_name, redact_url
from components.engines.served_model import (
    SERVER_LABELS,
    TGI,
    ServedModel,
    ServerSilent,
    ask_server,
    catalog_match,
)
from components.vocabulary.catalog import (
    Catalog,
    Endpoint,
    Family,
    Localized,
    ModelRef,
    Quantization,
    QuantKind,
    Variant,
)
from components.vocabulary.messages import MESSAGES, t

log = logging.getLogger(__name__)

#: The run-time family of served models the catalog does not know.
SERVED_FAMILY = "served"
#: Context assumed for a served model outside the catalog whose server does not say (the server checks anyway).
SERVED_DEFAULT_CONTEXT = 4096
_BIND_LOCK = threading.Lock()


class EndpointConfigError(ValueError):
    """The servers' variables do not fit together (the message names the variables, never a value)."""


def _items(value: str) -> list[str]:
    return [part.strip() for part in value.split(",")] if value.strip() else []


def env_servers(
    url_env: str, token_env: str | None, label: str, kind: str, id_prefix: str | None = None
) -> list[Endpoint]:
    """One endpoint of type `kind` per URL in `url_env` (ids `id_prefix`, `id_prefix-2`, … with `kind` as the
    prefix by default; labels `label`, `label 2`, …). Raises EndpointConfigError when `token_env` holds a list whose
    length is not the number of URLs."""
    prefix = id_prefix or kind
    urls = _items(os.environ.get(url_env, ""))
    tokens = os.environ.get(token_env, "").strip() if token_env else ""
    if "," in tokens and len(_items(tokens)) != len(urls):
        raise EndpointConfigError(
            f"{token_env} has {len(_items(tokens))} comma-separated tokens, {url_env} has {len(urls)} URLs: give one "
            f"token for all servers or one per URL in the same order"
        )
    return [
        Endpoint(
            id=prefix if i == 0 else f"{prefix}-{i + 1}",
            type=kind,  # type: ignore[arg-type]
            url_env=url_env,
            token_env=token_env,
            label=label if i == 0 else f"{label} {i + 1}",
            index=i,
        )
        for i, url in enumerate(urls)
        if url
    ]


def _slug(model_id: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", model_id.lower()).strip("-._")[:60]
    return slug if slug and slug[0].isalnum() else f"m-{slug}"


def _served_family(variant: Variant) -> Family:
    return Family(
        id=SERVED_FAMILY,
        name="Weitere Servermodelle · Other served models",
        prompt_format="server_chat",
        description=Localized(
            de="Modelle, die ein konfigurierter Server bereitstellt und die nicht zu den Modellfamilien des Katalogs "
            "gehören. Sie antworten über die eigene Chat-Vorlage des Servers; kein Promptformat einer Familie wird "
            "übernommen.",
            en="Models a configured server serves that are not among the catalog's model families. They answer "
            "through the server's own chat template; no family's prompt format is borrowed.",
        ),
        variants=[variant],
    )


class Binder:
    """Adds the build of a server once it has said what it serves (at start or later, from the fleet's thread)."""

    def __init__(self, catalog: Catalog, kind: str) -> None:
        self.catalog = catalog
        self.kind = kind
        self.fleet = fleet_of(catalog)

    def __call__(self, endpoint: Endpoint, served: ServedModel) -> ModelRef | None:
        with _BIND_LOCK:
            return self._bind(endpoint, served)

    def _bind(self, endpoint: Endpoint, served: ServedModel) -> ModelRef | None:
        catalog, kind = self.catalog, self.kind
        server = SERVER_LABELS.get(served.server, served.server)
        match = catalog_match(catalog, served)
        if match is not None:
            family, variant = match.ref.family, match.ref.variant
            if match.quant is None:
                quant_id = kind if not match.gguf_repo else f"{kind}-gguf"
                label = server if not match.gguf_repo else f"{server} · GGUF"
            else:
                # the build's own name (GGUF Q4_K_M, AWQ 4-bit), not a local build's label
                display = match.quant.model_copy(update={"label": None}).display
                quant_id, label = f"{kind}-{match.quant.id}", f"{server} · {display}"
        else:
            family, variant = None, None
            variant_id = _slug(served.model_id)
            if any(r.variant.id == variant_id and r.family.id != SERVED_FAMILY for r in catalog.refs()):
                variant_id = f"{variant_id}-served"
            quant_id, label = kind, server
        build_id = f"{variant.id if variant else variant_id}/{quant_id}"
        existing = catalog.get(build_id)
        if existing is not None and existing.id == build_id:
            group = self.fleet.group(existing.quant.endpoint)
            if group is not None:
                group.add(endpoint, served.model_id)
                log.info("server %s is a replica of %s", endpoint_name(endpoint), build_id)
                return existing
            log.warning("%s is configured in %s; server %s adds nothing", build_id, catalog.source, endpoint.id)
            return None
        # the `model` an OpenAI-compatible request names; TGI reads any other name than `tgi` as a LoRA adapter
        request_name = served.request_name if kind != TGI and served.server != TGI else None
        quant = Quantization(
            id=quant_id, kind=QuantKind.remote, label=label, endpoint=endpoint.id, served_model=request_name
        )
        if family is not None and variant is not None:
            ref = catalog.with_extra(family.id, variant.id, quant)
        else:
            context = max(128, min(served.context or SERVED_DEFAULT_CONTEXT, 1_048_576))
            served_variant = Variant(
                id=variant_id, name=served.model_id[:120], params_b=1, context_length=context, quantizations=[quant]
            )
            known = {v.id for f in catalog.families if f.id == SERVED_FAMILY for v in f.variants}
            if variant_id in known:  # the same model through another kind of server: a build beside the first
                ref = catalog.with_extra(SERVED_FAMILY, variant_id, quant)
            else:
                ref = catalog.with_served(_served_family(served_variant), served_variant, quant)
        group = ReplicaGroup(endpoint.id, served.model_id, served.server, chat=match is None)
        group.add(endpoint, served.model_id)
        self.fleet.add_group(group)
        where = "outside the catalog" if match is None else f"catalog {match.ref.variant.id}"
        log.info("server %s serves %s (%s): build %s", endpoint_name(endpoint), served.model_id, where, ref.id)
        return ref


def _ask(endpoint: Endpoint, hint: str | None) -> ServedModel | ServerSilent:
    url = endpoint.url()
    if not url:
        return ServerSilent("err_remote_not_configured")
    try:
        return ask_server(url, endpoint.type, endpoint.token(), hint)
    except ServerSilent as exc:
        return exc


def _warn_if_other_model(catalog: Catalog, endpoint: Endpoint, served: ServedModel) -> None:
    """A models.yaml endpoint whose server serves a model none of its builds is: said in the log (votes are counted
    by what the server reports, so its answers are never credited to the build's name)."""
    group = fleet_of(catalog).group_of_endpoint(endpoint.id)
    variants = {r.variant.id for r in catalog.refs() if group and r.quant.endpoint == group.group_id}
    match = catalog_match(catalog, served)
    if variants and (match is None or match.ref.variant.id not in variants):
        log.warning(
            "server %s serves %s, which is none of its builds' models (%s)",
            endpoint_name(endpoint),
            served.model_id,
            ", ".join(sorted(variants)),
        )


def register_env_endpoints(catalog: Catalog) -> list[str]:
    """Asks every configured server what it serves and adds its build (module docstring); servers that do not
    answer are asked again in the background. Returns the ids of the endpoints added from the environment.
    Raises EndpointConfigError when the variables do not fit together."""
    fleet = fleet_of(catalog)
    plans: list[tuple[Endpoint, Binder | None, str | None]] = []
    added: list[str] = []
    for row in ENGINE_KINDS.values():
        if row.env is None:
            continue
        kind = row.name
        servers = env_servers(row.env.url_env, row.env.token_env, row.env.label, kind)
        if not servers:
            continue
        if kind in catalog.endpoints:
            log.info("endpoint %s is defined in %s; %s does not replace it", kind, catalog.source, row.env.url_env)
            continue
        hint = (os.environ.get(row.env.served_model_env, "").strip() or None) if row.env.served_model_env else None
        binder = Binder(catalog, kind)
        for endpoint in servers:
            catalog.endpoints[endpoint.id] = endpoint
            plans.append((endpoint, binder, hint))
            added.append(endpoint.id)
    # endpoints of models.yaml: their variants name them; several URLs are replicas; each is asked what it serves
    for endpoint in [e for e in list(catalog.endpoints.values()) if e.id not in added]:
        if not endpoint.url_env or not os.environ.get(endpoint.url_env, "").strip():
            continue
        replicas = env_servers(
            endpoint.url_env, endpoint.token_env, endpoint.label or endpoint.id, endpoint.type, endpoint.id
        )
        group = fleet.add_group(ReplicaGroup(endpoint.id))
        for replica in replicas:
            catalog.endpoints[replica.id] = replica
            group.add(replica, None)
            plans.append((replica, None, None))
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(plans)))) as pool:
        answers = list(pool.map(lambda plan: _ask(plan[0], plan[2]), plans))
    for (endpoint, binder, hint), answer in zip(plans, answers, strict=True):
        if binder is None:  # a models.yaml endpoint: record what it serves, or probe it back
            group = fleet.group_of_endpoint(endpoint.id)
            replica = next(r for r in group.replicas if r.endpoint.id == endpoint.id) if group else None
            if replica is not None and isinstance(answer, ServedModel):
                replica.served = answer.model_id
                _warn_if_other_model(catalog, endpoint, answer)
            elif replica is not None and group is not None:
                group.mark_down(replica, answer.key if isinstance(answer, ServerSilent) else "err_remote_unreachable")
            continue
        if isinstance(answer, ServedModel):
            binder(endpoint, answer)
        else:
            log.warning(
                "server %s (%s) does not answer (%s): waiting for it in the background",
                endpoint_name(endpoint),
                redact_url(endpoint.url()),
                answer.key,
            )
            fleet.wait_for(Waiting(endpoint, binder, hint, error=answer.key))
    for endpoint_id in added:
        endpoint = catalog.endpoints[endpoint_id]
        log.info(
            "remote endpoint %s (%s) at %s, token: %s",
            endpoint_id,
            endpoint.type,
            redact_url(endpoint.url()),
            "set" if endpoint.token() else "none",
        )
    return added


def waiting_texts(catalog: Catalog, lang: str) -> list[tuple[str, str]]:
    """(server name, "waiting for <name>" in `lang`) for each server that has not said yet what it serves."""
    out = []
    for row in fleet_of(catalog).waiting_rows():
        key = f"fleet_why_{row['error'] or 'err_remote_unreachable'}"
        why = t(key if key in MESSAGES else "fleet_why_err_remote_unreachable", lang)
        out.append((row["name"], t("fleet_waiting", lang, endpoint=row["name"], why=why)))
    return out


def fleet_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """Each remote build with its served model and replicas (name, state, open streams), and each server still
    waiting to say what it serves. No URL, no token."""
    fleet = fleet_of(catalog)
    rows: list[dict[str, Any]] = []
    for ref in catalog.refs():
        group = fleet.group(ref.quant.endpoint) if ref.quant.kind is QuantKind.remote else None
        if group is not None:
            rows.append(
                {
                    "id": ref.id,
                    "label": ref.label,
                    "served_model": group.served_model,
                    "outside_catalog": group.chat,
                    "replicas": group.snapshot(),
                }
            )
    return rows


def _engine_for(endpoint: Endpoint, catalog: Catalog, registry: Any) -> Any:
    """The registry's engine for this endpoint (its replica's engine in the build's fleet, so /info caches are
    shared), or a fresh one."""
    if registry is not None:
        group = fleet_of(catalog).group_of_endpoint(endpoint.id)
        group_id = group.group_id if group is not None else endpoint.id
        ref = next(
            (r for r in catalog.refs() if r.quant.kind is QuantKind.remote and r.quant.endpoint == group_id), None
        )
        if ref is not None:
            engine = registry.engine_for(ref)
            return engine.engine_of(endpoint) if hasattr(engine, "engine_of") else engine
    return ENGINE_KINDS[endpoint.type].create(endpoint=endpoint)


def _safe(value: Any) -> Any:
    """Plain values only, so nothing unexpected (an object holding a token) reaches the page."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    return str(type(value).__name__)


async def endpoint_health(
    catalog: Catalog, registry: Any = None, timeout_s: float = SIDE_TIMEOUT_S + 2
) -> list[dict[str, Any]]:
    """One row per endpoint for a status view: id, type, label, redacted URL, whether a token is set, and the
    server's health (ok, model_id, version, max_total_tokens, error message key + params), the build it serves,
    its state as a replica (up, down) and open streams, and whether the app still waits for it. No secrets."""
    fleet = fleet_of(catalog)

    async def one(endpoint: Endpoint) -> dict[str, Any]:
        url = endpoint.url()
        token = endpoint.token()
        row: dict[str, Any] = {
            "id": endpoint.id,
            "type": endpoint.type,
            "label": endpoint_name(endpoint),
            "url": redact_url(url),
            "url_env": endpoint.url_env,
            "token_env": endpoint.token_env,
            "auth": bool(token),
            "configured": bool(url),
            "builds": sum(1 for r in catalog.refs() if r.quant.endpoint == endpoint.id),
        }
        group = fleet.group_of_endpoint(endpoint.id)
        replica = next((r for r in group.replicas if r.endpoint.id == endpoint.id), None) if group else None
        build = next((r for r in catalog.refs() if group and r.quant.endpoint == group.group_id), None)
        row["build"] = build.id if build else None
        row["build_label"] = build.label if build else None
        row["replica_state"] = replica.state if replica else None
        row["open_streams"] = replica.open_streams if replica else None
        row["waiting"] = endpoint.id in fleet.waiting
        try:
            health = await asyncio.wait_for(_engine_for(endpoint, catalog, registry).health(), timeout_s)
        except TimeoutError:
            health = {
                "ok": False,
                "error": "err_remote_timeout",
                "error_params": {"endpoint": endpoint_name(endpoint), "seconds": timeout_s},
            }
        except Exception as exc:  # a status view must not fail because one server misbehaves
            log.warning("health of endpoint %s failed: %s", endpoint.id, type(exc).__name__)
            health = {"ok": False, "error": "err_internal", "error_params": {"detail": type(exc).__name__}}
        row.update({k: _safe(v) for k, v in health.items()})
        if token:
            # belt and braces: a server could echo a header into a message we quote
            row = _scrub_token(row, token)
        return row

    return list(await asyncio.gather(*(one(e) for e in catalog.endpoints.values())))


def _scrub_token(value: Any, token: str) -> Any:
    if isinstance(value, str):
        return value.replace(token, "***")
    if isinstance(value, list):
        return [_scrub_token(v, token) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_token(v, token) for k, v in value.items()}
    return value
