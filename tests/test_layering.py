"""Imports read top-down: cli -> crossval -> (runs | bench) -> serve -> (train | online) -> models ->
pretrained -> (features | data) -> foundations.

Every ``import`` in the library (also those inside functions) is parsed; an import of a
package from a higher layer, or of a sibling in the same layer, fails the test with the file
and line. The library never imports the command-line layer (Typer, rich, coaudio_cli), so it
works when only the library is installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import coaudio

ROOT = Path(coaudio.__file__).parent
LAYERS = [
    {
        "audio",
        "config",
        "safeio",
        "digests",
        "threads",
        "workers",
        "distributed",
        "progress",
        "continual",
    },  # foundations
    {"features", "data", "recipes"},
    {"pretrained"},  # the model store: fetches, verifies and names pretrained front-end weights
    {"models"},
    {"train", "online"},  # siblings: neither imports the other
    {"serve"},  # the server: many online streams, a live page, a history database
    {"bench", "runs"},  # bench measures train and online; runs orchestrates them
    {"crossval"},  # K runs of coaudio.runs and their summary
]
LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}
CLI_ONLY = ("typer", "rich", "coaudio_cli")


def _unit(path: Path) -> str:
    """The package (or top-level module) a library file belongs to."""
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


def test_every_library_unit_has_a_layer():
    units = {_unit(p) for p in ROOT.rglob("*.py")} - {"__init__", "__main__"}
    assert units <= set(LAYER), f"give these a layer in LAYERS: {sorted(units - set(LAYER))}"


def test_imports_only_go_down():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(path)
        if unit in ("__init__", "__main__"):
            continue
        for module, line in _imports(path):
            parts = module.split(".")
            where = f"{path.relative_to(ROOT.parent)}:{line}: {module}"
            if parts[0] in CLI_ONLY:
                wrong.append(f"{where} (the library never imports the command-line layer)")
            elif parts[0] == "coaudio" and len(parts) > 1 and parts[1] != unit and parts[1] in LAYER:
                if LAYER[parts[1]] >= LAYER[unit]:
                    wrong.append(
                        f"{where} ({unit} is in layer {LAYER[unit]}, {parts[1]} in {LAYER[parts[1]]})"
                    )
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(wrong)


def test_python_m_coaudio_says_what_is_missing_without_the_cli(tmp_path):
    """`python -m coaudio` with only the library installed: a message, not a traceback."""
    import subprocess
    import sys

    blocker = tmp_path / "coaudio_cli"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('not installed in this test')\n")
    done = subprocess.run(
        [sys.executable, "-m", "coaudio", "--help"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "command line" in done.stderr


def test_every_library_package_is_shipped():
    """A package missing from pyproject's list works in an editable install and vanishes from
    a real one (it happened to coaudio.pretrained)."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    packages = {".".join(p.parent.relative_to(ROOT.parent).parts) for p in ROOT.rglob("__init__.py")}
    assert packages <= listed, f"add to pyproject's packages: {sorted(packages - listed)}"
