"""Imports point one way: api -> workers -> schedulers -> config (-> batchgate.errors)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["api", "workers", "schedulers", "config"]
# What each package may import from the project. `batchgate` is the CLI on top; only its
# `errors` module (the exception root) is importable from below.
ALLOWED = {
    "config": {"config"},
    "schedulers": {"schedulers", "config"},
    "workers": {"workers", "schedulers", "config"},
    "api": {"api", "workers", "schedulers", "config"},
}
PROJECT = {*LAYERS, "batchgate"}


def project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PROJECT:
                found.add(name)
    return found


@pytest.mark.parametrize("package", LAYERS)
def test_layer_imports_only_what_is_below_it(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in project_imports(path):
            top = name.split(".")[0]
            if name == "batchgate.errors" or top in ALLOWED[package]:
                continue
            bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def test_fake_upstream_is_standalone() -> None:
    bad = [f"{p.relative_to(ROOT)} imports {n}"
           for p in sorted((ROOT / "batchgate" / "fake_upstream").rglob("*.py"))
           for n in project_imports(p) if n.split(".")[0] in LAYERS]
    assert bad == []


def test_nothing_imports_api_but_the_entry_points() -> None:
    entry_points = {"batchgate/serve.py", "batchgate/cli.py", "batchgate/worker.py"}
    bad = [f"{p.relative_to(ROOT)}" for pkg in [*LAYERS, "batchgate"]
           for p in sorted((ROOT / pkg).rglob("*.py"))
           if pkg != "api" and str(p.relative_to(ROOT)) not in entry_points
           and any(n.split(".")[0] == "api" for n in project_imports(p))]
    assert bad == []
