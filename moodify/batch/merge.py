"""Joining the outputs of ``moodify batch --shard K/N`` runs into one file (``moodify merge``).

A cluster job array runs the same ``moodify batch`` command with ``--shard 1/N`` ... ``--shard N/N``,
each writing its own file; this joins them. Rows are sorted by path, then face index, so the
result does not depend on which shard finished first. Refuses to merge a shard that is still
running or was interrupted (its ``.progress`` log is beside it), and rows that two shards share
(two jobs given the same K), because either would silently skew every count downstream.

A finished shard leaves a record beside its output, ``OUT.shard`` (``{"shard": K, "of": N, ...}``),
so a shard that never ran (or whose file was left behind) is noticed: merge names the missing
ones and refuses, unless told ``allow_missing``. Shard outputs copied without their records can
still be merged; merge then says that it could not check.

Example (Slurm)::

    #SBATCH --array=1-8
    moodify batch /data/photos -o out/part-$SLURM_ARRAY_TASK_ID.csv --shard $SLURM_ARRAY_TASK_ID/8 --resume
    # then, once all 8 have finished:
    moodify merge out/part-*.csv -o results.csv
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import BatchError
from ..files import check_outputs, create_new, same_file
from ..labels import EMOTIONS
from ..names import from_csv_cell
from .outputs import COLUMNS, FLOAT_COLUMNS, INT_COLUMNS, CsvFormat, JsonlFormat, csv_to_parquet, output_format


def read_rows(path: str | os.PathLike):
    """A batch output file as a pandas DataFrame with nullable integer columns, in COLUMNS order."""
    import pandas as pd

    fmt = output_format(path)
    if fmt in ("csv", "jsonl"):
        _check_ends_with_a_whole_row(path)
    if fmt == "csv":
        _check_field_counts(path)
        # Text columns keep "" (a file may be called "NA"); numeric ones read "" as missing.
        df = pd.read_csv(path, dtype={c: "string" for c in COLUMNS if c not in INT_COLUMNS | FLOAT_COLUMNS},
                         keep_default_na=False, na_values={c: [""] for c in INT_COLUMNS | FLOAT_COLUMNS},
                         encoding="utf-8")
        for c in ("path", "emotion", "error"):  # the exact text, without the spreadsheet guard (names.csv_cell)
            df[c] = df[c].map(from_csv_cell, na_action="ignore")
    elif fmt == "jsonl":
        with open(path, encoding="utf-8") as fh:
            try:
                records = [json.loads(line) for line in fh if line.strip()]
            except json.JSONDecodeError as exc:
                raise BatchError(f"{path}: line {exc.lineno} is not a JSON row ({exc.msg}); "
                                 "rerun that shard") from None
            extra = {"relative_to_reference"} & set(records[0]) if records else set()
            df = pd.DataFrame(records, columns=list(COLUMNS) + sorted(extra))
    else:
        df = pd.read_parquet(path)
    if "relative_to_reference" in df.columns:
        raise BatchError(f"{path}: an output read relative to people's references (a person list); merging those "
                         "is not supported yet: run the person list on one machine")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise BatchError(f"{path}: not a moodify batch output (missing columns {', '.join(missing)})")
    df = df[list(COLUMNS)]
    for c in INT_COLUMNS:
        df[c] = df[c].astype("Int64")
    for c in FLOAT_COLUMNS:
        df[c] = df[c].astype("float64")
    for c in ("emotion", "error"):
        df[c] = df[c].astype("string").replace("", pd.NA)  # CSV's empty cell and JSON's null mean the same
    df["path"] = df["path"].astype("string")
    _check_complete_rows(df, path)
    return df


def _check_ends_with_a_whole_row(path: str | os.PathLike) -> None:
    """``moodify batch`` ends every row with a newline; a file that does not was cut off mid-row
    (a copy interrupted, a disk full), and its last row may hold a number cut short."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            raise BatchError(f"{path}: the last row is cut off (no newline at the end): the file is incomplete; "
                             "rerun that shard")


def _check_field_counts(path: str | os.PathLike) -> None:
    """Every CSV row has as many fields as the header: a short row (values lost) is refused,
    which pandas would otherwise fill with blanks."""
    import csv

    limit = csv.field_size_limit()
    # A cell as long as the file: an error row may quote a very long path (the default limit, 128 KiB,
    # refused such a shard with a traceback). The module-wide limit is put back at once.
    csv.field_size_limit(max(limit, os.path.getsize(path) + 1))
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return
            for number, row in enumerate(reader, start=1):
                if len(row) != len(header):
                    raise BatchError(f"{path}: row {number} has {len(row)} fields, the header {len(header)}: "
                                     "the file is damaged; rerun that shard")
    except csv.Error as exc:
        raise BatchError(f"{path}: not a readable CSV ({exc}); the file is damaged; rerun that shard") from None
    finally:
        csv.field_size_limit(limit)


FACE_FIELDS = ("face", "faces", "x", "y", "w", "h", "emotion", "confidence", *EMOTIONS)


def _check_complete_rows(df, path: str | os.PathLike) -> None:
    """Every row is a whole face (box, emotion, all 7 probabilities), a no-face row or an error row."""
    import pandas as pd

    is_face = df["face"].notna() | df["emotion"].notna() | df[list(EMOTIONS)].notna().any(axis=1)
    bad = (is_face & df[list(FACE_FIELDS)].isna().any(axis=1)) | (~is_face & df["faces"].isna() & df["error"].isna())
    bad |= df["path"].isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        missing = [c for c in FACE_FIELDS if pd.isna(df[c].iloc[i])] if is_face.iloc[i] else ["faces or error"]
        raise BatchError(f"{path}: row {i + 1} ({df['path'].iloc[i]}) is incomplete (no {', '.join(missing)}); "
                         f"{int(bad.sum())} such row(s): the file is damaged; rerun that shard")


SHARD_RECORD_SUFFIX = ".shard"  # OUT.shard: which shard of how many OUT holds
SHARD_RECORD_VERSION = 1


def shard_record_path(out: str | os.PathLike) -> Path:
    return Path(str(out) + SHARD_RECORD_SUFFIX)


def write_shard_record(out: str | os.PathLike, shard: tuple[int, int] | None, *, inputs: int) -> None:
    """Record beside a finished ``out`` which shard of how many it holds (none for an unsharded run:
    a record left by an earlier sharded run of the same name is removed)."""
    path = shard_record_path(out)
    if shard is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"moodify_shard": SHARD_RECORD_VERSION, "shard": shard[0], "of": shard[1],
                               "inputs": inputs}) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_shard_record(file: Path) -> tuple[int, int] | None:
    path = shard_record_path(file)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return int(record["shard"]), int(record["of"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise BatchError(f"{path} is not a shard record moodify batch wrote; remove it to merge {file} "
                         "without the shard check") from None


def check_shards(files: Sequence[Path], *, allow_missing: bool = False) -> list[str]:
    """Check from their records that ``files`` are all N shards of one job, each once.

    Raises ``BatchError`` naming the missing shards (unless ``allow_missing``), shard outputs
    without a record among ones with, or shards of different splits (K/3 with K/4). Returns
    notes for the user: the shards merged without, or that no check was possible.
    """
    records = {f: _read_shard_record(f) for f in files}
    known = {f: r for f, r in records.items() if r is not None}
    if not known:
        return [f"no shard records (OUT{SHARD_RECORD_SUFFIX}) beside the inputs: cannot check that every shard is here"]
    unknown = [str(f) for f, r in records.items() if r is None]
    if unknown and not allow_missing:
        raise BatchError(f"{', '.join(unknown)}: no shard record beside it, unlike the other inputs (was it made "
                         "by `moodify batch --shard K/N`?); pass --allow-missing to merge anyway")
    splits = sorted({n for _, n in known.values()})
    if len(splits) > 1:
        raise BatchError("the inputs are shards of different splits (" + ", ".join(
            f"{f} is {k}/{n}" for f, (k, n) in known.items()) + "); merge the shards of one job")
    n = splits[0]
    seen: dict[int, list[str]] = {}
    for f, (k, _) in known.items():
        seen.setdefault(k, []).append(str(f))
    twice = {k: fs for k, fs in seen.items() if len(fs) > 1}
    if twice:
        k, fs = min(twice.items())
        raise BatchError(f"shard {k}/{n} is given more than once ({', '.join(fs)})")
    missing = [k for k in range(1, n + 1) if k not in seen]
    if not missing:
        return []
    what = f"shard{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of {n} {'are' if len(missing) > 1 else 'is'} missing"
    if not allow_missing:
        raise BatchError(f"{what} (have {', '.join(f'{k}/{n}' for k in sorted(seen))}): run "
                         f"`moodify batch ... --shard K/{n}` for {'them' if len(missing) > 1 else 'it'}, "
                         "or pass --allow-missing to merge the others")
    return [f"warning: {what}; the merged file lacks their rows"]


def merge_files(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                overwrite: bool = False, allow_missing: bool = False,
                notes: list[str] | None = None) -> tuple[int, int]:
    """Merge batch outputs into ``out``; returns (rows written, files read). ``check_shards``'s
    notes are appended to ``notes`` when given."""
    import pandas as pd

    out = Path(out)
    fmt = output_format(out)
    files = _expand(inputs, exclude=out)
    # Checked before anything is read or written: an output that is a shard named on the command
    # line would lose that shard's rows (a glob that matches the output skips it, above).
    check_outputs({"-o": out}, files)
    if out.exists() and not overwrite:
        raise BatchError(f"{out} exists: pass --overwrite to replace it")
    for f in files:
        progress = Path(str(f) + ".progress")
        if progress.exists():
            raise BatchError(f"{f} is unfinished ({progress.name} is beside it): "
                             "finish that shard with `moodify batch ... --resume` first")
    frames = []
    for f in files:
        df = read_rows(f)
        df["_file"] = str(f)
        frames.append(df)
    rows = pd.concat(frames, ignore_index=True)
    # An image shows up in exactly one shard; a second copy means a shard was run twice or overlapping inputs.
    key = rows["face"].fillna(-1)
    dup = rows.assign(_key=key).duplicated(["path", "_key"], keep=False)
    if dup.any():
        first = rows[dup].iloc[0]
        holders = sorted(set(rows.loc[dup & (rows["path"] == first["path"]), "_file"]))
        raise BatchError(f"{first['path']} appears more than once (in {', '.join(holders)}): "
                         "were two shards given the same K, or the same file twice?")
    said = check_shards(files, allow_missing=allow_missing)
    if notes is not None:
        notes += said
    rows = rows.assign(_key=key).sort_values(["path", "_key"], kind="stable").drop(columns=["_file", "_key"])
    _write(rows, out, fmt)
    return len(rows), len(files)


def _expand(inputs: Sequence[str | os.PathLike], *, exclude: Path) -> list[Path]:
    """Input files; globs expanded here too, so quoting them works as well as letting the shell do it."""
    files: list[Path] = []
    for spec in map(str, inputs):
        matches = sorted(glob.glob(spec)) if any(c in spec for c in "*?[") else [spec]
        if not matches:
            raise BatchError(f"no file matches {spec!r}")
        for m in matches:
            if m != spec and m.endswith(SHARD_RECORD_SUFFIX):
                continue  # a shard's record matched by the same glob as its output
            p = Path(m)
            if not p.is_file():
                raise BatchError(f"no such file: {m}")
            if not (m != spec and same_file(p, exclude)):  # a glob's match that is the output is left out
                files.append(p)
    if not files:
        raise BatchError("nothing to merge")
    return files


def _records(rows) -> Iterator[tuple]:
    """DataFrame rows as plain tuples (None for missing, int / float / str), as ``moodify batch`` writes them."""
    import pandas as pd

    for values in rows.itertuples(index=False, name=None):
        out = []
        for c, v in zip(COLUMNS, values):
            if pd.isna(v):
                out.append(None)
            elif c in INT_COLUMNS:
                out.append(int(v))
            elif c in FLOAT_COLUMNS:
                out.append(float(v))
            else:
                out.append(str(v))
        yield tuple(out)


def _write(rows, out: Path, fmt: str) -> None:
    """Write through the batch writers (same bytes as an unsharded run), atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    writer = JsonlFormat() if fmt == "jsonl" else CsvFormat()
    with open(create_new(tmp), "wb") as fh:
        fh.write(writer.header())
        fh.write(writer.encode(_records(rows)))
    if fmt == "parquet":
        tmp_parquet = out.with_name(out.name + ".tmp.parquet")  # csv_to_parquet makes it afresh
        csv_to_parquet(tmp, tmp_parquet)
        os.replace(tmp_parquet, out)
        os.unlink(tmp)
    else:
        os.replace(tmp, out)
