"""Remote servers configured without code: TGI_URL / OPENAI_BASE_URL endpoints for every German model, and their health.

- `TGI_URL` (+ optional `TGI_TOKEN`) adds the endpoint `tgi` (a TGI server) and a build `tgi` to every
  variant of every family that is not the offline one.
- `OPENAI_BASE_URL` (+ optional `OPENAI_API_KEY`, `OPENAI_MODEL` for the served model name,
  `OPENAI_API_MODE=chat|completions`) adds the endpoint `openai` and a build `openai` likewise.
- Endpoints written in models.yaml (`endpoints:`) keep their own `url_env` / `token_env`.

Each endpoint gets exactly the token its `token_env` names and nothing else: the Hugging Face token
(HF_TOKEN) never goes to an endpoint configured without a token (the engines enforce this per request).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from components.engines.kinds import ENGINE_KINDS
from components.engines.remote import SIDE_TIMEOUT_S, endpoint_name, redact_url
from components.vocabulary.catalog import Catalog, Endpoint, Quantization, QuantKind

log = logging.getLogger(__name__)


def register_env_endpoints(catalog: Catalog) -> list[str]:
    """Adds the endpoints whose URL variable is set, with a remote build for every non-offline variant.

    Returns the ids of the endpoints added. An endpoint id that models.yaml already defines is left as
    models.yaml has it.
    """
    added: list[str] = []
    for row in ENGINE_KINDS.values():
        if row.env is None:
            continue
        endpoint_id = kind = row.name
        url_env, token_env, label = row.env.url_env, row.env.token_env, row.env.label
        if not os.environ.get(url_env, "").strip():
            continue
        if endpoint_id in catalog.endpoints:
            log.info("endpoint %s is defined in %s; %s does not replace it", endpoint_id, catalog.source, url_env)
            continue
        endpoint = Endpoint(id=endpoint_id, type=kind, url_env=url_env, token_env=token_env, label=label)
        catalog.endpoints[endpoint_id] = endpoint
        served = (os.environ.get(row.env.served_model_env, "").strip() or None) if row.env.served_model_env else None
        quant = Quantization(
            id=endpoint_id, kind=QuantKind.remote, label=label, endpoint=endpoint_id, served_model=served
        )
        count = 0
        for family in catalog.families:
            for variant in family.variants:
                if variant.offline or any(q.id == quant.id for q in variant.quantizations):
                    continue
                if catalog.get(f"{variant.id}/{quant.id}") is not None:
                    continue
                catalog.with_extra(family.id, variant.id, quant)
                count += 1
        added.append(endpoint_id)
        log.info(
            "remote endpoint %s (%s) at %s for %d models, token: %s",
            endpoint_id,
            kind,
            redact_url(endpoint.url()),
            count,
            "set" if endpoint.token() else "none",
        )
    return added


def _engine_for(endpoint: Endpoint, catalog: Catalog, registry: Any) -> Any:
    """The registry's engine for this endpoint (so /info caches are shared), or a fresh one."""
    if registry is not None:
        ref = next(
            (r for r in catalog.refs() if r.quant.kind is QuantKind.remote and r.quant.endpoint == endpoint.id), None
        )
        if ref is not None:
            return registry.engine_for(ref)
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
    server's health (ok, model_id, version, max_total_tokens, error message key + params). No secrets."""

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
