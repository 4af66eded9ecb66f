"""What a batch job reads: folders, globs, list files and stdin, expanded in a stable order and sharded."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import sys
from pathlib import Path

from .people import is_person_list, read_person_list
from typing import Iterable, Iterator, Sequence

from ..errors import BatchError
from ..names import printable
from ..pipeline.images import IMAGE_SUFFIXES

# A folder is searched for IMAGE_SUFFIXES (moodify.pipeline.images); a path named explicitly, in a
# glob or a list file is always tried, whatever its name, so a misnamed image still gets its row.
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})  # an INPUT with one of these lists paths, one per line


def check_inputs(specs: Sequence[str]) -> None:
    """Fail before any work if an INPUT names nothing (a typo should not yield an empty run)."""
    for spec in specs:
        if spec == "-" or os.path.lexists(spec):  # lexists: a broken link or a symlink loop gets its error row
            continue
        if _is_glob(spec):
            import glob

            if next(glob.iglob(spec, recursive=True), None) is None:
                raise BatchError(f"no file matches {spec!r}")
            continue
        raise BatchError(f"no such file or folder: {spec}")


def iter_inputs(specs: Sequence[str], *, shard: tuple[int, int] | None = None) -> Iterator[str]:
    """Image paths from folders (recursive, sorted), globs, list files, ``-`` (stdin) and files.

    The order is deterministic for an unchanged file system, which is what ``--resume`` needs.
    ``shard=(k, n)`` keeps the paths whose hash falls in shard k of n (1-based): a path's shard
    depends on nothing but the path, so N machines with the same command split any input exactly.
    """
    paths = itertools.chain.from_iterable(_expand(spec) for spec in specs)
    if shard is None or shard[1] == 1:
        return paths
    k, n = shard
    return (p for p in paths if shard_of(p, n) == k)


def shard_of(path: str, n: int) -> int:
    """The 1-based shard (of n) that a path belongs to: a stable hash, the same on every machine."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n + 1


def _is_glob(spec: str) -> bool:
    return any(c in spec for c in "*?[")


def _expand(spec: str) -> Iterator[str]:
    if spec == "-":
        yield from _read_list_lines(sys.stdin, base=None)
    elif os.path.isdir(spec):
        yield from _walk(spec)
    elif os.path.isfile(spec) and Path(spec).suffix.lower() in LIST_SUFFIXES:
        with open(spec, encoding="utf-8", errors="surrogateescape") as fh:
            yield from _read_list_lines(fh, base=os.path.dirname(spec))
    elif is_person_list(spec):
        yield from (row[0] for row in read_person_list(spec))
    elif os.path.exists(spec) or not _is_glob(spec):
        yield spec  # a file (or a missing one, which gets an error row)
    else:
        import glob

        for match in sorted(glob.iglob(spec, recursive=True)):
            yield from (_walk(match) if os.path.isdir(match) else (match,))


def _read_list_lines(lines: Iterable[str], *, base: str | None) -> Iterator[str]:
    # Relative paths in a list file are relative to the list's folder, so the list still works
    # when the command runs from elsewhere (a scheduler's working directory).
    for line in lines:
        line = line.rstrip("\r\n")
        if not line.strip() or line.startswith("#"):
            continue
        yield os.path.join(base, line) if base and not os.path.isabs(line) else line


def _walk(folder: str) -> Iterator[str]:
    """Image files under ``folder``, depth first, sorted by name; hidden entries skipped.

    Hidden names are skipped because macOS litters folders with ``._photo.jpg`` resource forks
    that carry an image suffix and no image. Folder symlinks are not followed (no cycles).
    """
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        print(f"moodify batch: warning: cannot list {printable(str(folder))}: {exc.strerror}", file=sys.stderr)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
            yield entry.path


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` (1 <= K <= N) -> (K, N)."""
    if text is None:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes K/N, like 2/8; got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--shard K/N needs 1 <= K <= N; got {text!r}")
    return k, n
