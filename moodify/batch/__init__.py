"""Batch jobs over many images: ``inputs`` (expansion, shards) -> ``worker`` (decode, detect,
crop in worker processes) -> ``run`` (classify, commit chunk by chunk) -> ``outputs`` (columns,
CSV / JSONL / Parquet writers, the resumable journal); ``merge`` joins shards' outputs.
The commands are ``moodify.cli.batch`` and ``moodify.cli.merge``.
"""

from ..errors import BatchError
from .inputs import iter_inputs, shard_of
from .merge import merge_files
from .outputs import COLUMNS, Counts, ResumableOutput
from .run import EXIT_UNREADABLE, Summary, run_batch

__all__ = ["BatchError", "COLUMNS", "Counts", "EXIT_UNREADABLE", "ResumableOutput", "Summary", "iter_inputs",
           "merge_files", "run_batch", "shard_of"]


def __getattr__(name: str):
    """The other names of the module this package was (before the folders), from their new homes."""
    from .._moved import moved_attribute

    return moved_attribute(__name__, name, ("moodify.batch.outputs", "moodify.batch.inputs", "moodify.batch.run",
                                              "moodify.batch.worker", "moodify.cli.batch"))
