"""The packages of components/ import only the layers below them (read from the source with ast)."""

from __future__ import annotations

import ast
from pathlib import Path

COMPONENTS = Path(__file__).resolve().parents[1] / "components"

#: bottom first: a package may import only packages that stand before it (or beside it: api and ui)
LAYERS: list[set[str]] = [{"vocabulary"}, {"logs"}, {"engines"}, {"core"}, {"serving"}, {"features"}, {"api", "ui"}]
RANK = {package: rank for rank, group in enumerate(LAYERS) for package in group}


def _imported_packages(path: Path) -> set[str]:
    """The components/ packages a module imports (its own package included), at any depth in the file."""
    module = path.relative_to(COMPONENTS.parent).with_suffix("").parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(module[: len(module) - node.level])
                names = [f"{base}.{node.module}" if node.module else base]
                if not node.module:
                    names += [f"{base}.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
                if node.module == "components":
                    names += [f"components.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "components" and len(parts) > 1:
                found.add(parts[1])
    return found


def package_imports() -> dict[str, dict[str, set[str]]]:
    """{package: {imported package: modules that import it}} for every package of components/."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(COMPONENTS.rglob("*.py")):
        rel = path.relative_to(COMPONENTS)
        if len(rel.parts) < 2:
            continue
        package = rel.parts[0]
        for target in _imported_packages(path) - {package}:
            graph.setdefault(package, {}).setdefault(target, set()).add(str(rel))
    return graph


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in COMPONENTS.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(RANK), "a new package of components/ needs its place in LAYERS (and components/README.md)"


def test_packages_import_only_layers_below() -> None:
    upward = [
        f"{package} -> {target}: {', '.join(sorted(modules))}"
        for package, targets in package_imports().items()
        for target, modules in targets.items()
        if RANK.get(target, -1) >= RANK.get(package, -1)
    ]
    assert upward == []


def test_vocabulary_imports_no_other_package() -> None:
    assert package_imports().get("vocabulary", {}) == {}


def test_no_import_cycle_between_packages() -> None:
    graph = {package: set(targets) for package, targets in package_imports().items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or reaches(nxt, goal, seen | {nxt}) for nxt in graph.get(start, set()) - seen)

    assert [p for p in graph if reaches(p, p, set())] == []
