"""``moodify batch --ray``: the same batch job on a Ray cluster (Ray Data), for jobs that outgrow one machine.

Shape of a run::

    inputs, expanded by this process (the driver) as ``moodify batch`` expands them, plus
    s3:// gs:// ... URIs listed through pyarrow's filesystems; those already in OUT_DIR skipped
      -> blocks of BLOCK_INPUTS paths (fewer if ``chunk_size`` is smaller) in Ray's object store
      -> ``map_batches`` over an actor pool: each actor loads the model once (``_Classifier``)
         and runs the batch worker's own code on each block: decode, detect and crop with the one
         ``Recognizer``, classify, build the rows (``moodify.batch.run``'s), as Arrow
      -> the driver writes the rows of every ``chunk_size`` inputs into one Parquet file of OUT_DIR,
         atomically (a hidden temporary file renamed into place), with ``moodify batch``'s schema

Why the driver writes, not Ray's ``write_parquet``: a file is in OUT_DIR whole or not at all and
holds whole inputs, so ``--resume`` can trust every file it finds and skip their inputs by path,
and the driver sees every row for the summary and the exit status. Rows are small (a few hundred
bytes), so one writer is not the bottleneck. Ray retries a block whose actor died (the actor is
restarted, up to MAX_RETRIES times), and a block's rows reach the driver once, so a worker's
death neither loses nor doubles an input.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import BatchError
from ..pipeline.images import IMAGE_SUFFIXES
from .inputs import check_inputs, iter_inputs
from .outputs import COLUMNS, Counts
from .run import NAMED_FAILURES, Summary, _model_identity

INSTALL_HINT = "--ray needs Ray: pip install -e '.[ray]'"
RAY_CHUNK_SIZE = 4096  # inputs per Parquet part: fewer, larger files than --chunk-size's default; a dead driver redoes one
# Paths per task: enough to amortise a block's fixed cost (~10 ms to turn its rows into Arrow), few
# enough to spread over many actors and to lose little (a second or so of work) to a dead worker.
BLOCK_INPUTS = 64
MAX_RETRIES = 3  # a block whose actor dies this many times (a decoder crash on one file) stops the job
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # a local Ray's object store: it holds paths and rows, never pixels
MAX_FETCH_BYTES = 512 * 2**20  # an object-store file is read whole into memory: larger is no photo to read
JOB_FILE = "_moodify_job.json"  # settings and state of the job (a leading _: Parquet readers skip it)
PART_PREFIX = "part-"


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise BatchError(INSTALL_HINT) from None
    return ray


def _is_uri(path: str) -> bool:
    return "://" in path


class _Classifier:
    """One actor of the pool: loads the model once, then turns blocks of paths into ``moodify batch`` rows."""

    def __init__(self, *, model_name: str | None, backend: str, detector_spec: dict | None, pre_cropped: bool,
                 batch_size: int, cwd: str | None):
        from ..model.registry import load_model
        from .worker import _init_worker

        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)  # relative paths mean what they meant where the job was started
        if backend == "torch":
            import torch

            torch.set_num_threads(1)  # one actor per CPU already
        self.model = load_model(model_name, backend=backend, threads=1)
        self.batch_size = batch_size
        _init_worker(detector_spec or {"kind": "yunet"}, self.model.preprocessing, pre_cropped, True)
        self._filesystems: dict = {}

    def __call__(self, batch):
        """A ``pyarrow.Table`` with ``path`` (and optionally ``bytes``) -> the rows of those inputs."""
        from .run import _classify_chunk
        from .worker import _analyze

        paths = batch.column("path").to_pylist()
        data = batch.column("bytes").to_pylist() if "bytes" in batch.column_names else [None] * len(paths)
        items = [_analyze(path) if blob is None and not _is_uri(path) else self._analyze_data(path, blob)
                 for path, blob in zip(paths, data)]
        rows, _ = _classify_chunk(items, self.model, self.batch_size)
        return _rows_to_arrow(rows)

    def _analyze_data(self, path: str, data: bytes | None):
        """``_analyze`` for a file whose bytes are given or must be fetched from an object store: the
        bytes go through a short-lived local file, so that they take the very path a local file takes."""
        from .worker import _analyze, _Analyzed

        if data is None:
            try:
                data = _read_uri(path, self._filesystems)
            except BatchError as exc:
                return _Analyzed(path, error=str(exc))
        with tempfile.NamedTemporaryFile(prefix="moodify-ray-", suffix=os.path.splitext(path)[1][:16]) as fh:
            fh.write(data)
            fh.flush()
            item = _analyze(fh.name)
        item.path = path
        if item.error:
            item.error = item.error.replace(fh.name, path)
        return item


def _rows_to_arrow(rows: list[tuple]):
    """Rows as a ``pyarrow.Table`` holding exactly what ``moodify batch`` writes to Parquet for them:
    its own CSV encoding and CSV-to-Parquet conversion (the same rounding, types and pandas metadata,
    so the parts read back as its one file does), through a short-lived temporary file."""
    import io

    import pyarrow.parquet as pq

    from .outputs import _row_writer, csv_to_parquet

    writer = _row_writer("parquet")
    parquet = Path(tempfile.gettempdir()) / f"moodify-ray-{os.getpid()}-{uuid.uuid4().hex}.parquet"
    csv_to_parquet(io.BytesIO(writer.header() + writer.encode(rows)), parquet)
    try:
        return pq.read_table(parquet, memory_map=False)
    finally:
        parquet.unlink()


def _read_uri(uri: str, cache: dict) -> bytes:
    """The bytes of an object-store file (s3://, gs://, ...); a failure becomes a one-line BatchError."""
    import pyarrow.fs as pafs

    try:
        fs, path = _filesystem(uri, cache)
        info = fs.get_file_info(path)
    except (OSError, ValueError) as exc:  # pyarrow's errors: no credentials, no such bucket, a network failure
        raise BatchError(f"cannot read ({str(exc).splitlines()[0]})") from None
    if info.type == pafs.FileType.NotFound:
        raise BatchError("no such file")
    if info.type != pafs.FileType.File:
        raise BatchError("is a folder, not an image")
    if info.size == 0:
        raise BatchError("empty file (0 bytes)")
    if info.size > MAX_FETCH_BYTES:
        raise BatchError(f"too large to read safely ({info.size / 2**20:,.0f} MiB)")
    try:
        with fs.open_input_file(path) as fh:
            return fh.read()
    except (OSError, ValueError) as exc:
        raise BatchError(f"cannot read ({str(exc).splitlines()[0]})") from None


def _filesystem(uri: str, cache: dict):
    """(pyarrow filesystem, path in it) for a URI; one client per bucket or host and process, since
    making one (an S3 client finding its region) can cost a network round trip."""
    import pyarrow.fs as pafs

    scheme, rest = uri.split("://", 1)
    key = f"{scheme}://{rest.split('/', 1)[0]}"
    if key in cache and "?" not in uri:
        fs, skip = cache[key]
        return fs, rest[skip:]
    fs, path = pafs.FileSystem.from_uri(uri)
    if "?" not in uri and rest.endswith(path):
        cache[key] = (fs, len(rest) - len(path))  # s3://bucket/key -> bucket/key; hdfs://host:port/p -> /p
    return fs, path


def classify_dataset(ds, *, model: str | None = None, backend: str = "onnx", detector: dict | None = None,
                     pre_cropped: bool = False, batch_size: int = 256, concurrency: int | tuple[int, int] | None = None,
                     block_size: int = BLOCK_INPUTS):
    """``ray.data.Dataset`` of inputs -> ``Dataset`` of ``moodify batch`` rows (columns ``COLUMNS``).

    ``ds`` has a ``path`` column (local paths every node can read, or s3:// gs:// ... URIs) and
    optionally ``bytes``, the file's contents (as ``ray.data.read_binary_files(..., include_paths=True)``
    gives), which are then decoded instead of reading ``path``. One row per face, one per input
    without a face, one with ``error`` per unreadable input. ``model``: a registry name or checkpoint
    (default: the shipped model), loaded once per actor; ``detector``: a detector spec as
    ``moodify.cli.options.detector_spec`` builds it (default YuNet); ``concurrency``: actors (an int,
    or (min, max) for an autoscaling pool; default one per CPU of the cluster); ``block_size``: inputs
    per call of an actor; ``batch_size``: faces per forward pass.
    """
    ray = _import_ray()
    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = dict(min_size=concurrency[0], max_size=concurrency[1]) if isinstance(concurrency, tuple) \
        else dict(size=concurrency)
    with warnings.catch_warnings():
        # Ray >= 2.55 calls extra remote arguments deprecated, yet has no other way to bound restarts.
        warnings.simplefilter("ignore", DeprecationWarning)
        return ds.map_batches(
            _Classifier, batch_format="pyarrow", batch_size=block_size, num_cpus=1,
            compute=ray.data.ActorPoolStrategy(**size),
            fn_constructor_kwargs=dict(model_name=model, backend=backend, detector_spec=detector,
                                       pre_cropped=pre_cropped, batch_size=batch_size, cwd=os.getcwd()),
            # Ray Data restarts dead actors and retries their blocks forever by default: a file that
            # crashes the decoder every time would never end the job.
            max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES)


def iter_ray_inputs(specs: Sequence[str]) -> Iterator[str]:
    """``moodify batch``'s inputs in its order, where a URI (s3://bucket/photos/) is a file or a folder."""
    for spec in specs:
        yield from _expand_uri(spec) if _is_uri(spec) else iter_inputs([spec])


def _expand_uri(uri: str) -> Iterator[str]:
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise BatchError(f"no such file or folder: {uri}")
        if info.type == pafs.FileType.File:
            yield uri
            return
        found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except (OSError, ValueError) as exc:
        raise BatchError(f"cannot list {uri}: {str(exc).splitlines()[0]}") from None
    scheme = uri.split("://", 1)[0]
    at = uri.find(path, len(scheme) + 3)
    prefix = uri[:at] if at >= 0 else f"{scheme}://"  # s3://, file://, hdfs://host:port
    # As a local folder is walked: image suffixes only, hidden names skipped, sorted name by name.
    for entry in sorted(found, key=lambda e: e.path.split("/")):
        parts = entry.path[len(path):].split("/")
        if (entry.type == pafs.FileType.File and os.path.splitext(entry.base_name)[1].lower() in IMAGE_SUFFIXES
                and not any(p.startswith(".") for p in parts)):
            yield prefix + entry.path


@dataclass
class _OutDir:
    """OUT_DIR: Parquet parts written atomically, and ``JOB_FILE`` with the job's settings and state."""

    path: Path
    fingerprint: dict
    counts: Counts = field(default_factory=Counts)
    done: set = field(default_factory=set)  # inputs already in OUT_DIR (a resumed run skips them)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    files: int = 0

    def check(self, *, resume: bool, overwrite: bool) -> bool:
        """Refuse, before Ray starts and before anything is written, what the folder cannot take.
        Returns False if it holds this very job, complete (nothing to do)."""
        if self.path.exists() and not self.path.is_dir():
            raise BatchError(f"{self.path} is a file: with --ray, -o takes a folder for the Parquet parts")
        names = [p.name for p in self.path.iterdir()] if self.path.is_dir() else []
        others = sorted(n for n in names if not self._is_ours(n))
        if others:
            raise BatchError(f"{self.path} holds other files ({', '.join(others[:3])}): with --ray, -o takes "
                             "a new or empty folder")
        if not names or overwrite:
            return True
        job = self._read_job()
        if not resume:
            state = "a finished job" if job and job.get("complete") else "an interrupted job"
            raise BatchError(f"{self.path} holds {state}: pass --resume to continue it, or --overwrite to start again")
        if job is not None and job.get("fingerprint") != self.fingerprint:
            changed = sorted(k for k in set(job.get("fingerprint", {})) | set(self.fingerprint)
                             if job.get("fingerprint", {}).get(k) != self.fingerprint.get(k))
            raise BatchError(f"the job in {self.path} used different settings ({', '.join(changed)}); "
                             "resume with the same command, or start again with --overwrite")
        return not (job is not None and job.get("complete"))

    def prepare(self, *, overwrite: bool) -> None:
        """Make the folder ready: emptied of our files with ``overwrite``, else what is done is read."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for p in self.path.iterdir():
                # --overwrite: every file of ours; else the hidden ones, being written when a driver
                # died (their inputs are redone).
                if self._is_ours(p.name) and (overwrite or p.name.startswith(".")):
                    p.unlink()
            self._read_done()
            self._write_job(complete=False)
        except OSError as exc:
            raise BatchError(f"cannot write in {self.path}: {exc.strerror or exc}; choose another -o") from None

    @staticmethod
    def _is_ours(name: str) -> bool:
        return name.lstrip(".").startswith((JOB_FILE, PART_PREFIX)) and (".parquet" in name or JOB_FILE in name)

    def _read_job(self) -> dict | None:
        try:
            return json.loads((self.path / JOB_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            raise BatchError(f"{self.path / JOB_FILE} is damaged; start again with --overwrite") from None

    def _write_job(self, *, complete: bool) -> None:
        tmp = self.path / f".{JOB_FILE}.tmp"
        tmp.write_text(json.dumps({"moodify_batch_ray": 1, "fingerprint": self.fingerprint, "complete": complete,
                                   "counts": self.counts.__dict__}, ensure_ascii=True), encoding="utf-8")
        os.replace(tmp, self.path / JOB_FILE)

    def _read_done(self) -> None:
        import pyarrow.parquet as pq

        for part in sorted(self.path.glob(f"{PART_PREFIX}*.parquet")):
            try:
                table = pq.read_table(part, columns=["path", "face", "faces", "error"])
            except (OSError, ValueError) as exc:
                raise BatchError(f"{part} is unreadable ({exc}); start again with --overwrite") from None
            self.counts.add(_counts(table))
            self.done.update(table.column("path").to_pylist())
            self.files += 1

    def write(self, tables: list) -> None:
        """One Parquet part, whole or not at all: written hidden, then renamed into place."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = f"{PART_PREFIX}{self.run_id}-{self.files:05d}.parquet"
        tmp = self.path / f".{name}.tmp"
        try:
            pq.write_table(pa.concat_tables(tables), tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path / name)
        except OSError as exc:  # a full disk: the parts written so far stay
            raise BatchError(f"cannot write {tmp}: {exc.strerror or exc}; free space (or fix the permissions) "
                             "and rerun the same command with --resume: nothing written is lost") from None
        self.files += 1

    def finish(self) -> None:
        self._write_job(complete=True)


def _counts(table) -> Counts:
    """Inputs, faces, inputs without a face and errors among whole inputs' rows."""
    import pyarrow.compute as pc

    errors = table.num_rows - table.column("error").null_count
    faces = table.num_rows - table.column("face").null_count
    no_face = pc.sum(pc.equal(table.column("faces"), 0)).as_py() or 0
    first_faces = pc.sum(pc.equal(table.column("face"), 1)).as_py() or 0
    return Counts(inputs=errors + no_face + first_faces, faces=faces, no_face=no_face, errors=errors)


def run_ray(inputs: Sequence[str], out: str | os.PathLike, *, address: str | None = None, model_name: str | None = None,
            backend: str = "onnx", detector_spec: dict | None = None, pre_cropped: bool = False, workers: int = 0,
            chunk_size: int = RAY_CHUNK_SIZE, batch_size: int = 256, resume: bool = False, overwrite: bool = False,
            progress: bool = True) -> Summary:
    """``moodify batch --ray``: classify every face in ``inputs`` into Parquet parts in the folder ``out``.

    ``address``: None or "local" starts a Ray on this machine; "auto" joins the cluster this machine
    belongs to; "HOST:PORT" or "ray://HOST:10001" a remote one. ``workers``: actors (0: one per
    CPU of the cluster). ``chunk_size``: inputs per Parquet part (a dead driver redoes at most one).
    """
    ray = _import_ray()
    import pyarrow as pa

    out = Path(out)
    detector_spec = detector_spec or {"kind": "yunet"}
    fingerprint = {"inputs": list(inputs), "pre_cropped": pre_cropped, "detector": None if pre_cropped else detector_spec,
                   "backend": backend, "model": _model_identity(model_name)}
    check_inputs([spec for spec in inputs if not _is_uri(spec)])  # before anything is written
    out_dir = _OutDir(out, fingerprint)
    if not out_dir.check(resume=resume, overwrite=overwrite):
        print(f"moodify batch: {out} is already complete; nothing to resume", file=sys.stderr)
        return Summary(Counts(), 0.0, 0, out)
    started = _init_ray(ray, address, workers)  # a cluster that cannot be reached leaves -o as it was
    try:
        out_dir.prepare(overwrite=overwrite)
        # Every input is listed before the job starts (the count gives the bar its total), into compact
        # Arrow blocks in Ray's object store (tens of bytes a path), not a list of Python strings.
        refs, todo, block = [], 0, []
        block_size = min(BLOCK_INPUTS, chunk_size)  # no block larger than a part: small parts, small blocks
        for path in iter_ray_inputs(inputs):
            if path in out_dir.done:
                continue
            block.append(path)
            if len(block) == block_size:
                refs.append(ray.put(pa.table({"path": block})))
                todo, block = todo + len(block), []
        if block:
            refs.append(ray.put(pa.table({"path": block})))
            todo += len(block)
        out_dir.done.clear()
        summary = _run(ray, refs, todo, out_dir, workers=workers, model_name=model_name, backend=backend,
                       detector_spec=detector_spec, pre_cropped=pre_cropped, chunk_size=chunk_size,
                       batch_size=batch_size, block_size=block_size, progress=progress)
    finally:
        if started:
            ray.shutdown()
    out_dir.finish()
    return summary


def _init_ray(ray, address: str | None, workers: int) -> bool:
    """Connect to (or start) Ray unless this process already did; True if we did and must shut it down."""
    _quiet_ray_data_console()
    if ray.is_initialized():
        return False
    if address and ":" in address and "://" not in address:
        _check_reachable(address)
    # Local-first: Ray's usage statistics (sent to Ray's makers over the network) stay off unless asked for.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address in (None, "", "local"):
            ray.init(num_cpus=workers or None, object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False,
                     logging_level=logging.WARNING, configure_logging=True)
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except ImportError as exc:  # ray:// needs ray[client]
        raise BatchError(f"cannot connect to {address}: {exc}") from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BatchError(f"cannot {'start Ray' if address in (None, '', 'local') else 'connect to ' + address}: "
                         f"{str(exc).splitlines()[0]}") from None
    return True


CONNECT_TIMEOUT_S = 10.0


def _check_reachable(address: str) -> None:
    """One line for a head node that is not there: Ray itself retries a refused address for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except ValueError:
        raise BatchError(f"--ray {address}: the port must be a number, as in 10.0.0.5:6379") from None
    except OSError as exc:
        raise BatchError(f"cannot connect to {address}: {exc.strerror or exc} (is `ray start --head` running "
                         "there, and is its port open to this machine?)") from None


class _DropProgressBarNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Progress bars disabled")


def _quiet_ray_data_console() -> None:
    """Ray Data's INFO lines (execution plans, timings) to its log file only, not around our summary."""
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler) and "File" not in type(handler).__name__:
            handler.setLevel(max(handler.level, logging.WARNING))
            if not any(isinstance(f, _DropProgressBarNotice) for f in handler.filters):
                handler.addFilter(_DropProgressBarNotice())  # we draw our own bar


def _run(ray, refs: list, todo: int, out_dir: _OutDir, *, workers: int, model_name, backend, detector_spec,
         pre_cropped: bool, chunk_size: int, batch_size: int, block_size: int, progress: bool) -> Summary:
    from tqdm import tqdm

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours, below: the same bar as `moodify batch`
    bar = tqdm(total=out_dir.counts.inputs + todo, initial=out_dir.counts.inputs, unit="img", disable=not progress,
               smoothing=0.05, dynamic_ncols=True, desc="moodify batch --ray")
    processed, failures, buffered, buffered_inputs = 0, [], [], 0
    start, first = None, 0
    try:
        if refs:
            ds = classify_dataset(ray.data.from_arrow_refs(refs), model=model_name, backend=backend,
                                  detector=detector_spec, pre_cropped=pre_cropped, batch_size=batch_size,
                                  concurrency=workers or None, block_size=block_size)
            for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                counts = _counts(table)
                if start is None:
                    start, first = time.perf_counter(), counts.inputs
                out_dir.counts.add(counts)
                processed += counts.inputs
                buffered.append(table)
                buffered_inputs += counts.inputs
                if buffered_inputs >= chunk_size:
                    out_dir.write(buffered)
                    buffered, buffered_inputs = [], 0
                if counts.errors and len(failures) < NAMED_FAILURES:
                    errors = table.filter(table.column("error").is_valid())
                    failures += list(zip(errors.column("path").to_pylist(),
                                         errors.column("error").to_pylist()))[:NAMED_FAILURES - len(failures)]
                bar.set_postfix(faces=out_dir.counts.faces, no_face=out_dir.counts.no_face,
                                errors=out_dir.counts.errors, refresh=False)
                bar.update(counts.inputs)
        if buffered:
            out_dir.write(buffered)
    except ray.exceptions.RayError as exc:
        if buffered:
            out_dir.write(buffered)  # what is classified is kept: --resume does the rest
        raise BatchError(f"the Ray job failed ({type(exc).__name__}: {str(exc).splitlines()[0]}); the rows of "
                         f"{out_dir.counts.inputs:,} inputs are kept in {out_dir.path}: rerun with --resume") from None
    finally:
        bar.close()
    # Throughput counts work, not the actors' start-up (model loads, seconds each), as `moodify batch`
    # leaves out its workers': the clock runs from the first block's rows, and that block is taken
    # to have cost what the others did.
    seconds = 0.0
    if start is not None:
        seconds = time.perf_counter() - start
        if processed > first:
            seconds *= processed / (processed - first)
    return Summary(out_dir.counts, seconds, processed, out_dir.path, failures)
