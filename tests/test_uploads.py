"""Uploads within bounds (components/serving/uploads.py): a per-visitor budget of files and bytes per time window and a
total cap on the upload folder, replaying a hostile probe (one address kept 229 MB of uploads in 0.8 s).

Fast tests drive the middleware in front of a small stand-in of Gradio's upload route; slow ones the real app.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from components.serving import uploads
from components.serving.limits import RateLimitError
from components.serving.uploads import UploadBudget, UploadFolder, UploadGuardMiddleware, parse_upload_budget
from components.vocabulary.messages import MESSAGES, t
from tests.app_server import RunningApp, running_app

UPLOAD_VARS = ("PLAYGROUND_UPLOAD_BUDGET", "PLAYGROUND_UPLOAD_TOTAL_MB", "PLAYGROUND_PUBLIC", "SPACE_ID")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in UPLOAD_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ---- the variables ---------------------------------------------------------------------------------------------
def test_the_budget_and_the_cap_in_the_public_profile_and_explicit_variables_win(clean_env: pytest.MonkeyPatch) -> None:
    assert parse_upload_budget("20 files / 20 MB per 10 min") == UploadBudget(20, 20_000_000, 600)
    assert parse_upload_budget("5 files/500kb/30s") == UploadBudget(5, 500_000, 30)
    assert parse_upload_budget("1 file / 1 GB per hour") == UploadBudget(1, 1_000_000_000, 3600)
    assert parse_upload_budget("off") is None
    with pytest.raises(RateLimitError):
        parse_upload_budget("20 MB")
    assert uploads.upload_budget() is None and uploads.upload_total_bytes() is None
    clean_env.setenv("PLAYGROUND_PUBLIC", "1")
    assert uploads.upload_budget() == UploadBudget(20, 20_000_000, 600)
    assert uploads.upload_total_bytes() == 200_000_000
    clean_env.setenv("PLAYGROUND_UPLOAD_BUDGET", "off")
    clean_env.setenv("PLAYGROUND_UPLOAD_TOTAL_MB", "50")
    assert uploads.upload_budget() is None and uploads.upload_total_bytes() == 50_000_000
    clean_env.setenv("PLAYGROUND_UPLOAD_BUDGET", "lots")
    with pytest.raises(RateLimitError, match="PLAYGROUND_UPLOAD_BUDGET"):
        uploads.upload_budget()
    for key in ("err_upload_budget", "err_upload_too_large", "err_upload_folder_full"):
        assert set(MESSAGES[key]) == {"de", "en"}


# ---- the folder's cap ------------------------------------------------------------------------------------------
def put(folder: Path, name: str, size: int, age_s: float, top_level: bool = False) -> Path:
    path = folder / name if top_level else folder / f"hash-{name}" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"x" * size)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_room_is_made_by_removing_the_oldest_uploads_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    oldest = put(tmp_path, "a.txt", 400, 300)
    older = put(tmp_path, "b.txt", 400, 200)
    newer = put(tmp_path, "c.txt", 400, 100)
    writing = put(tmp_path, "tmpupload", 400, 0, top_level=True)  # an upload in progress writes it now
    folder = UploadFolder(tmp_path, cap_bytes=2000)
    walks = []
    files = folder.files
    monkeypatch.setattr(folder, "files", lambda: walks.append(1) or files())
    # 1 600 kept + 700 > 2 000: the oldest go until 90 % of the cap is used (the next walk is not the next upload)
    first = folder.make_room(700)
    assert first is not None and len(walks) == 1
    assert not oldest.exists() and not oldest.parent.exists()  # its folder too
    assert not older.exists() and newer.exists() and writing.exists()
    # 800 kept + 700 reserved + 500 fit: no walk
    second = folder.make_room(500)
    assert second is not None and len(walks) == 1 and newer.exists()
    # no room even after the old file went: a file still being written is never removed
    assert folder.make_room(1000) is None and len(walks) == 2
    assert not newer.exists() and writing.exists()
    folder.release(first)
    folder.release(second)
    assert folder.make_room(100) is not None and len(walks) == 2  # what was reserved counts as kept until a walk
    assert folder.make_room(1000) is not None and len(walks) == 3 and folder.used() == 400


# ---- the middleware, in front of a stand-in for Gradio's upload route ------------------------------------------
def stand_in(folder: Path) -> Starlette:
    """Saves every file of a multipart body into a folder of its own, like Gradio's /gradio_api/upload."""

    async def upload(request: Request) -> JSONResponse:
        form = await request.form(max_files=1000)
        saved = []
        for item in form.getlist("files"):
            target = folder / os.urandom(8).hex() / str(item.filename)
            target.parent.mkdir()
            target.write_bytes(await item.read())
            saved.append(str(target))
        return JSONResponse(saved)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse(["ok"])

    return Starlette(routes=[Route("/gradio_api/upload", upload, methods=["POST"]), Route("/models", models)])


def guarded(folder: Path, budget: str, total: int | None = None) -> UploadGuardMiddleware:
    return UploadGuardMiddleware(stand_in(folder), parse_upload_budget(budget), total, folder)


def client(app: Any, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://playground")


def files(*sizes: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"quelle-{i}.txt", b"a" * size, "text/plain")) for i, size in enumerate(sizes)]


async def test_a_visitor_over_the_budget_is_refused_and_another_is_not(tmp_path: Path) -> None:
    app = guarded(tmp_path, "3 files / 10 KB per 60 s")
    async with client(app, "203.0.113.5") as attacker, client(app, "198.51.100.7") as other:
        for _ in range(3):
            assert (await attacker.post("/gradio_api/upload", files=files(1000))).status_code == 200
        refused = await attacker.post("/gradio_api/upload", files=files(1000))
        assert refused.status_code == 429
        assert refused.json()["error"] == t(
            "err_upload_budget", "de", files=3, mb=0, window="1 min", retry=int(refused.headers["retry-after"])
        )
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        english = await attacker.post("/gradio_api/upload?lang=en", files=files(10))
        assert english.status_code == 429 and english.json()["error"].startswith("Too many uploads")
        assert (await other.post("/gradio_api/upload", files=files(1000))).status_code == 200
        assert (await attacker.get("/models")).status_code == 200  # only uploads are counted
    saved = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(saved) == 4


async def test_many_files_in_one_body_and_a_body_without_length_are_counted_as_they_arrive(tmp_path: Path) -> None:
    app = guarded(tmp_path, "3 files / 10 KB per 60 s")
    async with client(app, "203.0.113.6") as many:
        refused = await many.post("/gradio_api/upload", files=files(10, 10, 10, 10, 10))
        assert refused.status_code == 429, "five files in one body passed a budget of three"
    body = httpx.Client().build_request("POST", "http://x/", files=files(6000, 6000)).read()
    boundary = body.split(b"\r\n", 1)[0][2:].decode()

    async def chunks() -> Any:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    async with client(app, "203.0.113.7") as chunked:
        response = await chunked.post(
            "/gradio_api/upload",
            content=chunks(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 429, "12 KB without Content-Length passed a budget of 10 KB"
    async with client(app, "203.0.113.8") as large:
        too_large = await large.post("/gradio_api/upload", files=files(20_000))
        assert too_large.status_code == 413 and "MB" in too_large.json()["error"]


async def test_the_upload_folder_never_grows_past_its_cap(tmp_path: Path) -> None:
    cap = 10_000
    app = guarded(tmp_path, "100 files / 1 MB per 60 s", total=cap)
    sizes = []
    for visitor in range(12):
        async with client(app, f"203.0.113.{visitor}") as each:
            response = await each.post("/gradio_api/upload", files=files(2000))
            assert response.status_code == 200, response.text
            (saved,) = response.json()
            os.utime(saved, (time.time() - 100 + visitor, time.time() - 100 + visitor))
            sizes.append(sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()))
    assert max(sizes) <= cap
    left = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert len(left) == 4  # the four newest of 2 000 bytes (each request also reserves its multipart framing)


# ---- the real app ----------------------------------------------------------------------------------------------
CAP_MB = 3


@pytest.fixture(scope="module")
def public_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The public profile behind a (same-host) proxy whose X-Forwarded-For tells visitors apart."""
    runtime = tmp_path_factory.mktemp("runtime")
    env = {
        "PLAYGROUND_PUBLIC": "1",
        "PLAYGROUND_TEMP_DIR": str(runtime),
        "PLAYGROUND_TRUSTED_PROXIES": "1",
        "PLAYGROUND_TRUSTED_PROXY_IPS": "127.0.0.1",
        "PLAYGROUND_UPLOAD_TOTAL_MB": str(CAP_MB),
    }
    with running_app(env) as app:
        app.runtime = runtime  # type: ignore[attr-defined]
        yield app


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != ".lock")


@pytest.mark.slow
def test_the_upload_probe_stops_at_the_budget_and_others_go_on(public_app: RunningApp) -> None:
    """One address uploads 900 KB files as fast as it can: the 21st is refused (the public budget: 20 files / 20 MB
    per 10 min) with the message in German; another visitor still uploads and is answered; the upload folder stays
    within PLAYGROUND_UPLOAD_TOTAL_MB throughout."""
    url = public_app.url
    runtime: Path = public_app.runtime  # type: ignore[attr-defined]
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    payload = os.urandom(900_000)
    largest = 0
    accepted = 0
    start = time.monotonic()
    with httpx.Client(timeout=30) as http:
        for i in range(40):
            response = http.post(f"{url}/gradio_api/upload", files={"files": (f"q{i}.txt", payload)}, headers=attacker)
            largest = max(largest, folder_bytes(runtime))
            if response.status_code != 200:
                break
            accepted += 1
        elapsed = time.monotonic() - start
        assert accepted == 20, f"{accepted} uploads of 900 KB accepted from one address"
        assert response.status_code == 429
        assert response.json()["error"].startswith("Zu viele Uploads: höchstens 20 Dateien und 20 MB in 10 min.")
        assert int(response.headers["retry-after"]) >= 1
        other = {"X-Forwarded-For": "198.51.100.23"}
        t0 = time.monotonic()
        mine = http.post(f"{url}/gradio_api/upload", files={"files": ("quelle.txt", b"Hallo")}, headers=other)
        models = http.post(f"{url}/gradio_api/call/models", json={"data": ["de"]}, headers=other)
        answered_in = time.monotonic() - t0
        assert mine.status_code == 200 and Path(mine.json()[0]).read_text() == "Hallo"
        assert models.status_code == 200 and answered_in < 1.5
        largest = max(largest, folder_bytes(runtime))
    assert largest <= CAP_MB * 1_000_000, f"the upload folder grew to {largest} bytes"
    print(f"probe: {accepted} accepted, refused after {elapsed:.2f} s; folder at most {largest} bytes")


@pytest.mark.slow
def test_many_visitors_never_fill_the_upload_folder(public_app: RunningApp) -> None:
    """Twenty addresses upload 900 KB each at once: every one within its budget, the folder never past its cap
    (the oldest files go first); a refusal when it is full says so."""
    url = public_app.url
    runtime: Path = public_app.runtime  # type: ignore[attr-defined]
    payload = os.urandom(900_000)
    stop = False
    largest = 0

    async def watch() -> None:
        nonlocal largest
        while not stop:
            largest = max(largest, await asyncio.to_thread(folder_bytes, runtime))
            await asyncio.sleep(0.01)

    async def one(http: httpx.AsyncClient, n: int) -> httpx.Response:
        headers = {"X-Forwarded-For": f"192.0.2.{n}"}
        return await http.post(f"{url}/gradio_api/upload", files={"files": (f"v{n}.txt", payload)}, headers=headers)

    async def main() -> list[httpx.Response]:
        nonlocal stop
        watcher = asyncio.ensure_future(watch())
        async with httpx.AsyncClient(timeout=60) as http:
            answers = list(await asyncio.gather(*(one(http, n) for n in range(20))))
        stop = True
        await watcher
        return answers

    answers = asyncio.run(main())
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 3, statuses
    for refused in (a for a in answers if a.status_code == 503):
        assert json.loads(refused.text)["error"] == t("err_upload_folder_full", "de")
    assert largest <= CAP_MB * 1_000_000, f"the upload folder grew to {largest} bytes"
