"""``moodify merge``: join the outputs of ``moodify batch --shard K/N`` runs into one file."""

from __future__ import annotations

import argparse
import sys

from ..names import printable
from ..batch.merge import merge_files

DESCRIPTION = ("Join the outputs of sharded `moodify batch --shard K/N` runs (CSV, JSONL or Parquet) into one "
               "file, sorted by path and face.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="SHARD_OUTPUT",
                   help="outputs of `moodify batch --shard K/N` (.csv, .jsonl or .parquet; globs allowed)")
    p.add_argument("-o", "--out", required=True, help="merged file: .csv, .jsonl or .parquet")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--allow-missing", action="store_true",
                   help="merge even when some of the N shards are missing (each shard's OUT.shard record says "
                        "which K of N it is)")


def main(args: argparse.Namespace) -> int:
    notes: list[str] = []
    rows, files = merge_files(args.inputs, args.out, overwrite=args.overwrite, allow_missing=args.allow_missing,
                              notes=notes)
    for note in notes:
        print(f"moodify merge: {printable(note)}", file=sys.stderr)
    print(f"moodify merge: {rows:,} rows from {files} file(s) -> {printable(args.out)}", file=sys.stderr)
    return 0
