"""Moodify's errors: one base class, one subclass per kind of thing that can be wrong.

A command raises one of these and ``moodify.cli.main`` prints it as one line,
``moodify COMMAND: error: MESSAGE``, and exits with its ``exit_status`` (2: the job could not run,
as every command has always said it). The messages name the file or option at fault and say
what to do, in one line.

Exit statuses that report how a finished job went (``classify``'s 1 for unreadable files,
``batch``'s ``EXIT_UNREADABLE``, 130 after Ctrl-C) are return values, not errors.
"""

from __future__ import annotations

EXIT_ERROR = 2  # the job could not start or stopped: bad options, unreadable model, unwritable output


class MoodifyError(Exception):
    """Something Moodify cannot do, said in one line. ``exit_status``: what the command exits with."""

    exit_status = EXIT_ERROR


class ImageError(MoodifyError):
    """An input that is not a readable image; the message names it and says why."""


class ModelError(MoodifyError):
    """A model that cannot be loaded: unknown name, missing or corrupt file, wrong labels.

    The message is always one line (a library's multi-line explanation is joined into it).
    """

    def __init__(self, message: str):
        super().__init__(" ".join(line.strip() for line in str(message).splitlines() if line.strip()))


class DetectorError(MoodifyError, ValueError):
    """A face detector that cannot be built (a missing or replaced model file, a bad option)."""


class DataError(MoodifyError):
    """Training or evaluation data that is missing or malformed."""


class VideoError(MoodifyError):
    """A video that cannot be opened or written, or a video option out of range."""


class TrainError(MoodifyError, ValueError):
    """A training run that cannot start or resume; the message says what to do."""


class BatchError(MoodifyError, ValueError):
    """A batch job that cannot start or resume; the message says what to do."""


class OutputError(MoodifyError, ValueError):
    """An output that must not or cannot be written: it is an input, a folder, or under a file."""
