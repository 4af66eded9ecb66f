"""Where commands write: the checks every writing command makes before it writes, and files made
without following links.

- ``check_outputs(outputs, inputs)``: an output that is one of the inputs (the same file by
  device and inode: a hard link, a symlink or another spelling of the name included) or another
  output, a folder where a file is wanted, a file where a folder is wanted, or a path under a
  file, is refused in one line before any work. Every command that writes calls it.
- ``create_new(path)``: a fresh file, never through a link planted at its name.
- ``WriterLock``: one writer per output at a time (``moodify batch``), released however the
  writer ends (kill -9 included).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable, Mapping

from .errors import MoodifyError, OutputError


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file (same device and inode); False when either is missing."""
    ia = _identity(a)
    return ia is not None and ia == _identity(b)


def check_outputs(outputs: Mapping[str, str | os.PathLike | None], inputs: Iterable[str | os.PathLike] = (), *,
                  folders: Iterable[str] = ()) -> None:
    """Refuse outputs that would destroy an input or could never be written, before any work.

    ``outputs``: {what the user called it (an option like ``--csv``): path or None (not asked for)}.
    ``inputs``: the files the command reads (URLs and missing paths are skipped).
    ``folders``: the names in ``outputs`` that are folders to write into (``train --out``); the
    others are files.
    """
    folders = set(folders)
    given = {option: Path(path) for option, path in outputs.items() if path is not None}
    sources = [Path(p) for p in inputs if p is not None and "://" not in str(p)]
    for option, path in given.items():
        for source in sources:
            if same_file(path, source):
                what = "is" if str(path) == str(source) else f"is the same file as {source},"
                raise OutputError(f"{option} {path} {what} an input: writing it would overwrite it; "
                                  "choose another name")
        _check_place(option, path, folder=option in folders)
    names = list(given.items())
    for i, (option, path) in enumerate(names):
        for other, other_path in names[i + 1:]:
            if str(path) == str(other_path) or same_file(path, other_path):
                raise OutputError(f"{option} and {other} are both {path}: give each its own file")


def _check_place(option: str, path: Path, *, folder: bool) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        st = None  # a parent is a file: found below
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot use it ({exc.strerror})") from None
    if st is not None:
        if folder and not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{option} {path} is a file; it takes a folder (new or existing)")
        if not folder and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{option} {path} is a folder; it takes a file name, like {path / 'results'}")
        return
    parent = path.parent
    while True:  # the first part of the path that exists must be a folder
        try:
            if not stat.S_ISDIR(os.stat(parent).st_mode):
                raise OutputError(f"{option} {path}: {parent} is a file, not a folder")
            return
        except (FileNotFoundError, NotADirectoryError):
            if parent == parent.parent:
                return
            parent = parent.parent


# O_NOFOLLOW and O_CLOEXEC are POSIX's; O_BINARY is Windows' (no newline translation under Python's own).
_OPEN_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS


def create_new(path: str | os.PathLike, *, replace: bool = True) -> int:
    """A file descriptor of a new, empty ``path``, created by this call (``O_EXCL``): a symlink or a
    file someone planted at the name is removed (``replace``), never followed or written through."""
    if replace:
        try:
            os.unlink(path)  # unlinking a link removes the link, not what it points to
        except FileNotFoundError:
            pass
    return os.open(path, _NEW_FILE_FLAGS, 0o666)


def open_existing(path: str | os.PathLike, mode: str):
    """``open(path, mode)`` for a file this program made earlier, refusing a link put in its place."""
    flags = {"r+b": os.O_RDWR, "a": os.O_WRONLY | os.O_APPEND, "r": os.O_RDONLY}[mode]
    fd = os.open(path, flags | _OPEN_FLAGS)
    return os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {}))


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False when another process holds one."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class WriterLock:
    """An exclusive lock on ``TARGET.lock``: a second writer of ``TARGET`` is refused, not interleaved.

    The lock is the kernel's (``flock``; ``msvcrt.locking`` on Windows), so it goes away with its
    process, even after kill -9; a stale ``.lock`` file left behind holds nothing.
    """

    def __init__(self, target: str | os.PathLike, *, error: type[MoodifyError] = OutputError):
        self.path = Path(str(target) + ".lock")
        self.target = target
        self.error = error
        self._fd: int | None = None

    def acquire(self) -> "WriterLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o666)
            if not _try_lock(fd):
                os.close(fd)
                raise self.error(f"another moodify run is writing {self.target} (it holds {self.path}); "
                                 "wait for it, or give this run another output name") from None
            # The holder before us may have removed the file between our open and our lock:
            # then we hold a lock on a file nobody else can see, and must take the new one.
            if _identity(self.path) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
                self._fd = fd
                return self
            os.close(fd)
        raise self.error(f"cannot lock {self.path}: it keeps being replaced")

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)  # while still holding it, so no one locks the old file after us
            except OSError:
                pass  # Windows removes no open file: the .lock stays, holding nothing once closed
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
