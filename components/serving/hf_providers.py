"""Hugging Face Inference Providers builds from HF_PROVIDERS_MODELS, and whether the page offers the sign-in.

`HF_PROVIDERS_MODELS=em-german-leo-mistral:featherless-ai,leo-hessianai-13b-chat` asks the router
(components/engines/hf_providers.py) for those catalog variants: each entry is a variant id of models.yaml with an
optional `:provider` (a provider id such as `featherless-ai`, or `fastest`, `cheapest`, `preferred`). A variant is
asked for by its unquantized repository (its fp16/bf16/fp32 build's `repo`, `owner/name`);
a variant without one, an unknown id or a malformed provider is left out with a log line naming it.

The token: `HF_PROVIDERS_TOKEN` (a token with the "Make calls to Inference Providers" permission, billed to its
account), and on a Space with the sign-in, each signed-in visitor's own token instead for that visitor's requests.
HF_TOKEN is not used: it is the token for downloads and may carry write access. `HF_PROVIDERS_URL` replaces the
router's address (for a proxy, or a stand-in in tests).

The sign-in ("Mit Hugging Face anmelden", Gradio's OAuth) is offered when the catalog has a providers build and
either the Space has OAuth (`hf_oauth: true` in its front matter, which sets OAUTH_CLIENT_ID) or
`PLAYGROUND_HF_SIGNIN=1` (a local run: Gradio then mocks the login with the machine's own Hugging Face login).
"""

from __future__ import annotations

import logging
import os
import re

from components.engines.hf_providers import ROUTER_URL
from components.vocabulary.catalog import Catalog, Endpoint, Quantization, QuantKind

log = logging.getLogger(__name__)

ENDPOINT_ID = "hf-providers"
MODELS_ENV = "HF_PROVIDERS_MODELS"
TOKEN_ENV = "HF_PROVIDERS_TOKEN"
URL_ENV = "HF_PROVIDERS_URL"
LABEL = "Inference Providers"
#: a provider id or a selection policy (`fastest`, `cheapest`, `preferred` are of the same shape)
PROVIDER = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
UNQUANTIZED = ("fp16", "bf16", "fp32")


def register_provider_models(catalog: Catalog) -> list[str]:
    """Adds the endpoint `hf-providers` and one build per HF_PROVIDERS_MODELS entry; returns the build ids added."""
    spec = os.environ.get(MODELS_ENV, "").strip()
    if not spec:
        return []
    if ENDPOINT_ID not in catalog.endpoints:
        catalog.endpoints[ENDPOINT_ID] = Endpoint(
            id=ENDPOINT_ID,
            type="hf_providers",
            url_env=URL_ENV,
            token_env=TOKEN_ENV,
            label=LABEL,
            url_default=ROUTER_URL,
        )
    added: list[str] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        variant_id, _, provider = entry.partition(":")
        found = next(
            ((f, v) for f in catalog.families for v in f.variants if v.id == variant_id and not v.offline), None
        )
        if found is None or (provider and not PROVIDER.match(provider)):
            log.warning("%s: %r is not a catalog variant[:provider]; left out", MODELS_ENV, entry[:80])
            continue
        family, variant = found
        repo = next((q.repo for q in variant.quantizations if q.kind.value in UNQUANTIZED and q.repo), None)
        if repo is None or repo.startswith("/"):
            log.warning("%s: %s has no unquantized Hub repository to ask for; left out", MODELS_ENV, variant_id)
            continue
        quant_id = f"hf-{provider or 'auto'}"
        if any(q.id == quant_id for q in variant.quantizations):
            continue
        label = f"{LABEL} ({provider})" if provider else LABEL
        quant = Quantization(
            id=quant_id,
            kind=QuantKind.remote,
            label=label,
            endpoint=ENDPOINT_ID,
            served_model=f"{repo}:{provider}" if provider else repo,
        )
        catalog.with_extra(family.id, variant.id, quant)
        added.append(f"{variant.id}/{quant_id}")
    log.info(
        "Inference Providers builds: %s, token: %s",
        ", ".join(added) or "none",
        "set" if os.environ.get(TOKEN_ENV) else "none",
    )
    return added


def signin_offered(catalog: Catalog) -> bool:
    """Whether the page shows "Sign in with Hugging Face": a providers build exists and OAuth can work here.

    Off a Space, Gradio mocks the login with the machine's own Hugging Face login (gradio/oauth.py
    _get_mocked_oauth_info, which also asks the Hub who that is) and stops the app at start without one: so
    PLAYGROUND_HF_SIGNIN=1 without a saved login or HF_TOKEN leaves the button out, with a log line.
    """
    if not any(e.type == "hf_providers" for e in catalog.endpoints.values()):
        return False
    if os.environ.get("OAUTH_CLIENT_ID"):
        return True  # a Space with `hf_oauth: true`
    if os.environ.get("PLAYGROUND_HF_SIGNIN", "").strip() != "1":
        return False
    from huggingface_hub import get_token

    if get_token() is None:
        log.warning("PLAYGROUND_HF_SIGNIN=1 needs this machine's Hugging Face login for Gradio's mocked sign-in")
        return False
    return True
