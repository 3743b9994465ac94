"""TGI engine: streams from a Text Generation Inference server through huggingface_hub's AsyncInferenceClient.

How the installed client (huggingface_hub 2.4.0) is used, and why:
- Each request gets its own AsyncInferenceClient, closed when the answer ends. The client keeps every
  streamed response in its own exit stack, so closing the client is the only way to close the HTTP
  stream; closing the connection is how TGI learns to drop the request (it has no stop route).
- The clients share one httpx2 transport per engine that we build ourselves (`client._async_client`):
  the client's default transport refuses every URL, loopback included, when HF_HUB_OFFLINE=1, and
  would send HF_TOKEN to a URL endpoint configured without a token (even with
  HF_HUB_DISABLE_IMPLICIT_TOKEN set). Our transport's request hook decides the Authorization header.
- /info, /tokenize and /health are plain GETs/POSTs on that transport (the client's get_endpoint_info()
  and health_check() refuse a plain URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    IncompleteGenerationError,
    InferenceTimeoutError,
    OverloadedError,
    TextGenerationError,
    UnknownError,
    ValidationError,
)

from components.engines.base import Engine, check_context
from components.engines.remote import (
    INFO_TTL_S,
    SIDE_TIMEOUT_S,
    LoopBound,
    Stopped,
    StopTrimmer,
    Watchdog,
    auth_hook,
    classify_error,
    endpoint_name,
    error_type_from_message,
    estimate_tokens,
    remote_timeout_s,
    scrub,
)
from components.vocabulary.catalog import Endpoint, ModelRef
from components.vocabulary.generation import (
    EngineDone,
    EngineError,
    GenerationRequest,
    Status,
    TextDelta,
    TokenProb,
    from_logprob,
    token_prob,
)
from components.vocabulary.settings import SamplingSettings

log = logging.getLogger(__name__)

#: TGI's default --max-stop-sequences, used when /info does not say.
DEFAULT_MAX_STOP_SEQUENCES = 4


def tgi_parameters(
    settings: SamplingSettings, json_schema: dict[str, Any] | None, max_stop: int = DEFAULT_MAX_STOP_SEQUENCES
) -> dict[str, Any]:
    """text_generation() keyword arguments in the ranges TGI's validation accepts.

    TGI refuses temperature <= 0, top_k <= 0 and top_p outside (0, 1), and samples whenever any of them is
    sent: greedy decoding is do_sample=False with none of them. Stop sequences keep their order (the
    family's come first), so trimming to the server's maximum keeps the family's own.
    """
    sampling = settings.temperature > 0
    return {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": sampling,
        "temperature": settings.temperature if sampling else None,
        "top_p": settings.top_p if sampling and 0 < settings.top_p < 1 else None,
        "top_k": settings.top_k if sampling and settings.top_k > 0 else None,
        "seed": settings.seed if sampling else None,
        "repetition_penalty": settings.repetition_penalty if settings.repetition_penalty not in (0, 1.0) else None,
        "stop": list(settings.stop[: max(0, max_stop)]) or None,
        "grammar": {"type": "json", "value": json_schema} if json_schema else None,
        # each token's likeliest alternatives (router/src/validation.rs: 0 up to --max-top-n-tokens, default 5)
        "top_n_tokens": settings.top_tokens or None,
    }


def stream_token_prob(item: Any) -> TokenProb | None:
    """A streamed token's probability and alternatives from TGI's `token.logprob` and `top_tokens` (router/src/
    lib.rs StreamResponse; the log-softmax of the scores the token was drawn from: after the repetition penalty
    and, when sampling, temperature, top-k and top-p, server/text_generation_server/utils/tokens.py)."""
    logprob = item.token.logprob
    if logprob is None:
        return None
    top = [(alt.text, from_logprob(alt.logprob)) for alt in item.top_tokens or () if alt.logprob is not None]
    return token_prob(item.token.text, from_logprob(logprob), top)


#: tokens a tokenizer may add to a prompt of its own (BOS, a prefix space): the byte bound allows for them
ADDED_TOKENS_ALLOWANCE = 8


def surely_fits(request: GenerationRequest, info: dict[str, Any]) -> int | None:
    """An upper bound on the prompt's tokens when even that fits the server's limits, else None (count it).

    Byte-level and byte-fallback tokenizers (Llama, Mistral, BLOOM, GPT-2) never make more tokens than the
    text has UTF-8 bytes, plus the few they add themselves (BOS, a prefix space)."""
    bound = len(request.prompt.encode("utf-8", "surrogatepass")) + ADDED_TOKENS_ALLOWANCE
    total, max_input = length_limits(request, info)
    if bound + request.settings.max_new_tokens <= total and bound <= (max_input or total):
        return bound
    return None


def length_limits(request: GenerationRequest, info: dict[str, Any]) -> tuple[int, int | None]:
    """TGI's length limits from /info: max_total_tokens (else the model's context) and the prompt's own limit,
    max_input_tokens (max_input_length before 2.1), if it says one."""
    total = _int(info.get("max_total_tokens")) or request.model.variant.context_length
    return total, _int(info.get("max_input_tokens")) or _int(info.get("max_input_length"))


def check_tgi_grammar(schema: dict[str, Any] | None, endpoint: Endpoint) -> None:
    """Refuses, before sending, a JSON schema that TGI's grammar validation refuses.

    router/src/validation.rs (from 2.3.0): a `json` / `json_schema` grammar must validate against the
    2020-12 meta-schema (checked when the schema is read) and have a top-level `properties` key, so an
    array schema, or an object described only by `$ref`, `anyOf` or `additionalProperties`, is refused.
    """
    if schema is not None and "properties" not in schema:
        kind = schema.get("type")
        raise EngineError(
            "err_schema_tgi_properties",
            endpoint=endpoint_name(endpoint),
            kind=kind if isinstance(kind, str) else "–",
        )


async def _read_error_body(response: httpx2.Response) -> None:
    # hf_raise_for_status() quotes the body of a failed response; a streamed one must be read first.
    if response.status_code >= 400:
        await response.aread()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class TgiEngine(Engine):
    """One TGI server (an Endpoint of type `tgi`); serves every catalog build that points at it."""

    name = "tgi"

    def label(self, model: ModelRef) -> str:
        return endpoint_name(self.endpoint)

    def __init__(self, endpoint: Endpoint, first_token_timeout_s: float | None = None, strip_v1: bool = False) -> None:
        self.endpoint = endpoint
        #: the endpoint's URL may end in /v1 (an OpenAI-compatible endpoint that turned out to be TGI)
        self._strip_v1 = strip_v1
        self._timeout_override = first_token_timeout_s
        self._http = LoopBound(self._new_http)
        self._info: dict[str, Any] | None = None
        self._info_at = 0.0

    # ---- plumbing ----------------------------------------------------------------------------
    @property
    def timeout_s(self) -> float:
        return self._timeout_override if self._timeout_override else remote_timeout_s()

    def _new_http(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            event_hooks={"request": [auth_hook(self.endpoint)], "response": [_read_error_body]},
            # a redirect could carry the request (and a header added above us) to another host
            follow_redirects=False,
            # our own deadlines (Watchdog) come first; these only bound what they cannot see
            timeout=httpx2.Timeout(self.timeout_s + 5, connect=SIDE_TIMEOUT_S),
            limits=httpx2.Limits(max_connections=512, max_keepalive_connections=64),
        )

    def _url(self) -> str:
        url = self.endpoint.url()
        if not url:
            raise EngineError(
                "err_remote_not_configured", endpoint=endpoint_name(self.endpoint), env=self.endpoint.url_env
            )
        if self._strip_v1:
            url = url.split("?", 1)[0].rstrip("/")
            url = url[: -len("/v1")] if url.endswith("/v1") else url
        return url

    def _route(self, url: str, path: str) -> str:
        return url.split("?", 1)[0].rstrip("/") + path

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- server facts ------------------------------------------------------------------------
    async def server_info(self) -> dict[str, Any]:
        """GET /info, cached per engine for a few minutes; {} when the server does not answer it."""
        if self._info is not None and time.monotonic() - self._info_at < INFO_TTL_S:
            return self._info
        url = self._url()
        try:
            response = await self._http.get().get(self._route(url, "/info"), timeout=SIDE_TIMEOUT_S)
        except httpx2.ConnectError as exc:
            raise EngineError("err_remote_unreachable", endpoint=endpoint_name(self.endpoint)) from exc
        except httpx2.HTTPError:
            return {}
        if response.status_code != 200:
            return {}
        try:
            info = response.json()
        except ValueError:
            return {}
        if not isinstance(info, dict):
            return {}
        self._info, self._info_at = info, time.monotonic()
        return info

    async def _tokenize(self, text: str) -> int | None:
        """Exact prompt length from POST /tokenize (the server's own tokenizer), or None."""
        try:
            response = await self._http.get().post(
                self._route(self._url(), "/tokenize"), json={"inputs": text}, timeout=SIDE_TIMEOUT_S
            )
            tokens = response.json() if response.status_code == 200 else None
        except (httpx2.HTTPError, ValueError):
            return None
        return len(tokens) if isinstance(tokens, list) else None

    async def count_tokens(self, model: ModelRef, text: str) -> int | None:
        return await self._tokenize(text)

    def context_length(self, model: ModelRef) -> int:
        info = self._info or {}
        return _int(info.get("max_total_tokens")) or model.variant.context_length

    def _check_fits(self, request: GenerationRequest, prompt_tokens: int, info: dict[str, Any]) -> None:
        """Refuses, before sending, what TGI's validation would refuse for length."""
        check_context(prompt_tokens, request.settings.max_new_tokens, *length_limits(request, info))

    # ---- generation --------------------------------------------------------------------------
    def _timeout_error(self, first: bool) -> EngineError:
        key = "err_remote_timeout" if first else "err_remote_stalled"
        return EngineError(key, endpoint=endpoint_name(self.endpoint), seconds=round(self.timeout_s, 1))

    def _map_error(self, exc: BaseException, got_token: bool) -> EngineError:
        name = endpoint_name(self.endpoint)
        if isinstance(exc, TextGenerationError):
            kind = {
                OverloadedError: "overloaded",
                ValidationError: "validation",
                GenerationError: "generation",
                IncompleteGenerationError: "incomplete_generation",
                UnknownError: "unknown",
            }.get(type(exc), "unknown")
            if kind == "unknown":
                # huggingface_hub 2.4 maps error types it does not know (TGI >= 2.3's
                # incomplete_generation_stream) to UnknownError; TGI's wording still says which it was
                kind = error_type_from_message(str(exc)) or kind
            return classify_error(self.endpoint, None, str(exc), kind)
        if isinstance(exc, HfHubHTTPError) and exc.response is not None:
            status = exc.response.status_code
            try:
                body = exc.response.text
            except httpx2.ResponseNotRead:
                body = ""
            # the body, never str(exc): that quotes the request URL, which may carry credentials
            return classify_error(self.endpoint, status, body)
        if isinstance(exc, InferenceTimeoutError | httpx2.TimeoutException):
            return self._timeout_error(first=not got_token)
        if isinstance(exc, httpx2.ConnectError):
            return EngineError("err_remote_unreachable", endpoint=name)
        if isinstance(exc, httpx2.TransportError | httpx2.StreamError):
            # the server (or a proxy) dropped the connection without TGI's last event
            return EngineError("err_remote_cut", endpoint=name)
        if isinstance(exc, ValueError | KeyError | TypeError | AttributeError):
            # an event that is not JSON, or JSON without TGI's fields
            return EngineError("err_remote_malformed", endpoint=name, kind="TGI")
        return EngineError("err_internal", detail=scrub(type(exc).__name__, self.endpoint))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextDelta | Status | EngineDone]:
        url = self._url()
        settings = request.settings
        loop = asyncio.get_running_loop()
        timeout = self.timeout_s
        got_token = False
        check_tgi_grammar(request.json_schema, self.endpoint)
        watchdog = Watchdog(request.cancel, lambda: self._timeout_error(first=not got_token))
        try:
            try:
                info = await watchdog.guard(self.server_info(), None)
                # a prompt that fits even at one token per byte needs no count from the server (a round trip
                # per answer); the server's own count comes back in the last event (input_length)
                bound = surely_fits(request, info)
                counted = None if bound is not None else await watchdog.guard(self._tokenize(request.prompt), None)
            except Stopped:
                yield EngineDone("stopped", None, 0)
                return
            # an estimate that errs high: refusing a borderline prompt beats a server-side rejection
            prompt_tokens = counted if counted is not None else estimate_tokens(request.prompt)
            if bound is None:
                self._check_fits(request, prompt_tokens, info)
            known_prompt_tokens = counted if bound is None else None  # an unmeasured bound is not a count
            max_stop = _int(info.get("max_stop_sequences")) or DEFAULT_MAX_STOP_SEQUENCES
            params = tgi_parameters(settings, request.json_schema, max_stop)
            trimmer = StopTrimmer(settings.stop)

            client = AsyncInferenceClient(base_url=url, api_key=self.endpoint.token(), timeout=timeout + 5)
            if "_async_client" not in vars(client):
                # fail closed: without our transport the client would send HF_TOKEN and refuse offline mode
                raise EngineError("err_internal", detail="huggingface_hub AsyncInferenceClient changed; pin 2.4.0")
            client._async_client = self._http.get()  # see the module docstring: offline mode and token safety
            first_deadline = loop.time() + timeout
            stream_iter: Any = None
            final_seen = False
            finish: str | None = None
            generated_tokens: int | None = None
            input_length: int | None = None
            seen = 0
            unshown = 0  # tokens whose text the trimmer still holds
            probs: list[TokenProb] = []  # and their probabilities
            try:
                try:
                    stream = await watchdog.guard(
                        client.text_generation(request.prompt, stream=True, details=True, **params), first_deadline
                    )
                    stream_iter = stream.__aiter__()
                    while True:
                        deadline = loop.time() + timeout if got_token else first_deadline
                        try:
                            item = await watchdog.guard(stream_iter.__anext__(), deadline)
                        except StopAsyncIteration:
                            break
                        got_token = True
                        seen += 1
                        unshown += 1
                        if not item.token.special:  # the EOS token (`</s>`, `<|im_end|>`) is no answer text
                            if settings.top_tokens and (prob := stream_token_prob(item)) is not None:
                                probs.append(prob)
                            text = trimmer.feed(item.token.text)
                            if text:
                                yield TextDelta(text, unshown, tuple(probs))
                                unshown = 0
                                probs = []
                        if item.details is not None:
                            finish = str(item.details.finish_reason)
                            generated_tokens = item.details.generated_tokens
                            input_length = item.details.input_length
                        if item.details is not None or item.generated_text is not None:
                            final_seen = True
                        elif trimmer.hit:
                            # a stop sequence beyond the server's limit: end here, closing makes TGI stop
                            finish = "stop_sequence"
                            break
                except Stopped:
                    finish = "stopped"
                except EngineError:
                    raise
                except Exception as exc:
                    raise self._map_error(exc, got_token) from None
            finally:
                if stream_iter is not None:
                    with contextlib.suppress(Exception):
                        await stream_iter.aclose()
                # closes the HTTP response; an unfinished one takes its connection with it
                await client.close()
        finally:
            watchdog.close()

        if finish == "stopped":
            yield EngineDone("stopped", input_length or known_prompt_tokens, seen)
            return
        rest = trimmer.flush()
        if rest or probs:
            yield TextDelta(rest, unshown, tuple(probs))
        if not final_seen and not trimmer.hit:
            raise EngineError("err_remote_cut", endpoint=endpoint_name(self.endpoint))
        yield EngineDone(
            finish or "unknown", input_length or known_prompt_tokens or prompt_tokens, generated_tokens or seen
        )

    # ---- status ------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """GET /health and GET /info: whether the server is up and what it serves. No secrets in it."""
        out: dict[str, Any] = {
            "ok": False,
            "model_id": None,
            "version": None,
            "max_total_tokens": None,
            "error": None,
            "error_params": {},
        }
        name = endpoint_name(self.endpoint)
        url = self.endpoint.url()
        if not url:
            out["error"] = "err_remote_not_configured"
            out["error_params"] = {"endpoint": name, "env": self.endpoint.url_env}
            return out
        http = self._http.get()
        try:
            health = await http.get(self._route(url, "/health"), timeout=SIDE_TIMEOUT_S)
            info_response = await http.get(self._route(url, "/info"), timeout=SIDE_TIMEOUT_S)
        except httpx2.ConnectError:
            out["error"], out["error_params"] = "err_remote_unreachable", {"endpoint": name}
            return out
        except httpx2.TimeoutException:
            out["error"], out["error_params"] = "err_remote_timeout", {"endpoint": name, "seconds": SIDE_TIMEOUT_S}
            return out
        except httpx2.HTTPError:
            out["error"], out["error_params"] = "err_remote_cut", {"endpoint": name}
            return out
        if info_response.status_code == 200:
            try:
                info = info_response.json()
            except ValueError:
                info = None
            if isinstance(info, dict):
                self._info, self._info_at = info, time.monotonic()
                out["model_id"] = info.get("model_id")
                out["version"] = info.get("version")
                out["max_total_tokens"] = _int(info.get("max_total_tokens"))
        if health.status_code == 200:
            out["ok"] = True
        else:
            out["error"] = "err_remote_unhealthy"
            out["error_params"] = {"endpoint": name, "status": health.status_code}
        return out
