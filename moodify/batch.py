"""``moodify batch``: emotions for every face in a folder, a glob or a list of millions of images.

Shape of a run::

    inputs (streamed, sharded) -> chunks of --chunk-size paths
      -> worker processes: decode, detect, crop each face to 48x48 (ordered); with the onnx
         backend each worker also classifies its faces, one single-threaded forward pass per task
      -> main process: one batched ``predict`` per chunk for whatever is not classified yet
      -> rows appended to OUT.partial, flushed and fsynced, then one line in OUT.progress
    the end: OUT.partial renamed onto OUT (atomic), OUT.progress removed.

``OUT.progress`` is the commit log: its last complete line says how many inputs and how many
bytes of ``OUT.partial`` are done. ``--resume`` truncates the partial file to that byte count and
skips that many inputs, so a run killed at any instant (kill -9 included) continues with no
duplicate and no missing row. Nothing but a counter per chunk is kept, so memory stays flat
however many inputs there are.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from .detect import LANDMARKS
from .images import IMAGE_SUFFIXES
from .labels import EMOTIONS
from .options import detector_spec

DESCRIPTION = ("Classify every face in many images (folders, globs, lists of paths) into a CSV, JSONL or "
               "Parquet file: one row per face, resumable, parallel, shardable across machines. Columns: path, "
               "face (0-based, largest first), faces (in that image; 0 = no face found), x, y, w, h (box in "
               "pixels), emotion, confidence, the 7 probabilities, error (why an unreadable image was skipped), "
               "then the 5 YuNet landmarks in pixels (right_eye_x, right_eye_y, ..., mouth_left_y; empty with Haar).")

# A folder is searched for IMAGE_SUFFIXES (moodify.images); a path named explicitly, in a glob or
# a list file is always tried, whatever its name, so a misnamed image still gets its row.
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})  # an INPUT with one of these lists paths, one per line
# The five YuNet landmarks in pixels (empty with Haar): right_eye_x, right_eye_y, ..., mouth_left_y.
LANDMARK_COLUMNS = tuple(f"{name}_{axis}" for name in LANDMARKS for axis in "xy")
COLUMNS = ("path", "face", "faces", "x", "y", "w", "h", "emotion", "confidence", *EMOTIONS, "error", *LANDMARK_COLUMNS)
INT_COLUMNS = frozenset({"face", "faces", "x", "y", "w", "h"})
FLOAT_COLUMNS = frozenset({"confidence", *EMOTIONS, *LANDMARK_COLUMNS})
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
CHUNK_SIZE = 256  # inputs per commit: larger amortises fsync and batches more faces, smaller loses less on a crash
PREFETCH_CHUNKS = 2  # chunks decoded ahead of the classifier; bounds memory whatever the input size
LOG_VERSION = 1
# Exit status of a job that finished but could not read some inputs: distinct from 1 (classify's
# unreadable files) and 2 (a job that could not run), so a script can tell "done, with failures".
EXIT_UNREADABLE = 3
NAMED_FAILURES = 20  # unreadable inputs named on stderr at the end; the output's error column has them all
EPILOG = (f"exit status: 0 every input was read; {EXIT_UNREADABLE} the job finished but some inputs could not be "
          "read (the first ones are named on stderr, every one has a row with its error); 2 the job could not "
          "start or stopped (bad options, an unwritable output); 130 interrupted (continue with --resume)")


class BatchError(ValueError):
    """A batch job that cannot start or resume; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# Inputs


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
        print(f"moodify batch: warning: cannot list {folder}: {exc.strerror}", file=sys.stderr)
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


# ---------------------------------------------------------------------------------------------
# Decoding and detection (runs in worker processes)


@dataclass
class _Analyzed:
    """What a worker sends back for one input: boxes and 48x48 crops, or why it failed."""

    path: str
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    crops: np.ndarray | None = None
    landmarks: list = field(default_factory=list)  # per box: 5 (x, y) points or None
    error: str | None = None
    probs: np.ndarray | None = None  # (faces, 7) calibrated probabilities, once classified


def _has_faces(item: _Analyzed) -> bool:
    return item.error is None and bool(item.boxes)


def _classify(items: list[_Analyzed], model, batch_size: int) -> None:
    """Fill in ``probs`` for the items with faces that have none yet, in one batched ``predict``."""
    todo = [it for it in items if _has_faces(it) and it.probs is None]
    if not todo:
        return
    probs = model.predict(np.concatenate([it.crops for it in todo]), batch_size=batch_size)
    at = 0
    for item in todo:
        item.probs, at = probs[at:at + len(item.boxes)], at + len(item.boxes)


_WORKER: dict = {}  # per-process state set by _init_worker: detector, preprocessing, mode, model


def _init_worker(detector_spec: dict | None, prep, pre_cropped: bool, in_pool: bool,
                 onnx_path: str | None = None, parent_pid: int | None = None) -> None:
    """Per-process set-up; ``onnx_path``: the worker classifies too, with this exported model;
    ``parent_pid``: the main process, whose death (kill -9 included) ends this worker."""
    from .detect import make_detector
    from .onnx_backend import OnnxEmotionModel

    if parent_pid is not None:
        _die_with(parent_pid)
    if in_pool:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
        cv2.setNumThreads(1)  # one process per core already; more threads only contend
    _WORKER.update(prep=prep, pre_cropped=pre_cropped,
                   detector=None if pre_cropped else make_detector(**detector_spec),
                   model=None if onnx_path is None else OnnxEmotionModel(onnx_path, threads=1))


WATCHDOG_PERIOD_S = 1.0  # how often a worker checks that the main process is still there


def _die_with(parent_pid: int) -> None:
    """End this worker when ``parent_pid`` dies, however it dies.

    A main process killed with SIGKILL cannot stop its workers, and a worker busy on a big
    image (or blocked) would otherwise live on, holding its memory. On Linux the kernel sends
    SIGKILL when the process that forked this one exits (the forkserver, which exits with the main
    process); a watchdog thread covers other systems and a worker stuck between checks of the pipe.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # no prctl (an unusual libc): the watchdog alone
    forked_by = os.getppid()

    def watch() -> None:
        while True:
            if os.getppid() != forked_by or not _alive(parent_pid):
                os._exit(1)
            time.sleep(WATCHDOG_PERIOD_S)

    threading.Thread(target=watch, name="moodify-watchdog", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only asks; PermissionError would still mean it exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _ping(_: int) -> int:
    return os.getpid()


def _analyze_many(paths: list[str]) -> list[_Analyzed]:
    """``_analyze`` each path, then classify all their faces at once where this worker holds the model."""
    items = [_analyze(path) for path in paths]
    if _WORKER.get("model") is not None:
        _classify(items, _WORKER["model"], batch_size=len(paths))
        for item in items:
            item.crops = None  # classified: no need to send the pixels back
    return items


def _analyze(path: str) -> _Analyzed:
    """Decode one image and cut out its faces; any failure becomes a one-line error, never a crash."""
    from .images import ImageError, load_gray, load_image
    from .preprocess import crop_faces, resize_face

    prep = _WORKER["prep"]
    try:
        if _WORKER["pre_cropped"]:
            gray = load_gray(path)
            h, w = gray.shape
            return _Analyzed(path, [(0, 0, w, h)], resize_face(gray, prep.input_size)[None], [None])
        # The same steps as Recognizer.analyze: detect on the colour image, crop the gray one.
        bgr = load_image(path)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        detector = _WORKER["detector"]
        found = detector.detect_faces(bgr)
        return _Analyzed(path, [d.box for d in found], crop_faces(gray, found, prep, kind=detector.kind),
                         [d.landmarks for d in found])
    except ImageError as exc:
        message = str(exc)
        return _Analyzed(path, error=message[len(path) + 2:] if message.startswith(path + ": ") else message)
    except Exception as exc:  # a decoder or detector failure on one file must not stop a million-file job
        return _Analyzed(path, error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": "))


# ---------------------------------------------------------------------------------------------
# Output formats


# Landmarks are pixel positions: a tenth of a pixel is all the precision they have.
_DECIMALS = tuple(1 if c in LANDMARK_COLUMNS else 6 for c in COLUMNS)


class CsvFormat:
    """CSV with a header row; probabilities with 6 decimals, landmarks with 1; empty cells for missing values."""

    def header(self) -> bytes:
        return self._encode([COLUMNS])

    def encode(self, rows: Iterable[tuple]) -> bytes:
        return self._encode(tuple("" if v is None else f"{v:.{d}f}" if isinstance(v, float) else v
                                  for v, d in zip(row, _DECIMALS)) for row in rows)

    @staticmethod
    def _encode(rows: Iterable[Sequence]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        # backslashreplace: a file name that is not valid UTF-8 still gets a readable row.
        return buf.getvalue().encode("utf-8", "backslashreplace")


class JsonlFormat:
    """One JSON object per line; null for missing values."""

    def header(self) -> bytes:
        return b""

    def encode(self, rows: Iterable[tuple]) -> bytes:
        lines = (json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in zip(COLUMNS, row)},
                            ensure_ascii=False) for row in rows)
        return "".join(line + "\n" for line in lines).encode("utf-8", "backslashreplace")


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise BatchError(f"{path}: unknown output format {suffix or '(no suffix)'!r}; use "
                         + ", ".join(sorted(FORMATS)))
    if FORMATS[suffix] == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise BatchError("Parquet output needs pyarrow: pip install pyarrow (or write .csv / .jsonl)") from None
    return FORMATS[suffix]


def _row_writer(fmt: str) -> CsvFormat | JsonlFormat:
    # Parquet cannot be appended to safely, so its rows build up as CSV and are converted at the end.
    return JsonlFormat() if fmt == "jsonl" else CsvFormat()


def csv_to_parquet(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Stream a batch CSV into a Parquet file with proper column types, in bounded memory.

    Whole numbers are int32, probabilities and landmarks float64 (the CSV's values, not float32's
    200.199997 for 200.2), text is text; the file also says how pandas should read it, so
    ``pd.read_parquet`` gives nullable Int32 columns (an error row's face is <NA>, not a float NaN
    that turns every box coordinate into 178.0) and string columns, not float64 and object.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    types = {c: pa.int32() if c in INT_COLUMNS else pa.float64() if c in FLOAT_COLUMNS else pa.string()
             for c in COLUMNS}
    pandas_dtypes = {c: "Int32" if c in INT_COLUMNS else "float64" if c in FLOAT_COLUMNS else "string"
                     for c in COLUMNS}
    empty = pd.DataFrame({c: pd.Series(dtype=dtype) for c, dtype in pandas_dtypes.items()})
    pandas_metadata = pa.Schema.from_pandas(empty, preserve_index=False).metadata
    schema = pa.schema([(c, types[c]) for c in COLUMNS], metadata=pandas_metadata)
    reader = pacsv.open_csv(src, convert_options=pacsv.ConvertOptions(
        column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False))
    with pq.ParquetWriter(dst, schema) as writer:
        for batch in reader:
            writer.write_table(pa.Table.from_batches([batch]).select(list(COLUMNS)).cast(schema))


# ---------------------------------------------------------------------------------------------
# The resumable output file


@dataclass
class Counts:
    """Running totals, stored with every commit so a resumed run reports the whole job."""

    inputs: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0

    def add(self, other: "Counts") -> None:
        self.inputs += other.inputs
        self.faces += other.faces
        self.no_face += other.no_face
        self.errors += other.errors


class ResumableOutput:
    """``OUT.partial`` (rows) plus ``OUT.progress`` (commit log), renamed onto ``OUT`` at the end."""

    def __init__(self, out: Path, fingerprint: dict):
        self.out = out
        self.partial = out.with_name(out.name + ".partial")
        self.log = out.with_name(out.name + ".progress")
        self.fingerprint = fingerprint
        self.fmt = output_format(out)
        self.writer = _row_writer(self.fmt)
        self.counts = Counts()
        self.last_path: str | None = None
        self._data = None
        self._log = None

    def interrupted_run_exists(self) -> bool:
        return self.log.exists()

    def start(self) -> None:
        """A fresh run: an empty partial file holding the header, and a log with the fingerprint."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._data = open(self.partial, "wb")
        self._data.write(self.writer.header())
        self._sync(self._data)
        self._log = open(self.log, "w", encoding="utf-8")
        self._log_line({"moodify_batch": LOG_VERSION, "fingerprint": self.fingerprint})
        self._commit()

    def resume(self) -> None:
        """Reopen an interrupted run at its last commit, dropping whatever was written after it."""
        commits, header = [], None
        with open(self.log, encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break  # the line being written when the run died
                if not line.endswith("\n"):
                    break
                if header is None:
                    header = record
                else:
                    commits.append(record)
        if header is None or (header.get("moodify_batch") == LOG_VERSION and not commits):
            # The run died (a full disk, kill -9) before its first commit: nothing is done, so resuming
            # it is starting it.
            self.start()
            return
        if header.get("moodify_batch") != LOG_VERSION:
            raise BatchError(f"{self.log} is not a usable progress log; start again with --overwrite")
        if header["fingerprint"] != self.fingerprint:
            changed = sorted(k for k in set(header["fingerprint"]) | set(self.fingerprint)
                             if header["fingerprint"].get(k) != self.fingerprint.get(k))
            raise BatchError(f"the interrupted run in {self.partial} used different settings ({', '.join(changed)}); "
                             "resume with the same command, or start again with --overwrite")
        last = commits[-1]
        if not self.partial.exists() or self.partial.stat().st_size < last["bytes"]:
            raise BatchError(f"{self.partial} is shorter than its progress log says; start again with --overwrite")
        self.counts = Counts(**last["counts"])
        self.last_path = last.get("last")
        self._data = open(self.partial, "r+b")
        self._data.truncate(last["bytes"])  # rows written after the last commit are redone
        self._data.seek(0, os.SEEK_END)
        self._sync(self._data)
        self._log = open(self.log, "a", encoding="utf-8")

    def append(self, rows: list[tuple], counts: Counts, last_path: str) -> None:
        """Write one chunk's rows durably, then commit them in the log (that order is what makes kill -9 safe)."""
        self._data.write(self.writer.encode(rows))
        self._sync(self._data)
        self.counts.add(counts)
        self.last_path = last_path
        self._commit()

    def finish(self) -> None:
        """Close, convert if Parquet, and atomically put the finished file in place."""
        self._data.close()
        if self.fmt == "parquet":
            tmp = self.out.with_name(self.out.name + ".tmp")
            csv_to_parquet(self.partial, tmp)
            os.replace(tmp, self.out)
            self.partial.unlink()
        else:
            os.replace(self.partial, self.out)
        _fsync_dir(self.out.parent)
        self._log.close()
        self.log.unlink()

    def close(self) -> None:
        for fh in (self._data, self._log):
            if fh is not None and not fh.closed:
                fh.close()

    def _commit(self) -> None:
        self._log_line({"bytes": self._data.tell(), "counts": self.counts.__dict__, "last": self.last_path})

    def _log_line(self, record: dict) -> None:
        # ASCII JSON: a file name that is not valid UTF-8 (a lone surrogate in Python) is written
        # as a \udcXX escape and read back as the same str, so the log can always be written and resumed.
        self._log.write(json.dumps(record, ensure_ascii=True) + "\n")
        self._sync(self._log)

    @staticmethod
    def _sync(fh) -> None:
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    # The rename itself must reach the disk, or a power cut could bring the partial file back.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# The run


def _rows_for(item: _Analyzed) -> tuple[list[tuple], Counts]:
    """Rows for one input: one per face, one for no face, or one carrying the error."""
    blank = (None,) * (COLUMNS.index("error") - 3)  # face box, emotion, confidence, probabilities
    no_points = (None,) * len(LANDMARK_COLUMNS)
    if item.error is not None:
        return [(item.path, None, None, *blank, item.error, *no_points)], Counts(inputs=1, errors=1)
    if not item.boxes:
        return [(item.path, None, 0, *blank, None, *no_points)], Counts(inputs=1, no_face=1)
    rows = []
    landmarks = item.landmarks or [None] * len(item.boxes)
    for i, (box, p, points) in enumerate(zip(item.boxes, item.probs, landmarks)):
        top = int(np.argmax(p))
        xy = no_points if points is None else tuple(round(float(v), 1) for pt in points for v in pt)
        rows.append((item.path, i, len(item.boxes), *box, EMOTIONS[top], float(p[top]), *map(float, p), None, *xy))
    return rows, Counts(inputs=1, faces=len(item.boxes))


def _classify_chunk(items: list[_Analyzed], model, batch_size: int) -> tuple[list[tuple], Counts]:
    _classify(items, model, batch_size)
    rows, counts = [], Counts()
    for item in items:
        item_rows, item_counts = _rows_for(item)
        rows += item_rows
        counts.add(item_counts)
    return rows, counts


def _chunks(paths: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(itertools.islice(paths, size)):
        yield chunk


def _model_identity(name_or_path: str | None) -> str:
    """The sha256 of the model file, so a resumed run never mixes two models' rows."""
    from .weights import resolve_model_path, sha256_file

    path = Path(name_or_path) if name_or_path and str(name_or_path).lower().endswith(".onnx") \
        else resolve_model_path(name_or_path)[0]
    return sha256_file(path) if path.is_file() else str(path)


class _Progress:
    """A tqdm bar whose total arrives from a background count of the inputs (no wait to start)."""

    def __init__(self, specs: Sequence[str], shard, *, initial: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(initial=initial, unit="img", disable=not enabled, smoothing=0.05, dynamic_ncols=True,
                        desc="moodify batch")
        if enabled and "-" not in specs:  # stdin can be read only once
            threading.Thread(target=self._count, args=(specs, shard), daemon=True).start()

    def _count(self, specs, shard) -> None:
        total = sum(1 for _ in iter_inputs(specs, shard=shard))
        self.bar.total = total
        self.bar.refresh()

    def update(self, n: int, counts: Counts) -> None:
        self.bar.set_postfix(faces=counts.faces, no_face=counts.no_face, errors=counts.errors, refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 image``, ``2 images``: a number with its noun agreeing."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


@dataclass
class Summary:
    counts: Counts
    seconds: float
    processed: int  # inputs processed by this invocation (a resumed run skips the rest)
    out: Path
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, error): the first unreadable inputs

    def line(self, shard) -> str:
        c = self.counts
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        where = f" (shard {shard[0]}/{shard[1]})" if shard else ""
        return (f"moodify batch: {_count(c.inputs, 'image')}{where}: {_count(c.faces, 'face')}, "
                f"{c.no_face:,} without a face, {_count(c.errors, 'error')}; {_count(self.processed, 'image')} in "
                f"{self.seconds:.1f} s this run ({rate:,.1f} images/s) -> {self.out}")

    def failure_report(self) -> str:
        """The unreadable inputs, for stderr: how many, the first ``NAMED_FAILURES`` with why, where the rest are."""
        errors = self.counts.errors
        rows = "its row gives" if errors == 1 else "their rows give"
        lines = [f"moodify batch: {_count(errors, 'input')} could not be read; {rows} the reason in {self.out} "
                 "(column error)"]
        lines += [f"  {path}: {error}" for path, error in self.failures]
        if errors > len(self.failures):
            earlier = ", read by the interrupted run this one resumed" if len(self.failures) < NAMED_FAILURES else ""
            lines.append(f"  and {errors - len(self.failures):,} more{earlier}")
        return "\n".join(lines)


def run_batch(inputs: Sequence[str], out: str | os.PathLike, *, model=None, model_name: str | None = None,
              backend: str = "onnx", detector_spec: dict | None = None, pre_cropped: bool = False,
              workers: int = 1, shard: tuple[int, int] | None = None, chunk_size: int = CHUNK_SIZE,
              batch_size: int = 256, resume: bool = False, overwrite: bool = False,
              progress: bool = True) -> Summary:
    """Classify every face in ``inputs`` into ``out`` (.csv, .jsonl or .parquet); see the module doc.

    ``model``: a loaded ``EmotionModel`` / ``OnnxEmotionModel`` (else ``model_name`` is loaded with
    ``backend``). ``workers``: processes that decode and detect (1: all in this process).
    """
    from .weights import load_model

    out = Path(out)
    check_inputs(inputs)
    _check_output_target(out)
    detector_spec = detector_spec or {"kind": "yunet"}
    fingerprint = {
        "inputs": list(inputs), "shard": list(shard) if shard else None, "pre_cropped": pre_cropped,
        "detector": None if pre_cropped else detector_spec, "chunk_size": chunk_size, "backend": backend,
        "model": _model_identity(model_name) if model is None else f"{model.name}:{getattr(model, 'source_sha256', '')}",
    }
    output = ResumableOutput(out, fingerprint)
    if output.interrupted_run_exists() and not (resume or overwrite):
        raise BatchError(f"an interrupted run left {output.partial}: pass --resume to continue it, "
                         "or --overwrite to start again")
    if out.exists() and not output.interrupted_run_exists() and not overwrite:
        if resume:
            print(f"moodify batch: {out} is already complete; nothing to resume", file=sys.stderr)
            return Summary(Counts(), 0.0, 0, out)
        raise BatchError(f"{out} exists: pass --overwrite to replace it")

    if model is None:
        model = load_model(model_name, backend=backend)
    resuming = resume and output.interrupted_run_exists()
    try:
        output.resume() if resuming else output.start()
        paths = iter_inputs(inputs, shard=shard)
        try:
            if resuming and output.counts.inputs:
                # Skip what is done, checking that the last done input is still where it was.
                skipped, last = 0, None
                for last in itertools.islice(paths, output.counts.inputs):
                    skipped += 1
                if skipped != output.counts.inputs or last != output.last_path:
                    raise BatchError(f"the inputs changed since the interrupted run (input {output.counts.inputs:,} "
                                     f"was {output.last_path!r}, now {last!r}); start again with --overwrite")
            summary = _process(paths, output, model, detector_spec, pre_cropped=pre_cropped, workers=workers,
                               chunk_size=chunk_size, batch_size=batch_size, specs=inputs, shard=shard,
                               progress=progress)
        finally:
            output.close()
        output.finish()
    except OSError as exc:  # a full disk, a folder made read-only mid-run: what is committed stays committed
        then = ("free space (or fix the permissions) and rerun the same command with --resume: nothing committed "
                "is lost" if output.interrupted_run_exists() else "choose another -o")
        raise BatchError(f"cannot write {exc.filename or output.partial}: {exc.strerror or exc}; {then}") from None
    return summary


def _check_output_target(out: Path) -> None:
    """Refuse, before any work, an output that could never be written (a folder, a read-only place)."""
    if out.is_dir():
        raise BatchError(f"{out} is a folder: -o takes a file name, like {out / 'results.csv'}")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the output's folders are made at the start; the first existing one must be writable
    if not os.access(folder, os.W_OK):
        raise BatchError(f"cannot write in {folder} (read-only or not permitted); choose another -o")


def _process(paths: Iterator[str], output: ResumableOutput, model, detector_spec: dict, *, pre_cropped: bool,
             workers: int, chunk_size: int, batch_size: int, specs, shard, progress: bool) -> Summary:
    from .onnx_backend import OnnxEmotionModel

    init_args = (detector_spec, model.preprocessing, pre_cropped)
    chunks = _chunks(paths, chunk_size)
    # With onnxruntime, each worker classifies its own faces single-threaded: on 2 cores that beats
    # one 2-thread forward pass in this process competing with the workers (~2,300 vs ~2,100 faces/s).
    onnx_path = str(model.path) if workers > 1 and isinstance(model, OnnxEmotionModel) else None
    processed, executor, failures = 0, None, []
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # Not fork: a process that has already run OpenCV's or torch's thread pools (a notebook,
        # a test session, a second batch in one program) can hang in a forked child. forkserver
        # forks workers from a clean process that has imported this module once.
        if "forkserver" in mp.get_all_start_methods():
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
        else:
            ctx = mp.get_context("spawn")
        executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                       initargs=(*init_args, True, onnx_path, os.getpid()))
        list(executor.map(_ping, range(workers)))  # start them all now, so start-up is not counted as work
    else:
        _init_worker(*init_args, False)
    bar = _Progress(specs, shard, initial=output.counts.inputs, enabled=progress)
    start = time.perf_counter()  # throughput counts work, not the workers' start-up
    try:
        if executor is None:
            pending = ((chunk, map(_analyze_many, [chunk])) for chunk in chunks)
        else:
            pending = _prefetch(((chunk, executor.map(_analyze_many, _split(chunk, 4 * workers))) for chunk in chunks),
                                PREFETCH_CHUNKS)
        for chunk, analyzed in pending:
            items = _collect(analyzed, chunk)
            rows, counts = _classify_chunk(items, model, batch_size)
            output.append(rows, counts, chunk[-1])
            processed += len(chunk)
            failures += [(it.path, it.error) for it in items if it.error is not None][:NAMED_FAILURES - len(failures)]
            bar.update(len(chunk), output.counts)
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
    return Summary(output.counts, time.perf_counter() - start, processed, output.out, failures)


def _prefetch(iterator: Iterator, n: int) -> Iterator:
    """Yield from ``iterator`` while keeping ``n`` items already started ahead of the consumer."""
    queue: deque = deque()
    for item in iterator:
        queue.append(item)
        if len(queue) > n:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


def _split(chunk: list[str], parts: int) -> list[list[str]]:
    """``chunk`` in up to ``parts`` consecutive pieces (tasks for the workers, in order)."""
    size = max(1, -(-len(chunk) // parts))
    return [chunk[i:i + size] for i in range(0, len(chunk), size)]


def _collect(analyzed: Iterator[list[_Analyzed]], chunk: list[str]) -> list[_Analyzed]:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return list(itertools.chain.from_iterable(analyzed))
    except BrokenProcessPool:
        raise BatchError(f"a worker process died (out of memory, or a decoder crash) on one of the "
                         f"{len(chunk)} inputs from {chunk[0]!r} to {chunk[-1]!r}; rerun with --resume, "
                         "and --workers 1 to find the file") from None


# ---------------------------------------------------------------------------------------------
# CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .options import add_detector_arguments

    p.epilog = EPILOG
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="folders (searched recursively), globs (quote them: 'photos/**/*.jpg'), files, list "
                        "files (.txt/.lst: one path per line, relative to the list's folder) or - (paths on stdin)")
    p.add_argument("-o", "--out", required=True,
                   help="output file: .csv, .jsonl or .parquet (needs pyarrow); written atomically at the end")
    p.add_argument("--pre-cropped", action="store_true",
                   help="inputs are face crops (like FER2013): skip detection, resize to the model's input")
    p.add_argument("--workers", type=int, default=0,
                   help="processes that decode and detect (0: one per CPU core; 1: everything in this process)")
    p.add_argument("--shard", type=parse_shard, default=None, metavar="K/N",
                   help="process only shard K of N (1-based), chosen by a hash of each path; join with `moodify merge`")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output or interrupted run")
    p.add_argument("--chunk-size", type=int, default=CHUNK_SIZE,
                   help="inputs per durable commit (a crash redoes at most one chunk)")
    p.add_argument("--batch-size", type=int, default=256, help="faces per network forward pass")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no summary; unreadable inputs are still named (the bar is "
                        "shown only when stderr is a terminal)")
    add_detector_arguments(p)
    # onnxruntime classifies ~1.5x faster than torch on CPU with the same outputs (within 1e-4,
    # tested), and a batch job is all classification; `--backend torch` is still there.
    p.set_defaults(backend="onnx")


def main(args: argparse.Namespace) -> int:
    """Run the batch job; an unreadable input gets a row with its error, is named on stderr, and
    makes the exit status ``EXIT_UNREADABLE`` once every input has been through."""
    if args.chunk_size < 1 or args.batch_size < 1:
        raise BatchError("--chunk-size and --batch-size must be at least 1")
    workers = args.workers if args.workers > 0 else (os.cpu_count() or 1)
    try:
        summary = run_batch(args.inputs, args.out, model_name=args.model, backend=args.backend,
                            detector_spec=detector_spec(args), pre_cropped=args.pre_cropped, workers=workers,
                            shard=args.shard, chunk_size=args.chunk_size, batch_size=args.batch_size,
                            resume=args.resume, overwrite=args.overwrite,
                            # A bar only on a terminal: in a log file or a pipe its redraws are junk
                            # lines around the summary and the failures named after it.
                            progress=not args.quiet and sys.stderr.isatty())
    except KeyboardInterrupt:
        print("moodify batch: interrupted; rerun the same command with --resume to continue", file=sys.stderr)
        return 130
    if not args.quiet and summary.seconds:
        print(summary.line(args.shard), file=sys.stderr)
    if summary.counts.errors:
        print(summary.failure_report(), file=sys.stderr)
        return EXIT_UNREADABLE
    return 0
