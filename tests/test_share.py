"""Shared results: what a share holds (and never holds), blind rounds only after their vote, caps, expiry, rate,
the public profile's switch, the read-only page (hostile answers stay text) and its route in both languages."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from components.features import share as sharing
from components.features.compare import PaneResult, Round, VoteLog
from components.features.share import SHARE_ID, Expired, Found, ShareStore, shareable, snapshot
from components.serving.limits import RateLimited
from components.vocabulary.generation import InputError
from components.vocabulary.messages import MESSAGES, t

STATS = {
    "finish_reason": "stop",
    "prompt_tokens": 12,
    "completion_tokens": 7,
    "ttft_s": 0.12,
    "total_s": 0.5,
    "tokens_per_s": 14.0,
    "server_url": "http://10.0.0.7:8080/?key=hf_abcdefghijklmnopqrstuvwxyz0123",
}
HOSTILE = (
    "Hier ist ein Formular: <form action=https://evil.example><input name=pw><button>OK</button></form>\n\n"
    "<script>alert(1)</script> <img src=x onerror=alert(2)> ![pixel](https://evil.example/p.png) "
    "[klick](javascript:alert(3)) [quelle](https://example.org/a)"
)
RAW_PROMPT = "<|im_start|>system\nGEHEIMER BETREIBERPROMPT<|im_end|>"


def visitor(host: str = "203.0.113.9") -> Any:
    return SimpleNamespace(headers={}, client=SimpleNamespace(host=host), session_hash="s-1", query_params={})


def pane(i: int, model: str, text: str = "Berlin ist die Hauptstadt.", **extra: Any) -> PaneResult:
    p = PaneResult(
        pane=i,
        model_id=model,
        model_label=model.split("/")[0].title(),
        system_prompt="Du bist ein hilfreicher Assistent.",
        settings={"temperature": 0.2, "max_new_tokens": 64, "stop": ["USER:"], "seed": None},
        raw_prompt=RAW_PROMPT,
        text=text,
        stats=dict(STATS),
        elapsed_s=0.5,
        done=True,
    )
    for key, value in extra.items():
        setattr(p, key, value)
    return p


def open_round(prompt: str = "Was ist die Hauptstadt von Deutschland?", **kw: Any) -> Round:
    return Round(prompt, [pane(0, "alpha/q", **kw), pane(1, "beta/q")], shared_settings={"temperature": 0.2})


def blind_round(session: str | None = None) -> Round:
    r = Round("Wer schreibt besser?", [pane(0, "alpha/q"), pane(1, "beta/q")], blind=True, revealed=False)
    r.session = session
    return r


@pytest.fixture
def store(tmp_path: Path) -> ShareStore:
    return ShareStore(tmp_path / "shares", rate="off")


# ---- what a share holds -------------------------------------------------------------------------------------
def test_a_share_holds_what_the_visitor_saw_and_no_raw_prompt_token_url_or_viewer() -> None:
    r = open_round()
    r.panes[1].error = "Der Server tgi hat … https://10.0.0.7:8080/generate?token=hf_abcdefghijklmnopqrstuvwxyz0123"
    r.panes[1].error_by_lang = {"de": r.panes[1].error, "en": "The server tgi … https://10.0.0.7:8080/x"}
    data, blob = snapshot([r], 512_000)
    text = blob.decode()
    [shown] = data["rounds"]
    assert shown["prompt"] == r.prompt and shown["panes"][0]["text"] == r.panes[0].text
    assert shown["panes"][0]["model_id"] == "alpha/q" and shown["panes"][0]["stats"]["completion_tokens"] == 7
    assert shown["panes"][0]["system_prompt"] == "Du bist ein hilfreicher Assistent."
    for secret in ("GEHEIMER", "im_start", "hf_abc", "10.0.0.7", "server_url", "viewer", "s-1", "203.0.113"):
        assert secret not in text, secret
    assert "[URL]" in shown["panes"][1]["error"]["de"]


def test_a_prompt_sets_own_system_prompt_never_leaves_the_server() -> None:
    """The page never shows a prompt set's system prompt (a session's rounds): a share must not either."""
    r = blind_round(session="sess-1")
    r.winner, r.revealed = "A", True
    data, _ = snapshot([r], 512_000)
    assert all(p["system_prompt"] is None for p in data["rounds"][0]["panes"])


def test_language_and_register_notes_are_kept_from_the_answer() -> None:
    r = open_round()
    r.panes[0].stats["language"] = {"code": "en", "de_share": 0.12, "junk": {"nested": 1}}
    r.panes[1].register = "Sie"  # type: ignore[attr-defined]
    data, _ = snapshot([r], 512_000)
    first, second = data["rounds"][0]["panes"]
    assert first["language"] == {"code": "en", "de_share": 0.12} and second["register"] == "Sie"


def test_a_blind_round_is_never_shared_before_its_vote(tmp_path: Path) -> None:
    r = blind_round()
    for rounds, key in (([], "err_share_nothing"), ([r], "err_share_before_vote")):
        with pytest.raises(InputError) as refused:
            shareable(rounds)
        assert refused.value.key == key
    running = open_round()
    running.panes[1].done = False
    with pytest.raises(InputError, match="err_share_not_done"):
        shareable([running])
    store = ShareStore(tmp_path / "s", rate="off")
    with pytest.raises(InputError, match="err_share_before_vote"):
        store.create([r], visitor())
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").iterdir())


async def test_after_the_vote_the_share_reveals_the_models(tmp_path: Path) -> None:
    r = blind_round()
    await VoteLog(tmp_path / "votes.jsonl").vote(r, "B", "viewer-1")
    store = ShareStore(tmp_path / "s", rate="off")
    found = store.get(store.create([r], visitor()))
    assert isinstance(found, Found)
    shown = found.data["rounds"][0]
    assert shown["winner"] == "B" and [p["model_id"] for p in shown["panes"]] == ["alpha/q", "beta/q"]


def test_a_sessions_unvoted_rounds_are_left_out(store: ShareStore) -> None:
    voted, unanswered, last = blind_round("s"), blind_round("s"), blind_round("s")
    voted.winner = last.winner = "A"
    voted.revealed = last.revealed = True
    found = store.get(store.create([voted, unanswered, last], visitor()))
    assert isinstance(found, Found) and len(found.data["rounds"]) == 2 and found.data["omitted"] == 1


# ---- the store ----------------------------------------------------------------------------------------------
def test_ids_are_unguessable_and_a_second_click_gives_the_same_link(tmp_path: Path) -> None:
    store = ShareStore(tmp_path, rate="1/hour")
    r = open_round()
    first = store.create([r], visitor())
    assert SHARE_ID.fullmatch(first) and len(first) == 22
    assert store.create([r], visitor()) == first  # not a second share, and no second token of the rate
    other = store.create([open_round()], visitor("198.51.100.1"))
    assert other != first
    with pytest.raises(RateLimited):
        store.create([open_round()], visitor())
    assert len(list(tmp_path.glob("*.json"))) == 2


@pytest.mark.parametrize("share_id", ["", "../../etc/passwd", "a" * 21, "a" * 23, "abc/def" * 3 + "a", None, 7])
def test_malformed_or_unknown_ids_are_unknown(store: ShareStore, share_id: Any) -> None:
    assert store.get(share_id) is None
    assert store.get("A" * 22) is None


def test_a_share_expires_its_content_is_dropped_and_the_link_says_so(tmp_path: Path) -> None:
    start = time.time()
    now = [start]
    store = ShareStore(tmp_path, days=2, rate="off", clock=lambda: now[0])
    share_id = store.create([open_round()], visitor())
    assert isinstance(store.get(share_id), Found)
    now[0] += 2 * 86400 + 1
    found = store.get(share_id)
    assert isinstance(found, Expired) and found.at == pytest.approx(start + 2 * 86400, abs=2)
    assert not (tmp_path / f"{share_id}.json").exists(), "an expired share's content must be gone"
    assert "Berlin" not in "".join(p.read_text() for p in tmp_path.iterdir())
    assert isinstance(store.get(share_id), Expired)
    now[0] += sharing.TOMBSTONE_DAYS * 86400 + 10
    with store._lock:
        store.sweep()
    assert store.get(share_id) is None and list(tmp_path.iterdir()) == []


def test_the_sweep_drops_expired_content_without_anyone_opening_it(tmp_path: Path) -> None:
    now = [time.time()]
    store = ShareStore(tmp_path, days=1, rate="off", clock=lambda: now[0])
    old = store.create([open_round()], visitor())
    past = time.time() - 2 * 86400
    os.utime(tmp_path / f"{old}.json", (past, past))
    now[0] += sharing.CREATE_SWEEP_S + 1  # the next share reads the folder again
    store.create([open_round("Noch eine Frage?")], visitor())
    assert not (tmp_path / f"{old}.json").exists() and isinstance(store.get(old), Expired)


def test_a_long_comparison_keeps_its_latest_rounds_and_one_too_large_is_refused(store: ShareStore) -> None:
    rounds = [open_round(f"Frage {i}?", text="x" * 20_000) for i in range(6)]
    data, blob = snapshot(rounds, 70_000)
    assert len(blob) <= 70_000 and data["omitted"] == 3
    assert [r["prompt"] for r in data["rounds"]] == ["Frage 3?", "Frage 4?", "Frage 5?"]
    with pytest.raises(InputError) as refused:
        snapshot([open_round(text="y" * 40_000)], 30_000)
    assert refused.value.key == "err_share_too_large" and refused.value.params["limit"] == 30


def test_the_store_refuses_beyond_its_total_size(tmp_path: Path) -> None:
    _, blob = snapshot([open_round(text="z" * 2_000)], 512_000)
    store = ShareStore(tmp_path, max_total_bytes=len(blob) * 5 // 2, rate="off")
    store.create([open_round(text="z" * 2_000)], visitor())
    store.create([open_round("Zwei?", text="z" * 2_000)], visitor())
    with pytest.raises(InputError, match="err_share_full"):
        store.create([open_round("Drei?", text="z" * 2_000)], visitor())
    assert len(list(tmp_path.glob("*.json"))) == 2


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, True),
        ({"PLAYGROUND_PUBLIC": "1"}, False),
        ({"PLAYGROUND_PUBLIC": "1", "PLAYGROUND_SHARE": "1"}, True),
        ({"PLAYGROUND_SHARE": "0"}, False),
        ({"SPACE_ID": "me/space"}, False),
    ],
)
def test_sharing_is_off_in_the_public_profile_unless_the_operator_turns_it_on(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], on: bool
) -> None:
    for name in ("PLAYGROUND_PUBLIC", "PLAYGROUND_SHARE", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert sharing.sharing_enabled() is on


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLAYGROUND_SHARE_DAYS", "0.5")
    monkeypatch.setenv("PLAYGROUND_SHARE_MAX_KB", "10")
    monkeypatch.setenv("PLAYGROUND_SHARE_TOTAL_MB", "1")
    monkeypatch.setenv("PLAYGROUND_VOTES_FILE", str(tmp_path / "v" / "votes.jsonl"))
    monkeypatch.delenv("PLAYGROUND_SHARE_DIR", raising=False)
    store = ShareStore()
    assert (store.days, store.max_item_bytes, store.max_total_bytes) == (0.5, 10_000, 1_000_000)
    assert store.directory == tmp_path / "v" / "shares"


# ---- the page -----------------------------------------------------------------------------------------------
def test_the_page_shows_hostile_answers_as_text(store: ShareStore) -> None:
    from components.ui.share import share_page

    r = open_round(text=HOSTILE)
    r.panes[0].stats["language"] = {"code": "de", "de_share": 0.97}
    r.panes[1].register = {"form": "Sie", "mixed": False, "system": "du", "kept": False}  # type: ignore[attr-defined]
    found = store.get(store.create([r], visitor()))
    assert isinstance(found, Found)
    page = share_page(found.data, found.expires, "de")
    body = page.split("<body>", 1)[1]
    for element in ("<form", "<input", "<button", "<script", "<img", 'href="javascript:'):
        assert element not in body.lower(), element
    assert "&lt;form action=https://evil.example&gt;" in body and "[klick](javascript:alert(3))" in body
    assert '<a href="https://example.org/a" rel="nofollow noopener noreferrer">quelle</a>' in body
    assert "Sprache: de (97 % Deutsch)" in body and "Anrede: Sie (Systemprompt: du)" in body
    assert "Erstes Token nach" in body
    assert "Register: Sie (System prompt: du)" in share_page(found.data, found.expires, "en")
    assert '<meta name="referrer" content="no-referrer">' in page and '<html lang="de">' in page


@pytest.mark.parametrize(
    ("query", "accept", "lang"),
    [
        (None, None, "de"),
        (None, "en-US,en;q=0.9,de;q=0.8", "en"),
        (None, "fr-FR,fr;q=0.9,de;q=0.5,en;q=0.4", "de"),
        (None, "de;q=0.2, en;q=0.7", "en"),
        (None, "fr", "de"),
        ("en", "de-DE", "en"),
        ("de", "en", "de"),
        ("xx", "en", "de"),
    ],
)
def test_the_page_language_is_the_query_else_accept_language(query: str | None, accept: str | None, lang: str) -> None:
    from components.ui.share import page_language

    assert page_language(query, accept) == lang


def test_the_route_serves_a_share_an_expired_and_an_unknown_link_in_the_visitors_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from components.ui.share import share_routes

    for name in ("PLAYGROUND_PUBLIC", "PLAYGROUND_SHARE", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    now = [time.time()]
    store = ShareStore(tmp_path, days=3, rate="off", clock=lambda: now[0])
    live = store.create([open_round()], visitor())
    old = store.create([open_round("Alt?")], visitor())
    client = TestClient(Starlette(routes=share_routes(lambda: store)))
    page = client.get(f"/share/{live}", headers={"accept-language": "en-GB,en;q=0.9"})
    assert page.status_code == 200 and "Shared model comparison" in page.text and "Berlin ist" in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    now[0] += 3 * 86400 + 5
    with store._lock:
        store.sweep()
    for lang, accept in (("de", "de-DE"), ("en", "en-US")):
        expired = client.get(f"/share/{old}", headers={"accept-language": accept})
        assert expired.status_code == 410
        assert t("share_expired_title", lang) in expired.text and re.search(r"\b3\b", expired.text)
        unknown = client.get("/share/" + "Q" * 22, headers={"accept-language": accept})
        assert unknown.status_code == 404 and t("share_unknown", lang) in unknown.text
    assert t("share_unknown", "en") in client.get("/share/" + "Q" * 22 + "?lang=en").text
    monkeypatch.setenv("PLAYGROUND_SHARE", "0")
    off = client.get(f"/share/{live}?lang=en")
    assert off.status_code == 404 and MESSAGES["err_share_off"]["en"] in off.text and "Berlin" not in off.text


# ---- the page's buttons -------------------------------------------------------------------------------------
def make_link_handler(demo: Any, prefix: str) -> Any:
    """The Share button's handler of the compare tab or the session (by the link box it fills)."""
    return next(
        f.fn
        for f in demo.fns.values()
        if getattr(f.fn, "__qualname__", "") == "wire_share.<locals>.make_link"
        and any(getattr(o, "elem_id", "") == f"{prefix}-share-link" for o in f.outputs)
    )


@pytest.fixture(scope="module")
def demo() -> Any:
    import app
    from components.core.service import EngineRegistry, Playground
    from tests.test_compare import ScriptedEngine, fake_catalog

    cat = fake_catalog()
    return app.build_app(Playground(cat, EngineRegistry(cat, overrides={"llama_cpp": ScriptedEngine()})))


async def test_the_compare_button_refuses_a_blind_round_before_its_vote_on_the_server(
    demo: Any, tmp_path: Path
) -> None:
    """The button is idle before the vote, but the page is not trusted: its event is called as a script would."""
    make_link = make_link_handler(demo, "compare")
    store = ShareStore(tmp_path, rate="off")
    sharing.reset_share_store(store)
    try:
        r = blind_round()
        with pytest.warns(UserWarning, match=re.escape(MESSAGES["err_share_before_vote"]["en"][:40])):
            update = await make_link([r], "en", visitor())
        assert "value" not in update and list(tmp_path.iterdir()) == []
        await VoteLog(tmp_path.parent / "votes.jsonl").vote(r, "tie", "viewer-2")
        update = await make_link([r], "de", visitor())
        assert update["visible"] and re.fullmatch(r"share/[A-Za-z0-9_-]{22}", update["value"])
        saved = json.loads((tmp_path / f"{update['value'].split('/')[1]}.json").read_text())
        assert saved["rounds"][0]["winner"] == "tie"
    finally:
        sharing.reset_share_store()


async def test_the_session_button_shares_the_voted_rounds(demo: Any, tmp_path: Path) -> None:
    from components.ui.arena import SessionRun

    make_link = make_link_handler(demo, "session")
    store = ShareStore(tmp_path, rate="off")
    sharing.reset_share_store(store)
    try:
        r = blind_round("sess")
        run = SessionRun("sess", "german_eval", [], ["alpha/q", "beta/q"], 16, rounds=[r])
        with pytest.warns(UserWarning):
            assert "value" not in await make_link(run, "de", visitor())
        with pytest.warns(UserWarning, match=re.escape(MESSAGES["err_share_nothing"]["de"][:30])):
            await make_link(None, "de", visitor())
        r.winner, r.revealed = "A", True
        update = await make_link(run, "de", visitor())
        assert update["value"].startswith("share/")
    finally:
        sharing.reset_share_store()


async def test_in_the_public_profile_the_button_is_hidden_and_refused_on_the_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import app
    from components.core.service import EngineRegistry, Playground
    from tests.test_compare import ScriptedEngine, fake_catalog

    monkeypatch.setenv("PLAYGROUND_PUBLIC", "1")
    monkeypatch.delenv("PLAYGROUND_SHARE", raising=False)
    cat = fake_catalog()
    public = app.build_app(Playground(cat, EngineRegistry(cat, overrides={"llama_cpp": ScriptedEngine()})))
    buttons = [b for b in public.blocks.values() if getattr(b, "elem_id", None) in ("compare-share", "session-share")]
    assert len(buttons) == 2 and not any(b.visible for b in buttons)
    sharing.reset_share_store(ShareStore(tmp_path, rate="off"))
    try:
        with pytest.warns(UserWarning, match=re.escape(MESSAGES["err_share_off"]["de"][:30])):
            update = await make_link_handler(public, "compare")([open_round()], "de", visitor())
        assert "value" not in update and list(tmp_path.iterdir()) == []
    finally:
        sharing.reset_share_store()
