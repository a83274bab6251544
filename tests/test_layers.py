"""The layers of the package, enforced: only observe/ reads the machine, only apply/ changes
it, plan/, estimate/ and the flag table (backends.py) are pure, ruamel is imported in one
place, and only cli.py prints."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reconciler"
MODULES = sorted(PACKAGE.rglob("*.py"))

# module (top-level name) -> the only places that may import it
ALLOWED = {
    "pynvml": ("observe/",),
    "psutil": ("observe/", "apply/"),
    "subprocess": ("apply/",),
    "ruamel": ("config/yamlfile.py",),
    "jinja2": ("apply/",),
    "watchfiles": ("watch.py",),
    "reconciler.apply": ("apply/", "cli.py", "commands/", "watch.py"),
    # The observers read the machine; their values (state.py, levels.py) live outside it.
    "reconciler.observe": ("observe/", "apply/", "cli.py", "commands/", "pipeline.py", "watch.py"),
    "reconciler.cli": ("__main__.py",),
}
PURE = ("plan/", "estimate/", "backends.py")
PURE_VALUES = ("reconciler.state", "reconciler.levels")
ENTRY = ("cli.py", "__main__.py")
PURE_FORBIDDEN = ("socket", "shutil", "tempfile", "os")
# (rename and replace are left out: str.replace and dataclasses.replace share the names)
WRITE_CALLS = {"write_text", "write_bytes", "mkdir", "unlink", "touch", "rmdir", "chmod"}


def rel(path: Path, package: Path = PACKAGE) -> str:
    return path.relative_to(package).as_posix()


def imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def violations(path: Path, package: Path = PACKAGE) -> list[str]:
    name = rel(path, package)
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for line, module in imports(tree):
        for banned, places in ALLOWED.items():
            hit = module == banned or module.startswith(banned + ".")
            if hit and not name.startswith(places):
                out.append(f"{name}:{line}: imports {module}")
        if name.startswith(PURE) and module.split(".")[0] in PURE_FORBIDDEN:
            out.append(f"{name}:{line}: pure module imports {module}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "print" and name != "cli.py":
            out.append(f"{name}:{node.lineno}: print() outside cli.py")
        if isinstance(func, ast.Attribute) and func.attr == "exit" and name not in ENTRY:
            out.append(f"{name}:{node.lineno}: exit() outside cli.py")
        if name.startswith(PURE):
            if isinstance(func, ast.Attribute) and func.attr in WRITE_CALLS:
                out.append(f"{name}:{node.lineno}: pure module calls .{func.attr}()")
            if isinstance(func, ast.Name) and func.id == "open":
                out.append(f"{name}:{node.lineno}: pure module calls open()")
    return out


@pytest.mark.parametrize("path", MODULES, ids=[rel(p) for p in MODULES])
def test_module_respects_the_layers(path: Path) -> None:
    assert violations(path) == []


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    placed = tmp_path / "reconciler" / "plan" / "probe.py"
    placed.parent.mkdir(parents=True)
    placed.write_text("import pynvml\nimport os\nprint('x')\nopen('f', 'w')\n")
    assert violations(placed, tmp_path / "reconciler") == [
        "plan/probe.py:1: imports pynvml",
        "plan/probe.py:2: pure module imports os",
        "plan/probe.py:3: print() outside cli.py",
        "plan/probe.py:4: pure module calls open()",
    ]
