"""How the project behaves for someone who clones it: its test command, its configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
