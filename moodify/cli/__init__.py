"""The ``moodify`` command (also ``python -m moodify``): one sub-command per job.

Each command is a module with ``DESCRIPTION``, ``add_arguments(parser)`` and ``main(args) -> exit
status``: the ones that only parse options and call the package live here in ``moodify.cli``;
training and evaluation keep theirs beside their loops, shaped like torchvision's
reference scripts. Every module is imported only when the parser is built, and nothing under
``moodify`` imports this package's ``__init__``, so there is no import cycle between the CLI and
the commands.

Errors: a command raises a ``moodify.errors.MoodifyError`` (or, for a bad value, ``ValueError``
or ``FileNotFoundError``); ``main`` prints it as one line, ``moodify COMMAND: error: MESSAGE``, and
exits with its ``exit_status`` (2). The statuses a finished job reports (1, ``batch``'s 3, 130)
are the commands' return values; output cut off by its reader (``| head``) ends quietly with 141,
as a tool stopped by SIGPIPE does.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away

# name -> module holding DESCRIPTION, add_arguments and main, in the order `moodify --help` lists them
COMMANDS = {
    "classify": "moodify.cli.classify",
    "train": "moodify.training.train",
    "evaluate": "moodify.training.evaluate",
    "ensemble": "moodify.training.ensemble",
    "batch": "moodify.cli.batch",
    "merge": "moodify.cli.merge",
    "live": "moodify.cli.live",
    "video": "moodify.cli.video",
    "export": "moodify.cli.export",
}
# One line per command, for `moodify` alone and `moodify --help` (each command's --help says the rest).
SUMMARIES = {
    "classify": "faces and their emotions in a few photos, printed (or --json)",
    "train": "train an emotion CNN on FER2013",
    "evaluate": "score a model on a FER2013 split, or the whole pipeline on labelled photos (--photos)",
    "ensemble": "make one model of several trained ones",
    "batch": "every face in many images into one CSV, JSONL or Parquet file (resumable, shardable)",
    "merge": "join the outputs of `moodify batch --shard K/N` runs into one file",
    "live": "live emotions from a webcam, video file or stream, in a window or headless",
    "video": "annotate a video file, with a CSV timeline and a per-person summary",
    "export": "export the model as ONNX",
}


def get_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from .options import HelpFormatter

    parser = argparse.ArgumentParser(prog="moodify", formatter_class=HelpFormatter,
                                     description="Local-first facial emotion recognition.")
    parser.add_argument("--version", action="version", version=f"moodify {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=SUMMARIES[name], description=module.DESCRIPTION, formatter_class=HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(func=module.main)
    return parser


def command_list() -> str:
    """What ``moodify`` alone prints: the usage line and the commands, one line each (as ``git`` does)."""
    width = max(map(len, COMMANDS))
    lines = ["usage: moodify COMMAND [options]   (moodify COMMAND --help for a command's options)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {SUMMARIES[name]}" for name in COMMANDS]
    lines += ["", "The web app: streamlit run app.py"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ..errors import EXIT_ERROR, MoodifyError
    from ..names import printable

    if not (sys.argv[1:] if argv is None else argv):
        print(command_list())
        return EXIT_ERROR
    args = get_parser().parse_args(argv)
    # A file name that is not valid UTF-8 must not stop a run where stdout is strict UTF-8
    # (PYTHONIOENCODING=utf-8, a pipe in some locales): its odd bytes are printed as \udcXX escapes.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")
    try:
        status = args.func(args)
    except MoodifyError as exc:
        # Messages name files; a name's control characters are escaped (they could rewrite the terminal).
        print(f"moodify {args.command}: error: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_status
    except (FileNotFoundError, ValueError) as exc:
        print(f"moodify {args.command}: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"moodify {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`moodify ... | head`): stop quietly, as a shell tool does, and keep the
        # interpreter's last flush of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    # train and evaluate return their report (a dict): a finished run is status 0.
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
