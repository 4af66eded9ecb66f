"""Code written against the module paths from before the package folders still imports, warned."""

from __future__ import annotations

import importlib
import sys

import pytest

import moodify
from moodify._moved import MOVED


def _fresh_import(name: str):
    sys.modules.pop(name, None)
    with pytest.warns(DeprecationWarning, match=f"{name} moved to"):
        return importlib.import_module(name)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_old_path_imports_with_a_warning(old):
    module = _fresh_import(old)
    new = importlib.import_module(MOVED[old][0])
    public = [k for k in vars(new) if not k.startswith("_")]
    assert all(hasattr(module, k) for k in public)


def test_a_module_that_moved_whole_is_the_same_module_under_both_names():
    old = _fresh_import("moodify.detect")
    assert old is moodify.pipeline.detect and old.__spec__.name == "moodify.pipeline.detect"


def test_the_old_weights_module_still_gives_its_names():
    weights = _fresh_import("moodify.weights")
    assert weights.load_model is moodify.load_model and weights.EmotionModel is moodify.EmotionModel
    assert weights.ModelError is moodify.ModelError and "default" in weights.REGISTRY
    assert callable(weights.load_checkpoint) and callable(weights.make_checkpoint)


def test_the_old_flat_modules_names_are_found_in_their_packages():
    import moodify.app_support
    import moodify.batch
    import moodify.video

    with pytest.warns(DeprecationWarning, match="moved to moodify.cli.options.torch_threads"):
        assert callable(moodify.video.torch_threads)
    with pytest.warns(DeprecationWarning, match="moved to moodify.batch.outputs.CsvFormat"):
        assert moodify.batch.CsvFormat is importlib.import_module("moodify.batch.outputs").CsvFormat
    with pytest.warns(DeprecationWarning, match="moved to moodify.app_support.uploads.read_image_upload"):
        from moodify.app_support import read_image_upload  # noqa: F401
    with pytest.raises(AttributeError):
        moodify.video.no_such_name  # noqa: B018


def test_python_m_on_a_moved_command_still_runs_it():
    import subprocess
    import sys
    from pathlib import Path

    project = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "moodify.framing", "--help"], cwd=project, capture_output=True,
                          text=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(project)})
    assert done.returncode == 0, done.stderr
    assert "moved to moodify.training.framing" in done.stderr
    assert "--photos" in done.stdout  # the framing tool's own help
