"""The module paths from before the package had folders, still importable for code written against them.

``import moodify.weights`` or ``from moodify.detect import make_detector`` keep working, with a
``DeprecationWarning`` that names the new path (README, "Changes"). A module that moved whole is
the same module object under both names (a test that patches ``moodify.detect.YUNET_FILE``
patches ``moodify.pipeline.detect``); one that was split (``weights``, ``train``, ``results``,
``live``) is a module holding the names of the new ones. Nothing in Moodify imports these paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

# old path -> the new modules that hold its names, the main one first
MOVED: dict[str, tuple[str, ...]] = {
    "moodify.images": ("moodify.pipeline.images",),
    "moodify.detect": ("moodify.pipeline.detect",),
    "moodify.preprocess": ("moodify.pipeline.preprocess",),
    "moodify.recognizer": ("moodify.pipeline.recognizer",),
    "moodify.draw": ("moodify.pipeline.draw",),
    "moodify.network": ("moodify.model.network",),
    "moodify.weights": ("moodify.model.registry", "moodify.model.checkpoint", "moodify.model.torch_backend",
                        "moodify.model.base", "moodify.errors"),
    "moodify.onnx_backend": ("moodify.model.onnx_backend",),
    "moodify.explain": ("moodify.model.explain",),
    "moodify.export": ("moodify.cli.export",),
    "moodify.data": ("moodify.training.data",),
    "moodify.augment": ("moodify.training.augment",),
    "moodify.train": ("moodify.training.train", "moodify.training.calibrate", "moodify.training.evaluate"),
    "moodify.evaluate": ("moodify.training.evaluate",),
    "moodify.metrics": ("moodify.training.metrics",),
    "moodify.photos": ("moodify.training.photos",),
    "moodify.framing": ("moodify.training.framing",),
    "moodify.explore": ("moodify.training.explore",),
    "moodify.tracking": ("moodify.video.tracking",),
    "moodify.live": ("moodify.video.live", "moodify.cli.live"),
    "moodify.batch_merge": ("moodify.batch.merge", "moodify.cli.merge"),
    "moodify.results": ("moodify.app_support.results", "moodify.pipeline.rows"),
    "moodify.charts": ("moodify.app_support.charts",),
    "moodify.options": ("moodify.cli.options",),
    "moodify.argparsing": ("moodify.cli.options",),
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths in ``MOVED`` and loads each as its new module (or their union)."""

    def __init__(self) -> None:
        self._own_specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        targets = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {targets[0]} (see the README's Changes); import it from there",
                      DeprecationWarning, stacklevel=3)
        if len(targets) == 1:
            module = importlib.import_module(targets[0])  # the same module object under its old name
            self._own_specs[spec.name] = module.__spec__  # importlib sets __spec__ to the old name's next
            return module
        module = types.ModuleType(spec.name, f"Moved: the names of {', '.join(targets)}.")
        for target in reversed(targets):  # the main module's names win
            module.__dict__.update({k: v for k, v in vars(importlib.import_module(target)).items()
                                    if not k.startswith("__")})
        return module

    def get_code(self, name: str):
        """Asked by ``python -m OLD.PATH`` only: run the new module as ``__main__``, as the old
        command did (``python -m moodify.framing`` is in older notes and model cards), saying where it went."""
        new = MOVED[name][0]
        source = (f"import runpy, sys\nprint({f'{name} moved to {new}: running python -m {new}'!r}, file=sys.stderr)\n"
                  f"runpy.run_module({new!r}, run_name='__main__', alter_sys=True)\n")
        return compile(source, f"<{name}, moved to {new}>", "exec")

    def exec_module(self, module) -> None:
        # Everything was done in create_module; a moved module keeps its own spec (and name).
        own = self._own_specs.pop(module.__spec__.name, None)
        if own is not None:
            module.__spec__ = own


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``import moodify`` calls this)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        # First: an editable install of another checkout also claims every moodify.* name it has.
        sys.meta_path.insert(0, _MovedFinder())


def moved_attribute(package: str, name: str, homes: tuple[str, ...]):
    """A name a package's old flat module had, looked up in its new ``homes`` (for a PEP 562
    ``__getattr__``), with a ``DeprecationWarning``; ``AttributeError`` where none has it."""
    for home in homes:
        module = importlib.import_module(home)
        if hasattr(module, name):
            warnings.warn(f"{package}.{name} moved to {home}.{name} (see the README's Changes)", DeprecationWarning,
                          stacklevel=3)
            return getattr(module, name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
