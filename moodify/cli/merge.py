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


def main(args: argparse.Namespace) -> int:
    rows, files = merge_files(args.inputs, args.out, overwrite=args.overwrite)
    print(f"moodify merge: {rows:,} rows from {files} file(s) -> {printable(args.out)}", file=sys.stderr)
    return 0
