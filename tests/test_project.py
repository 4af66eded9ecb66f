"""How the project behaves for someone who clones it: its test command, its configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


def test_the_test_command_gives_each_skip_its_reason(tmp_path):
    """The README promises that tests without their data or browser are skipped *with the reason*:
    the reason must be in the output of a plain run, not only under -rs or -v."""
    (tmp_path / "test_needs_data.py").write_text(
        "import pytest\n\ndef test_on_the_data():\n    pytest.skip('FER2013 data not found at /nowhere')\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-c", str(PROJECT / "pyproject.toml"), "-p", "no:cacheprovider",
                           str(tmp_path / "test_needs_data.py")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout
    assert "SKIPPED [1]" in done.stdout and "FER2013 data not found at /nowhere" in done.stdout, done.stdout


# Each folder of the package may import only from the folders to its right (and itself): the
# pipeline and the models never use the commands, the jobs or the app. errors, labels, files
# (where outputs may go) and names (how names are shown) are the floor every folder stands on.
LOWER = {
    "pipeline": {"pipeline", "model", "errors", "labels", "files", "names"},  # model: only Recognizer's lazy load_model
    "model": {"model", "pipeline", "errors", "labels", "files", "names"},
    "training": {"training", "model", "pipeline", "errors", "labels", "files", "names", "cli"},  # cli: the shared option parsers
    "video": {"video", "pipeline", "model", "errors", "labels", "files", "names"},
    "batch": {"batch", "pipeline", "model", "errors", "labels", "files", "names"},
    "app_support": {"app_support", "video", "pipeline", "model", "errors", "labels", "files", "names"},
}


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The moodify modules ``path`` imports, as dotted names (relative imports resolved)."""
    import ast

    package = ".".join(path.relative_to(PROJECT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.startswith("moodify"):
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("moodify"))
    return found


def test_imports_point_one_way():
    for path in sorted((PROJECT / "moodify").rglob("*.py")):
        folder = path.relative_to(PROJECT / "moodify").parts[0]
        if folder not in LOWER:
            continue
        for module in _imports(path, top_level_only=False):
            parts = module.split(".")
            if len(parts) > 1:
                assert parts[1] in LOWER[folder] or parts[1] == "__version__", f"{path} imports {module}"


def test_no_import_cycle_at_import_time():
    """No module imports, at its top, a module that leads back to it. A package's ``__init__``
    only re-exports its modules (which never import it), so it is left out of the graph."""
    modules = {".".join(p.relative_to(PROJECT).with_suffix("").parts): p
               for p in (PROJECT / "moodify").rglob("*.py") if p.name != "__init__.py"}
    graph = {name: {m for m in _imports(path, top_level_only=True) if m in modules and m != name}
             for name, path in modules.items()}

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return trail + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
        return None

    cycles = [cycle for cycle in map(cycle_from, graph) if cycle]
    assert not cycles, cycles


def test_every_command_is_in_the_help(capsys):
    from moodify import cli

    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command in text


def test_moodify_alone_lists_the_commands_one_line_each(capsys):
    """`moodify` with no arguments said only "the following arguments are required: COMMAND"."""
    from moodify import cli

    assert cli.main([]) == 2
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == list(cli.COMMANDS) and "required" not in out
    assert all(len(line) <= 100 for line in out.splitlines())


@pytest.mark.slow  # a subprocess: torch imported afresh
def test_every_command_runs_from_python_m_moodify():
    done = subprocess.run([sys.executable, "-m", "moodify", "--help"], cwd=PROJECT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("classify", "train", "evaluate", "batch", "merge", "live", "video", "export"):
        assert command in done.stdout
