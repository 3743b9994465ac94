"""Rate limiting (token buckets per visitor), visitor keys behind proxies, and the open/closed API switch."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from components.serving import limits
from components.serving.limits import (
    Rate,
    RateLimited,
    RateLimiter,
    RateLimitError,
    apply_api_policy,
    parse_rate,
    visitor_key,
)
from components.vocabulary.generation import InputError
from components.vocabulary.messages import MESSAGES, t


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- parsing -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20/min", Rate(20, 60)),
        ("20 / minute", Rate(20, 60)),
        ("20/mins", Rate(20, 60)),
        ("5/s", Rate(5, 1)),
        ("5/10s", Rate(5, 10)),
        ("300/hour", Rate(300, 3600)),
        ("1000 per day", Rate(1000, 86400)),
        ("3/1.5min", Rate(3, 90)),
    ],
)
def test_parse_rate(text: str, expected: Rate) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", [None, "", "  ", "0", "off", "none", "0/min"])
def test_parse_rate_off(text: str | None) -> None:
    assert parse_rate(text) is None


@pytest.mark.parametrize("text", ["20", "twenty/min", "20/fortnight", "-1/min", "20/"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(RateLimitError, match=r"N/unit|unknown unit"):
        parse_rate(text)


def test_rate_describe() -> None:
    assert Rate(20, 60).describe() == "20/min"
    assert Rate(5, 10).describe() == "5/10s"
    assert Rate(300, 3600).describe() == "300/hour"


# ---- token bucket --------------------------------------------------------------------------------
def test_bucket_allows_a_burst_then_refuses_with_the_time_to_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Rate(3, 60), clock=clock)
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(RateLimited) as info:
        limiter.check("a")
    # one token refills every 20 s
    assert info.value.retry_after_s == pytest.approx(20.0)
    assert info.value.key == "err_rate_limited"
    assert info.value.params == {"retry": 20, "limit": "3/min"}
    clock.now += 19.9
    with pytest.raises(RateLimited) as info:
        limiter.check("a")
    assert info.value.params["retry"] == 1  # rounded up, never "0 s"
    clock.now += 0.2
    limiter.check("a")  # 20.1 s later one token is back


def test_a_refused_request_takes_no_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Rate(1, 10), clock=clock)
    limiter.check("a")
    for _ in range(50):  # hammering while limited does not push the retry time further out
        assert limiter.retry_after("a") == pytest.approx(10.0 - (clock.now - 1000.0))
        clock.now += 0.1
    assert limiter.retry_after("a") == pytest.approx(5.0)


def test_visitors_have_separate_buckets() -> None:
    limiter = RateLimiter(Rate(1, 60), clock=FakeClock())
    limiter.check("a")
    limiter.check("b")
    with pytest.raises(RateLimited):
        limiter.check("a")


def test_refusal_is_an_input_error_with_a_message_in_both_languages() -> None:
    limiter = RateLimiter(Rate(1, 60), clock=FakeClock())
    limiter.check("a")
    with pytest.raises(InputError) as info:
        limiter.check("a")
    assert set(MESSAGES["err_rate_limited"]) == {"de", "en"}
    de = t(info.value.key, "de", **info.value.params)
    en = t(info.value.key, "en", **info.value.params)
    assert "60 s" in de and "1/min" in de and "erneut" in de
    assert "60 s" in en and "try again" in en


def test_disabled_limiter_allows_everything() -> None:
    limiter = RateLimiter(None)
    assert not limiter.enabled
    for _ in range(1000):
        limiter.check("a")
    assert len(limiter) == 0


def test_memory_stays_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Rate(5, 1), clock=clock, max_visitors=100)
    for i in range(1000):
        limiter.check(f"v{i}")
    assert len(limiter) <= 100
    # visitors gone quiet (bucket full again) are forgotten as new ones arrive
    clock.now += 10
    limiter.check("late")
    assert len(limiter) < 100


def test_thread_safe_count() -> None:
    limiter = RateLimiter(Rate(100, 3600))
    allowed = []

    def worker() -> None:
        for _ in range(50):
            allowed.append(limiter.retry_after("same") == 0.0)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(allowed) == 100


# ---- visitor keys ----------------------------------------------------------------------------------
def request(host: str | None = "10.0.0.1", xff: str | None = None, session: str | None = "s1") -> SimpleNamespace:
    headers = {"x-forwarded-for": xff} if xff is not None else {}
    return SimpleNamespace(headers=headers, client=SimpleNamespace(host=host), session_hash=session)


def test_visitor_key_direct_connection_uses_the_peer_address() -> None:
    # a forged header is ignored when no proxy is trusted
    assert visitor_key(request(xff="1.2.3.4"), proxies=0) == "ip:10.0.0.1"


def test_visitor_key_behind_one_proxy_uses_what_the_proxy_appended() -> None:
    # peers=None: the peer is a trusted proxy (on a Space, or listed in PLAYGROUND_TRUSTED_PROXY_IPS)
    assert visitor_key(request(xff="6.6.6.6, 203.0.113.7"), proxies=1, peers=None) == "ip:203.0.113.7"
    assert visitor_key(request(xff="203.0.113.7"), proxies=1, peers=None) == "ip:203.0.113.7"
    # a visitor cannot escape its bucket by sending its own X-Forwarded-For
    assert visitor_key(request(xff="1.1.1.1, 203.0.113.7"), proxies=1, peers=None) == visitor_key(
        request(xff="2.2.2.2, 203.0.113.7"), proxies=1, peers=None
    )
    # from a peer that is no trusted proxy the header counts for nothing (tests/test_public_profile.py)
    assert visitor_key(request(xff="203.0.113.7"), proxies=1, peers=[]) == "ip:10.0.0.1"


def test_visitor_key_behind_a_proxy_without_header_falls_back_to_the_session() -> None:
    # the peer is the proxy, shared by everyone: never a key
    assert visitor_key(request(xff=None), proxies=1, peers=None) == "session:s1"


def test_visitor_key_without_request() -> None:
    assert visitor_key(None) == "anonymous"
    assert visitor_key(request(host=None, session=None), proxies=0) == "anonymous"


def test_trusted_proxies_default_on_a_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLAYGROUND_TRUSTED_PROXIES", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert limits.trusted_proxies() == 0
    monkeypatch.setenv("SPACE_ID", "someone/playground")
    assert limits.trusted_proxies() == 1
    monkeypatch.setenv("PLAYGROUND_TRUSTED_PROXIES", "2")
    assert limits.trusted_proxies() == 2


def test_process_limiter_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYGROUND_RATE_LIMIT", "2/min")
    monkeypatch.setenv("PLAYGROUND_TRUSTED_PROXIES", "0")
    limits.reset_rate_limiter()
    try:
        limits.check_rate(request())
        limits.check_rate(request())
        with pytest.raises(RateLimited):
            limits.check_rate(request())
        limits.check_rate(request(host="10.0.0.2"))
    finally:
        limits.reset_rate_limiter()


# ---- open or closed API ----------------------------------------------------------------------------
def test_api_open_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLAYGROUND_API_OPEN", raising=False)
    assert limits.api_open()
    for value in ("0", "false", "off", "no"):
        monkeypatch.setenv("PLAYGROUND_API_OPEN", value)
        assert not limits.api_open()
    monkeypatch.setenv("PLAYGROUND_API_OPEN", "1")
    assert limits.api_open()


def test_apply_api_policy_on_the_real_page() -> None:
    import app

    demo = app.build_app(app.create_playground())
    api_only = {fn.api_name for fn in demo.fns.values() if not fn.targets}
    assert {"chat", "models"} <= api_only
    page_events = {fid for fid, fn in demo.fns.items() if fn.targets}

    # open: the API is exactly the gr.api endpoints; page plumbing is hidden
    hidden = apply_api_policy(demo, open_api=True)
    assert api_only.isdisjoint(hidden)
    assert set(demo.get_api_info()["named_endpoints"]) == {f"/{name}" for name in api_only}
    assert all(demo.fns[fid].api_visibility == "private" for fid in page_events)

    # closed: the gr.api endpoints are gone; every page event is still there
    closed = apply_api_policy(demo, open_api=False)
    assert api_only <= set(closed)
    assert set(demo.fns) == page_events
    assert all(fn.api_visibility == "private" for fn in demo.fns.values())
    assert demo.api_open is False
    assert not demo.get_api_info()["named_endpoints"]


def test_max_concurrent_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLAYGROUND_MAX_CONCURRENCY", raising=False)
    assert limits.max_concurrent_events() == 256  # above Gradio's 40, which would queue the 41st stream
    monkeypatch.setenv("PLAYGROUND_MAX_CONCURRENCY", "64")
    assert limits.max_concurrent_events() == 64
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("PLAYGROUND_MAX_CONCURRENCY", bad)
        assert limits.max_concurrent_events() == 256


def test_a_malformed_rate_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    monkeypatch.setenv("PLAYGROUND_RATE_LIMIT", "20/fortnight")
    limits.reset_rate_limiter()
    try:
        with pytest.raises(RateLimitError, match="fortnight"):
            apply_api_policy(SimpleNamespace(fns={}), open_api=True)
    finally:
        limits.reset_rate_limiter()
