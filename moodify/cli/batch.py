"""``moodify batch``: every face in many images into one CSV, JSONL or Parquet file."""

from __future__ import annotations

import argparse
import os
import sys

from ..batch.inputs import parse_shard
from ..batch.run import CHUNK_SIZE, EXIT_UNREADABLE, run_batch
from ..batch.ray import RAY_CHUNK_SIZE
from ..errors import BatchError
from ..names import printable
from .options import add_detector_arguments, detector_spec

DESCRIPTION = ("Classify every face in many images (folders, globs, lists of paths) into a CSV, JSONL or "
               "Parquet file: one row per face, resumable, parallel, shardable across machines. Columns: path, "
               "face (1, 2, ... largest first, as `moodify classify` and the app number them), faces (in that "
               "image; 0 = no face found), x, y, w, h (box in pixels), emotion, confidence, the 7 probabilities, error (why an unreadable image was skipped), "
               "then the 5 YuNet landmarks in pixels (right_eye_x, right_eye_y, ..., mouth_left_y; empty with Haar).")
EPILOG = (f"exit status: 0 every input was read; {EXIT_UNREADABLE} the job finished but some inputs could not be "
          "read (the first ones are named on stderr, every one has a row with its error); 2 the job could not "
          "start or stopped (bad options, an unwritable output); 130 interrupted (continue with --resume)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="folders (searched recursively), globs (quote them: 'photos/**/*.jpg'), files, list "
                        "files (.txt/.lst: one path per line, relative to the list's folder), - (paths on stdin), or "
                        "a person list: a .csv with columns path,person,reference (1 marks a person's neutral photos), "
                        "whose faces are then read relative to their person's reference (columns person, reference, "
                        "relative_to_reference and raw_<emotion> are added)")
    p.add_argument("-o", "--out", required=True,
                   help="output file: .csv, .jsonl or .parquet (needs pyarrow); written atomically at the end")
    p.add_argument("--pre-cropped", action="store_true",
                   help="inputs are face crops (like FER2013): skip detection, resize to the model's input")
    p.add_argument("--workers", type=int, default=0,
                   help="processes that decode and detect (0: one per CPU core; 1: everything in this process)")
    p.add_argument("--shard", type=parse_shard, default=None, metavar="K/N",
                   help="process only shard K of N (1-based), chosen by a hash of each path; OUT.shard records K/N, so "
                        "that `moodify merge` can tell when a shard is missing")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output or interrupted run")
    p.add_argument("--chunk-size", type=int, default=None,
                   help=f"inputs per durable commit (a crash redoes at most one chunk); default {CHUNK_SIZE}, with "
                        f"--ray {RAY_CHUNK_SIZE} (inputs per Parquet file)")
    p.add_argument("--batch-size", type=int, default=256, help="faces per network forward pass")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray (pip install -e '.[ray]'): no ADDRESS starts one on this machine, 'auto' joins "
                        "this machine's cluster, HOST:PORT or ray://HOST:10001 a remote one. INPUTs may also be "
                        "s3:// gs:// URIs; -o is then a folder of Parquet files, --workers the number of actors "
                        "(0: one per CPU of the cluster). Give --ray after the INPUTs, or as --ray=ADDRESS")
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
    if (args.chunk_size is not None and args.chunk_size < 1) or args.batch_size < 1:
        raise BatchError("--chunk-size and --batch-size must be at least 1")
    workers = args.workers if args.workers > 0 else (os.cpu_count() or 1)
    try:
        if args.ray is not None:
            summary = _run_ray(args)
        else:
            summary = run_batch(args.inputs, args.out, model_name=args.model, backend=args.backend,
                                detector_spec=detector_spec(args), pre_cropped=args.pre_cropped, workers=workers,
                                shard=args.shard, chunk_size=args.chunk_size or CHUNK_SIZE,
                                batch_size=args.batch_size, resume=args.resume, overwrite=args.overwrite,
                                progress=_progress(args))
    except KeyboardInterrupt:
        print("moodify batch: interrupted; rerun the same command with --resume to continue", file=sys.stderr)
        return 130
    if not args.quiet and summary.seconds:
        print(summary.line(args.shard), file=sys.stderr)
    if summary.counts.errors:
        print(summary.failure_report(), file=sys.stderr)
        return EXIT_UNREADABLE
    return 0


def _progress(args: argparse.Namespace) -> bool:
    # A bar only on a terminal: in a log file or a pipe its redraws are junk lines around the
    # summary and the failures named after it.
    return not args.quiet and sys.stderr.isatty()


def _run_ray(args: argparse.Namespace):
    from ..batch.ray import run_ray

    if args.shard:
        raise BatchError("--shard and --ray: Ray spreads the job over the cluster itself; drop --shard")
    from ..batch.people import is_person_list

    lists = [spec for spec in args.inputs if is_person_list(spec)]
    if lists:
        raise BatchError(f"{printable(lists[0])} is a person list (path,person,reference): reading faces relative to "
                         "people's references runs without --ray for now")
    if os.path.exists(args.ray) or not (args.ray in ("local", "auto") or ":" in args.ray):
        raise BatchError(f"--ray takes an ADDRESS (auto, HOST:PORT, ray://HOST:10001), not {args.ray!r}; "
                         "give --ray after the INPUTs, or as --ray=ADDRESS")
    return run_ray(args.inputs, args.out, address=args.ray, model_name=args.model, backend=args.backend,
                   detector_spec=detector_spec(args), pre_cropped=args.pre_cropped, workers=args.workers,
                   chunk_size=args.chunk_size or RAY_CHUNK_SIZE, batch_size=args.batch_size, resume=args.resume,
                   overwrite=args.overwrite, progress=_progress(args))
