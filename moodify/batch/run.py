"""A batch job (``moodify batch``): emotions for every face in a folder, a glob or a list of millions of images.

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

import itertools
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import BatchError
from ..files import WriterLock, check_outputs
from ..names import printable
from ..pipeline.rows import face_row, landmark_values, numbered
from .inputs import check_inputs, iter_inputs
from .merge import write_shard_record
from .outputs import COLUMNS, Counts, ResumableOutput
from .people import REFERENCE_COLUMNS, People, unusable_report
from .worker import _Analyzed, _analyze_many, _classify, _init_worker, _ping

CHUNK_SIZE = 256  # inputs per commit: larger amortises fsync and batches more faces, smaller loses less on a crash
PREFETCH_CHUNKS = 2  # chunks decoded ahead of the classifier; bounds memory whatever the input size
# Exit status of a job that finished but could not read some inputs: distinct from 1 (classify's
# unreadable files) and 2 (a job that could not run), so a script can tell "done, with failures".
EXIT_UNREADABLE = 3
NAMED_FAILURES = 20  # unreadable inputs named on stderr at the end; the output's error column has them all


def _rows_for(item: _Analyzed, people: People | None = None) -> tuple[list[tuple], Counts]:
    """Rows for one input: one per face, one for no face, or one carrying the error; with ``people``,
    probabilities relative to the person's reference and ``REFERENCE_COLUMNS`` at the end."""
    blank = (None,) * (COLUMNS.index("error") - 3)  # face box, emotion, confidence, probabilities
    no_points = landmark_values(None)
    probs, extra = item.probs, None
    if people is not None:
        probs, extra = people.adjust(item.path, item.probs if item.error is None else None)
    if item.error is not None:
        rows, counts = [(item.path, None, None, *blank, item.error, *no_points)], Counts(inputs=1, errors=1)
    elif not item.boxes:
        rows, counts = [(item.path, None, 0, *blank, None, *no_points)], Counts(inputs=1, no_face=1)
    else:
        rows = []
        landmarks = item.landmarks or [None] * len(item.boxes)
        for number, (box, p, points) in numbered(zip(item.boxes, probs, landmarks)):
            face, *described = face_row(number, box, p)
            rows.append((item.path, face, len(item.boxes), *described, None, *landmark_values(points)))
        counts = Counts(inputs=1, faces=len(item.boxes))
    if extra is not None:
        rows = [row + values for row, values in zip(rows, extra)]
    return rows, counts


def _classify_chunk(items: list[_Analyzed], model, batch_size: int,
                    people: People | None = None) -> tuple[list[tuple], Counts]:
    _classify(items, model, batch_size)
    rows, counts = [], Counts()
    for item in items:
        item_rows, item_counts = _rows_for(item, people)
        rows += item_rows
        counts.add(item_counts)
    return rows, counts


def _chunks(paths: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(itertools.islice(paths, size)):
        yield chunk


def _model_identity(name_or_path: str | None) -> str:
    """The sha256 of the model file, so a resumed run never mixes two models' rows."""
    from ..model.checkpoint import sha256_file
    from ..model.registry import resolve_model_path

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
                f"{self.seconds:.1f} s this run ({rate:,.1f} images/s) -> {printable(str(self.out))}")

    def failure_report(self) -> str:
        """The unreadable inputs, for stderr: how many, the first ``NAMED_FAILURES`` with why, where the rest are."""
        errors = self.counts.errors
        rows = "its row gives" if errors == 1 else "their rows give"
        lines = [f"moodify batch: {_count(errors, 'input')} could not be read; {rows} the reason in {printable(str(self.out))} "
                 "(column error)"]
        lines += [f"  {printable(path)}: {printable(error)}" for path, error in self.failures]
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
    out = Path(out)
    check_inputs(inputs)
    check_outputs({"-o": out}, [spec for spec in inputs if spec != "-"])
    _check_output_target(out)
    # One writer per output: a second run given the same -o (two shards given one name) is
    # refused here, before it reads the first one's progress log or touches its files.
    with WriterLock(out, error=BatchError):
        return _run_batch(inputs, out, model=model, model_name=model_name, backend=backend,
                          detector_spec=detector_spec, pre_cropped=pre_cropped, workers=workers, shard=shard,
                          chunk_size=chunk_size, batch_size=batch_size, resume=resume, overwrite=overwrite,
                          progress=progress)


def _run_batch(inputs: Sequence[str], out: Path, *, model, model_name: str | None, backend: str,
               detector_spec: dict | None, pre_cropped: bool, workers: int, shard: tuple[int, int] | None,
               chunk_size: int, batch_size: int, resume: bool, overwrite: bool, progress: bool) -> Summary:
    from ..model.registry import load_model

    detector_spec = detector_spec or {"kind": "yunet"}
    people = People.from_inputs(inputs)
    if people is not None and pre_cropped:
        raise BatchError("a person list's references need detection: leave out --pre-cropped")
    fingerprint = {
        "inputs": list(inputs), "shard": list(shard) if shard else None, "pre_cropped": pre_cropped,
        "detector": None if pre_cropped else detector_spec, "chunk_size": chunk_size, "backend": backend,
        "model": _model_identity(model_name) if model is None else f"{model.name}:{getattr(model, 'source_sha256', '')}",
    }
    if people is not None:
        model, fingerprint["people"] = _with_references(people, model, model_name, backend, detector_spec)
    output = ResumableOutput(out, fingerprint, COLUMNS + REFERENCE_COLUMNS if people is not None else COLUMNS)
    if output.interrupted_run_exists() and not (resume or overwrite):
        raise BatchError(f"an interrupted run left {output.partial}: pass --resume to continue it, "
                         "or --overwrite to start again")
    if out.exists() and not output.interrupted_run_exists() and not overwrite:
        if resume:
            print(f"moodify batch: {printable(str(out))} is already complete; nothing to resume", file=sys.stderr)
            return Summary(Counts(), 0.0, 0, out)
        raise BatchError(f"{out} exists: pass --overwrite to replace it")

    if not pre_cropped:
        from ..pipeline.detect import make_detector

        make_detector(**detector_spec)  # a wrong --yunet-model is one line here, not a worker's traceback
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
                               progress=progress, people=people)
        finally:
            output.close()
        output.finish()
        write_shard_record(out, shard, inputs=output.counts.inputs)  # for `moodify merge` to count the shards
    except OSError as exc:  # a full disk, a folder made read-only mid-run: what is committed stays committed
        then = ("free space (or fix the permissions) and rerun the same command with --resume: nothing committed "
                "is lost" if output.interrupted_run_exists() else "choose another -o")
        raise BatchError(f"cannot write {exc.filename or output.partial}: {exc.strerror or exc}; {then}") from None
    return summary


def _with_references(people: People, model, model_name, backend: str, detector_spec: dict):
    """Load the model (if not given), make each person's reference with it, and say who has none."""
    from ..model.registry import load_model
    from ..pipeline.detect import make_detector
    from ..pipeline.recognizer import Recognizer

    if model is None:
        model = load_model(model_name, backend=backend)
    people.make_references(Recognizer(model, make_detector(**detector_spec)))
    report = unusable_report(people)
    if report:
        print(report, file=sys.stderr)
    return model, people.fingerprint()


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
             workers: int, chunk_size: int, batch_size: int, specs, shard, progress: bool,
             people: People | None = None) -> Summary:
    from ..model.onnx_backend import OnnxEmotionModel

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
        # forks workers from a clean process that has imported the worker module once.
        if "forkserver" in mp.get_all_start_methods():
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["moodify.batch.worker"])
        else:
            ctx = mp.get_context("spawn")
        executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                       initargs=(*init_args, True, onnx_path, os.getpid()))
        _start_workers(executor, workers)  # all of them now, so start-up is not counted as work
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
            rows, counts = _classify_chunk(items, model, batch_size, people)
            output.append(rows, counts, chunk[-1])
            processed += len(chunk)
            failures += [(it.path, it.error) for it in items if it.error is not None][:NAMED_FAILURES - len(failures)]
            bar.update(len(chunk), output.counts)
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
    return Summary(output.counts, time.perf_counter() - start, processed, output.out, failures)


WORKER_START_ROUNDS = 20  # rounds of pings that wait for every worker to answer at least once


def _start_workers(executor, workers: int) -> None:
    """Start every worker of ``executor``, then take the names off its queues' semaphores.

    Under forkserver (or spawn) multiprocessing names each lock and semaphore of the pool's two
    queues (3 + 2 of them) in /dev/shm, for the workers to open, and registers each name with its
    resource tracker. A ``kill -9`` of this process left the names to that tracker, which removed
    them and printed "resource_tracker: There appear to be 5 leaked semaphore objects" into the
    terminal where the user was resuming. Once every worker has answered a ping it has opened
    them, and the names serve no one: they are removed now (the open semaphores work on), so a
    killed run leaves nothing behind and nothing to warn about.
    """
    pids: set[int] = set()
    for _ in range(WORKER_START_ROUNDS):
        pids |= set(executor.map(_ping, [0.05] * workers))  # a short hold, so each ping finds an idle worker
        if len(pids) >= workers:
            _unlink_queue_semaphores(executor)
            return
    # A worker that never answered may still have to open them: the names stay (and the warning may come back).


def _unlink_queue_semaphores(executor) -> None:
    """Remove the names of the semaphores of ``executor``'s call and result queues, and the exit
    handlers (and resource-tracker entries) that would have removed them. These are
    ``concurrent.futures`` and ``multiprocessing`` internals, unchanged since Python 3.8: if they
    ever change, nothing is removed, and all that comes back is the tracker's warning after a kill -9."""
    import _multiprocessing
    from multiprocessing import resource_tracker, synchronize, util

    try:
        queues = [executor._call_queue, executor._result_queue]
        names = {lock._semlock.name for queue in queues for lock in vars(queue).values()
                 if isinstance(lock, synchronize.SemLock) and lock._semlock.name}
        cleanups = [f for f in list(util._finalizer_registry.values())
                    if getattr(f, "_callback", None) is synchronize.SemLock._cleanup and f._args[0] in names]
    except AttributeError:
        return
    for finalizer in cleanups:
        finalizer.cancel()
    for name in names:
        try:
            _multiprocessing.sem_unlink(name)
        except OSError:
            pass
        resource_tracker.unregister(name, "semaphore")


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
