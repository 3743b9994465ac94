"""Assembles the Hugging Face Space from the project (space/build/ by default) and optionally uploads it."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPACE_DIR = ROOT / "space"
DEFAULT_OUT = SPACE_DIR / "build"
MARKER = ".space-build"  # marks a folder this script may wipe; never uploaded

#: what the app needs at run time, relative to the project root (components/ and prompts/ are walked)
APP_FILES = ("app.py", "models.yaml", "requirements-offline.txt")  # the pin of the offline model's wheel
PACKAGE_DIRS = ("components", "prompts")  # prompts/: the blind session mode's prompt sets
#: never copied, wherever they turn up
EXCLUDED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".git", "tests", "bench", "build"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".log", ".env", ".gguf", ".safetensors", ".bin")
EXCLUDED_NAMES = {".env", ".DS_Store", MARKER}

#: requirements nothing on CPU hardware imports (the transformers engine is for GPUs)
GPU_ONLY = {"torch", "transformers", "accelerate", "tokenizers"}  # gguf stays: the llama.cpp engine reads headers
#: added for GPU hardware, from requirements-gpu.txt: bitsandbytes (8-bit / 4-bit), xgrammar (JSON on transformers)
GPU_REQUIREMENTS = ROOT / "requirements-gpu.txt"
#: --hf-signin: "Sign in with Hugging Face" (Gradio's OAuth) with the scope that lets a visitor's token call
#: Inference Providers (huggingface.co/docs/hub/spaces-oauth), and gradio[oauth]'s packages, which Gradio imports
#: for it on a Space (gradio/oauth.py: authlib's Starlette client, itsdangerous for the session cookie)
OAUTH_FRONT_MATTER = "hf_oauth: true\nhf_oauth_scopes:\n  - inference-api\n"
OAUTH_REQUIREMENTS = ("authlib==1.9.10", "itsdangerous==2.2.0")


def gpu_extra(path: Path = GPU_REQUIREMENTS) -> tuple[str, ...]:
    """The pinned packages requirements-gpu.txt adds to requirements.txt."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith(("#", "-r")))


@dataclass(frozen=True)
class Hardware:
    """A Space hardware flavor: which requirements it gets (`kind`), its memory and its GPU's memory (GB)."""

    kind: str
    ram_gb: float
    gpu_gb: float | None = None


#: Space hardware flavors (huggingface.co/docs/hub/spaces-gpus); `cpu` and `gpu` name the smallest of each kind
HARDWARE = {
    "cpu-basic": Hardware("cpu", 16),
    "cpu-upgrade": Hardware("cpu", 32),
    "t4-small": Hardware("gpu", 15, 16),
    "t4-medium": Hardware("gpu", 30, 16),
    "l4x1": Hardware("gpu", 30, 24),
    "a10g-small": Hardware("gpu", 15, 24),
    "a10g-large": Hardware("gpu", 46, 24),
    "l40sx1": Hardware("gpu", 62, 48),
    "a100-large": Hardware("gpu", 142, 80),
}
HARDWARE_ALIASES = {"cpu": "cpu-basic", "gpu": "t4-small"}
#: the German families a Space opens on (the seeds: EM German, LeoLM chat), in this order of preference
GERMAN_FAMILIES = ("em-german", "leolm-chat")
#: left for the app, the system and the KV cache estimate's error (GB)
HEADROOM_GB = 2.0
#: transformers kinds a Space can load with requirements-gpu.txt (GPTQ and AWQ need packages it does not pin)
GPU_KINDS = ("fp16", "bf16", "int8", "int4")
#: bytes per parameter on the GPU, with about 20 % for the KV cache and activations
GPU_BYTES = {"fp16": 2.4, "bf16": 2.4, "int8": 1.3, "int4": 0.75}


def flavor(name: str) -> str:
    """The Space hardware flavor for `--hardware` (`cpu`, `gpu` or a flavor name)."""
    name = HARDWARE_ALIASES.get(name, name)
    if name not in HARDWARE:
        raise BuildError(f"unknown hardware {name!r}; one of: {', '.join([*HARDWARE_ALIASES, *HARDWARE])}")
    return name


def _gguf_need_gb(quant: dict[str, Any], variant: dict[str, Any]) -> float:
    """Memory of a GGUF build in llama.cpp: the file plus a KV cache for the whole context (0.5 MB per token for
    a 7B model without grouped-query attention, the largest case; space/README.md has the exact figures)."""
    kv_gb = 0.07 * float(variant["params_b"]) * int(variant["context_length"]) / 1024**2
    return float(quant.get("size_gb") or 0) + kv_gb


def default_build(hardware: str = "cpu-basic", root: Path = ROOT) -> tuple[str, str, list[str] | None]:
    """The German build a Space on `hardware` opens on: `(id, Hub repo, files to preload or None for all)`.

    CPU: the Q4_K_M GGUF of a German family that fits the memory (llama.cpp); GPU: the best transformers build
    that fits the GPU (fp16, else 8-bit, else 4-bit; the 8- and 4-bit builds load the fp16 repository). The
    family author's recommended variant comes first."""
    import yaml

    hw = HARDWARE[flavor(hardware)]
    data = yaml.safe_load((root / "models.yaml").read_text(encoding="utf-8")) or {}
    families = {f["id"]: f for f in data.get("families", [])}
    candidates = []
    for family_id in GERMAN_FAMILIES:
        variants = families.get(family_id, {}).get("variants", [])
        candidates += sorted(variants, key=lambda v: not v.get("recommended", False))
    for variant in candidates:
        quants = {q["id"]: q for q in variant.get("quantizations", [])}
        if hw.kind == "cpu":
            quant = quants.get("gguf-q4_k_m")
            if quant and quant.get("repo") and _gguf_need_gb(quant, variant) + HEADROOM_GB <= hw.ram_gb:
                return f"{variant['id']}/{quant['id']}", quant["repo"], [quant["file"]]
            continue
        for kind in GPU_KINDS:
            quant = next((q for q in quants.values() if q.get("kind") == kind and q.get("repo")), None)
            if quant and float(variant["params_b"]) * GPU_BYTES[kind] <= (hw.gpu_gb or 0):
                return f"{variant['id']}/{quant['id']}", quant["repo"], None
    raise BuildError(f"models.yaml has no German build that fits {hardware}")


def space_models_yaml(build_id: str, root: Path = ROOT) -> str:
    """The project's models.yaml with `default_model` set to `build_id` (comments and order kept)."""
    text = (root / "models.yaml").read_text(encoding="utf-8")
    text, found = re.subn(r"^default_model:.*$", f"default_model: {build_id}", text, count=1, flags=re.MULTILINE)
    if not found:
        raise BuildError("models.yaml has no `default_model:` line")
    return text


SECRET_ENV_VARS = ("HF_TOKEN", "TGI_TOKEN", "OPENAI_API_KEY", "HUGGING_FACE_HUB_TOKEN", "HF_PROVIDERS_TOKEN")
_SECRET_SHAPES = re.compile(r"\bhf_[A-Za-z0-9]{30,}|\bsk-[A-Za-z0-9_-]{20,}")


class BuildError(Exception):
    """The Space cannot be assembled or uploaded; the message says why."""


@dataclass(frozen=True)
class PlannedFile:
    """One file of the Space: where it goes (relative) and where its content comes from."""

    target: str
    source: Path | None = None
    text: str | None = None


def _package_name(line: str) -> str:
    return re.split(r"[\s\[<>=!~;]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def space_requirements(hardware: str = "cpu", root: Path = ROOT, hf_signin: bool = False) -> str:
    """The Space's requirements.txt, derived from the project's pinned requirements.txt."""
    lines = (root / "requirements.txt").read_text(encoding="utf-8").splitlines()
    left_out = " torch, transformers and accelerate are left out: nothing on CPU hardware uses them."
    out = [
        "# Generated by space/build.py from the project's requirements.txt; edit that file, not this one.",
        f"# Hardware: {hardware}." + (left_out if hardware == "cpu" else ""),
        "# Prebuilt wheels only (llama.cpp comes as xllamacpp's CPU wheel): nothing compiles, no extra index.",
    ]
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name = _package_name(line)
        if hardware == "cpu" and name in GPU_ONLY:
            continue
        out.append(line)
    if hardware == "gpu":
        out.extend(gpu_extra())
    if hf_signin:
        out.append("# --hf-signin: Gradio's OAuth (gradio[oauth])")
        out.extend(OAUTH_REQUIREMENTS)
    return "\n".join(out) + "\n"


def _catalog_repos(root: Path) -> list[str]:
    """Hub repositories of the catalog's builds, for the Space card's `models:` (links on the Hub)."""
    import yaml

    data = yaml.safe_load((root / "models.yaml").read_text(encoding="utf-8")) or {}
    repos: list[str] = []
    for family in data.get("families", []):
        for variant in family.get("variants", []):
            for quant in variant.get("quantizations", []):
                repo = quant.get("repo")
                if isinstance(repo, str) and re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
                    repos.append(repo)
    return list(dict.fromkeys(repos))


def space_readme(root: Path = ROOT, hardware: str = "cpu-basic", hf_signin: bool = False) -> str:
    """space/README.md with the catalog's model repositories (`models:`), the default build's files to fetch at
    build time (`preload_from_hub:`, the Hub's convention) and the hardware it is sized for in its front matter;
    with `hf_signin` also `hf_oauth: true` and `hf_oauth_scopes: [inference-api]`."""
    text = (root / "space" / "README.md").read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?\n)---\n", text, re.DOTALL)
    if not match:
        raise BuildError("space/README.md must start with YAML front matter between --- lines")
    front = match.group(1)
    name = flavor(hardware)
    front = re.sub(r"^suggested_hardware:.*$", f"suggested_hardware: {name}", front, flags=re.MULTILINE)
    repos = _catalog_repos(root)
    if repos and not re.search(r"^models:", front, re.MULTILINE):
        front += "models:\n" + "".join(f"  - {repo}\n" for repo in repos)
    if not re.search(r"^preload_from_hub:", front, re.MULTILINE):
        _build_id, repo, files = default_build(name, root)
        front += f"preload_from_hub:\n  - {repo}" + (f" {','.join(files)}" if files else "") + "\n"
    if hf_signin and not re.search(r"^hf_oauth:", front, re.MULTILINE):
        front += OAUTH_FRONT_MATTER
    return f"---\n{front}---\n{text[match.end() :]}"


def _walk(directory: Path) -> Iterable[Path]:
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part in EXCLUDED_PARTS or part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.name not in EXCLUDED_NAMES and not path.name.endswith(EXCLUDED_SUFFIXES):
            yield path


def plan(hardware: str = "cpu", root: Path = ROOT, hf_signin: bool = False) -> list[PlannedFile]:
    """Every file of the Space, in the order written; `hardware`: `cpu`, `gpu` or a Space hardware flavor;
    `hf_signin`: the card and requirements for "Sign in with Hugging Face"."""
    hw = flavor(hardware)
    files = [
        PlannedFile("README.md", text=space_readme(root, hw, hf_signin)),
        PlannedFile("models.yaml", text=space_models_yaml(default_build(hw, root)[0], root)),
    ]
    for name in APP_FILES:
        if name == "models.yaml":
            continue
        source = root / name
        if not source.is_file():
            raise BuildError(f"{name} is missing from {root}")
        files.append(PlannedFile(name, source=source))
    for package in PACKAGE_DIRS:
        for path in _walk(root / package):
            files.append(PlannedFile(str(Path(package) / path.relative_to(root / package)), source=path))
    files.append(PlannedFile("requirements.txt", text=space_requirements(HARDWARE[hw].kind, root, hf_signin)))
    return files


def _secret_values() -> list[str]:
    return [v for v in (os.environ.get(n, "").strip() for n in SECRET_ENV_VARS) if len(v) >= 6]


def check_no_secrets(files: Sequence[PlannedFile]) -> None:
    """Refuses a build that would publish a secret (a token value from the environment, or one's shape)."""
    values = _secret_values()
    for item in files:
        try:
            content = item.text if item.text is not None else item.source.read_text(encoding="utf-8")  # type: ignore[union-attr]
        except UnicodeDecodeError:
            continue
        if any(value in content for value in values) or _SECRET_SHAPES.search(content):
            raise BuildError(f"{item.target} contains what looks like a secret token; not building the Space")


def write(files: Sequence[PlannedFile], out: Path) -> None:
    """Writes the planned files into `out`, replacing an earlier build (only one made by this script)."""
    if out.exists():
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise BuildError(f"{out} exists and was not made by space/build.py; choose an empty or new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by space/build.py; this folder is replaced on every build\n", encoding="utf-8")
    for item in files:
        target = out / item.target
        target.parent.mkdir(parents=True, exist_ok=True)
        if item.text is not None:
            target.write_text(item.text, encoding="utf-8")
        else:
            assert item.source is not None
            shutil.copyfile(item.source, target)


def upload(
    out: Path,
    repo_id: str,
    token: str,
    private: bool = False,
    variables: dict[str, str] | None = None,
    api: Any = None,
) -> str:
    """Creates the Space if needed and uploads `out`; returns the Space's URL. The token is never printed."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id, token=token, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(out),
        repo_type="space",
        token=token,
        commit_message="Update the playground from space/build.py",
        ignore_patterns=[MARKER, "**/__pycache__/**", "*.pyc"],
    )
    for key, value in (variables or {}).items():
        api.add_space_variable(repo_id, key, value, token=token)
    return f"https://huggingface.co/spaces/{repo_id}"


def _parse_variables(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            raise BuildError(f"--variable {item!r}: expected NAME=value with an upper-case NAME")
        if key in SECRET_ENV_VARS:
            raise BuildError(f"--variable {key}: secrets belong in the Space's secrets, set them on the Hub")
        out[key] = value
    return out


def main(argv: Sequence[str] | None = None, api: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: space/build/)")
    parser.add_argument(
        "--hardware",
        choices=(*HARDWARE_ALIASES, *HARDWARE),
        default="cpu",
        help="Space hardware: its requirements and the German default build sized for it (default cpu = cpu-basic)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the files, write nothing")
    parser.add_argument(
        "--hf-signin",
        action="store_true",
        help="offer 'Sign in with Hugging Face' (hf_oauth, scope inference-api): visitors pay Inference Providers",
    )
    parser.add_argument("--upload", metavar="REPO_ID", help="upload to this Space (token from HF_TOKEN)")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument(
        "--variable", action="append", default=[], metavar="NAME=VALUE", help="set a Space variable (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        files = plan(args.hardware, hf_signin=args.hf_signin)
        check_no_secrets(files)
        variables = _parse_variables(args.variable)
        if args.dry_run:
            for item in files:
                print(item.target)
            print(f"{len(files)} files; would write {args.out}" + (f", upload to {args.upload}" if args.upload else ""))
            return 0
        token = os.environ.get("HF_TOKEN", "").strip() if args.upload else ""
        if args.upload and not token:
            raise BuildError("--upload needs a Hugging Face token with write access in HF_TOKEN")
        write(files, args.out)
        print(f"wrote {len(files)} files to {args.out}; default model {default_build(args.hardware)[0]}")
        if args.upload:
            url = upload(args.out, args.upload, token, private=args.private, variables=variables, api=api)
            print(f"uploaded to {url}")
    except BuildError as exc:
        print(f"space/build.py: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a Hub error: its text may echo request details, never the token itself
        message = str(exc)
        token = os.environ.get("HF_TOKEN", "")
        if token:
            message = message.replace(token, "[REDACTED]")
        print(f"space/build.py: upload failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
