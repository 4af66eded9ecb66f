"""What a batch job writes: its columns, CSV / JSONL / Parquet writers, and the resumable output.

``OUT.progress`` is the commit log: its last complete line says how many inputs and how many
bytes of ``OUT.partial`` are done. ``--resume`` truncates the partial file to that byte count and
skips that many inputs, so a run killed at any instant (kill -9 included) continues with no
duplicate and no missing row.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import BatchError
from ..files import create_new, open_existing
from ..labels import EMOTIONS
from ..names import csv_cell
from ..pipeline.rows import LANDMARK_COLUMNS

# One row per face; ``face`` counts from 1 in each image (largest first), as every Moodify table.
COLUMNS = ("path", "face", "faces", "x", "y", "w", "h", "emotion", "confidence", *EMOTIONS, "error", *LANDMARK_COLUMNS)
INT_COLUMNS = frozenset({"face", "faces", "x", "y", "w", "h"})
FLOAT_COLUMNS = frozenset({"confidence", *EMOTIONS, *LANDMARK_COLUMNS})
# The columns a job with references adds (moodify.batch.people.REFERENCE_COLUMNS), typed the same way.
_INT = INT_COLUMNS | {"reference", "relative_to_reference"}
_FLOAT = FLOAT_COLUMNS | {f"raw_{e}" for e in EMOTIONS}
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
LOG_VERSION = 1


class CsvFormat:
    """CSV with a header row; probabilities with 6 decimals, landmarks with 1; empty cells for missing values.

    ``columns``: ``COLUMNS``, or ``COLUMNS`` plus ``moodify.batch.people.REFERENCE_COLUMNS`` for a job
    with references. ``spreadsheet_safe``: text cells go through ``moodify.names.csv_cell`` (a leading
    ``'`` where a spreadsheet could take them for a formula); off only for the rows a Parquet file is
    built from, which keep the exact text.
    """

    def __init__(self, columns: Sequence[str] = COLUMNS, *, spreadsheet_safe: bool = True):
        self.columns = tuple(columns)
        # Landmarks are pixel positions: a tenth of a pixel is all the precision they have.
        self._decimals = tuple(1 if c in LANDMARK_COLUMNS else 6 for c in self.columns)
        self.text = csv_cell if spreadsheet_safe else str

    def header(self) -> bytes:
        return self._encode([self.columns])

    def encode(self, rows: Iterable[tuple]) -> bytes:
        text = self.text
        return self._encode(tuple("" if v is None else f"{v:.{d}f}" if isinstance(v, float) else
                                  text(v) if isinstance(v, str) else v
                                  for v, d in zip(row, self._decimals)) for row in rows)

    @staticmethod
    def _encode(rows: Iterable[Sequence]) -> bytes:
        # The writer ends rows with "\r\n" only so that it quotes every cell holding a "\r" as well
        # as a "\n" (with "\n" alone it leaves a name like "a\rb.jpg" bare, and no reader can parse
        # the row); each row then ends with "\n", as every Moodify CSV does.
        buf = io.StringIO()
        writer, lines = csv.writer(buf, lineterminator="\r\n"), []
        for row in rows:
            writer.writerow(row)
            lines.append(buf.getvalue()[:-2])
            buf.seek(0)
            buf.truncate()
        # backslashreplace: a file name that is not valid UTF-8 still gets a readable row.
        return "".join(line + "\n" for line in lines).encode("utf-8", "backslashreplace")


class JsonlFormat:
    """One JSON object per line; null for missing values."""

    def __init__(self, columns: Sequence[str] = COLUMNS):
        self.columns = tuple(columns)

    def header(self) -> bytes:
        return b""

    def encode(self, rows: Iterable[tuple]) -> bytes:
        lines = (json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in zip(self.columns, row)},
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


def _row_writer(fmt: str, columns: Sequence[str] = COLUMNS) -> CsvFormat | JsonlFormat:
    # Parquet cannot be appended to safely, so its rows build up as CSV (with the exact text) and
    # are converted at the end.
    return JsonlFormat(columns) if fmt == "jsonl" else CsvFormat(columns, spreadsheet_safe=fmt == "csv")


def csv_to_parquet(src: str | os.PathLike, dst: str | os.PathLike, columns: Sequence[str] = COLUMNS) -> None:
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

    types = {c: pa.int32() if c in _INT else pa.float64() if c in _FLOAT else pa.string() for c in columns}
    pandas_dtypes = {c: "Int32" if c in _INT else "float64" if c in _FLOAT else "string" for c in columns}
    empty = pd.DataFrame({c: pd.Series(dtype=dtype) for c, dtype in pandas_dtypes.items()})
    pandas_metadata = pa.Schema.from_pandas(empty, preserve_index=False).metadata
    schema = pa.schema([(c, types[c]) for c in columns], metadata=pandas_metadata)
    # Only an empty cell is missing: a file may be called "NA" or "null" (pyarrow's default null strings).
    convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True, null_values=[""],
                                   quoted_strings_can_be_null=False)
    reader = pacsv.open_csv(src, parse_options=pacsv.ParseOptions(newlines_in_values=True), convert_options=convert)
    with open(create_new(dst), "wb") as fh, pq.ParquetWriter(fh, schema) as writer:
        for batch in reader:
            writer.write_table(pa.Table.from_batches([batch]).select(list(columns)).cast(schema))


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

    def __init__(self, out: Path, fingerprint: dict, columns: Sequence[str] = COLUMNS):
        self.out = out
        self.columns = tuple(columns)
        self.partial = out.with_name(out.name + ".partial")
        self.log = out.with_name(out.name + ".progress")
        self.fingerprint = fingerprint
        self.fmt = output_format(out)
        self.writer = _row_writer(self.fmt, self.columns)
        self.counts = Counts()
        self.last_path: str | None = None
        self._data = None
        self._log = None

    def interrupted_run_exists(self) -> bool:
        return self.log.exists()

    def start(self) -> None:
        """A fresh run: an empty partial file holding the header, and a log with the fingerprint."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        # Made afresh, never through a link someone planted at OUT.partial or OUT.progress.
        self._data = open(create_new(self.partial), "wb")
        self._data.write(self.writer.header())
        self._sync(self._data)
        self._log = open(create_new(self.log), "w", encoding="utf-8")
        self._log_line({"moodify_batch": LOG_VERSION, "fingerprint": self.fingerprint})
        self._commit()

    def resume(self) -> None:
        """Reopen an interrupted run at its last commit, dropping whatever was written after it."""
        commits, header = [], None
        with open_existing(self.log, "r") as fh:
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
        self._data = open_existing(self.partial, "r+b")
        self._data.truncate(last["bytes"])  # rows written after the last commit are redone
        self._data.seek(0, os.SEEK_END)
        self._sync(self._data)
        self._log = open_existing(self.log, "a")

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
            csv_to_parquet(self.partial, tmp, self.columns)
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
