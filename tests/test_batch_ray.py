"""``moodify batch --ray``: the rows of ``moodify batch`` on a local Ray, on a two-node cluster, and
through a killed worker and a killed driver. CI installs the ``ray`` extra, so these run there.

One Ray cluster (two nodes on this machine) serves the module; every Ray keeps 2 CPUs and a
small object store, so the whole file stays within a minute or so on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from moodify import EMOTIONS
from moodify.batch import EXIT_UNREADABLE
from moodify.cli import main as cli

from conftest import DATA_ROOT

PROJECT = Path(__file__).resolve().parent.parent
KDEF_IMAGES = DATA_ROOT / "kdef" / "images"
PHOTOS = 190  # plus 8 special inputs: about 200
FEWER = 92  # photos in the kill tests: 100 inputs
OBJECT_STORE_BYTES = 100 * 2**20
RAY_MISSING = "Ray is an optional extra, not installed here: pip install -e '.[ray]' (CI installs it)"


def test_ray_without_ray_installed_says_how_to_install_it(astronaut_jpg, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as without the extra
    assert cli(["batch", str(astronaut_jpg), "-o", str(tmp_path / "out"), "--ray", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["moodify batch: error: --ray needs Ray: pip install -e '.[ray]'"]


def test_ray_address_that_is_an_input_is_refused_with_how_to_write_it(astronaut_jpg, tmp_path, capsys):
    assert cli(["batch", "--ray", str(astronaut_jpg), str(astronaut_jpg), "-o", str(tmp_path / "out")]) == 2
    assert "give --ray after the INPUTs" in capsys.readouterr().err
    assert cli(["batch", str(astronaut_jpg), "-o", str(tmp_path / "out"), "--ray", "--shard", "1/2"]) == 2
    assert "--shard and --ray" in capsys.readouterr().err


def test_an_actor_reads_bytes_and_uris_as_batch_reads_files(astronaut_jpg, tmp_path):
    """``classify_dataset``'s per-block code, without Ray: a path, the same file's bytes (as
    ``read_binary_files`` gives them) and a file:// URI (read through pyarrow) give the same row."""
    import pyarrow as pa

    from moodify.batch.ray import _Classifier

    sigint, threads = signal.getsignal(signal.SIGINT), cv2.getNumThreads()
    try:  # an actor ignores Ctrl-C and runs OpenCV single-threaded: not this test process
        actor = _Classifier(model_name=None, backend="onnx", detector_spec=None, pre_cropped=False, batch_size=64,
                            cwd=None)
        paths = [str(astronaut_jpg), "in-memory.jpg", f"file://{astronaut_jpg}", f"file://{tmp_path}/none.jpg"]
        rows = actor(pa.table({"path": paths, "bytes": [None, astronaut_jpg.read_bytes(), None, None]})).to_pylist()
    finally:
        signal.signal(signal.SIGINT, sigint)
        cv2.setNumThreads(threads)
    assert [r["path"] for r in rows] == paths
    assert rows[0]["faces"] == 1 and rows[0]["emotion"]
    assert {**rows[1], "path": None} == {**rows[0], "path": None} == {**rows[2], "path": None}
    assert rows[3]["error"] == "no such file" and rows[3]["faces"] is None


def test_uri_folders_are_walked_as_local_folders_are(tmp_path):
    from moodify.batch.inputs import iter_inputs
    from moodify.batch.ray import iter_ray_inputs
    from moodify.errors import BatchError

    for name in ("a.jpg", "a/b.png", "a-1.jpg", "sub/deeper/c.JPG", ".hidden.jpg", ".git/d.jpg", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    local = list(iter_inputs([str(tmp_path)]))
    assert len(local) == 4
    assert list(iter_ray_inputs([f"file://{tmp_path}"])) == [f"file://{p}" for p in local]
    with pytest.raises(BatchError, match="no such file or folder"):
        list(iter_ray_inputs([f"file://{tmp_path}/nowhere"]))


def test_ray_output_must_be_a_folder_of_its_own(astronaut_jpg, tmp_path, capsys):
    _ray()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "holiday.jpg").write_bytes(b"somebody's photo")
    a_file = tmp_path / "results.parquet"
    a_file.write_bytes(b"somebody's results")
    for out in (taken, a_file):  # refused before Ray starts, and nothing of theirs touched
        assert cli(["batch", str(astronaut_jpg), "-o", str(out), "--ray", "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "holds other files (holiday.jpg)" in err[0] and "is a file" in err[1]
    assert sorted(p.name for p in taken.iterdir()) == ["holiday.jpg"] and a_file.read_bytes() == b"somebody's results"


def test_a_head_node_that_is_not_there_is_one_line_and_leaves_no_output(astronaut_jpg, tmp_path, capsys):
    _ray()
    nobody = f"127.0.0.1:{_free_port()}"
    assert cli(["batch", str(astronaut_jpg), "-o", str(tmp_path / "out"), "--ray", nobody, "--quiet"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"moodify batch: error: cannot connect to {nobody}: ")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def inputs(astronaut_bgr, tmp_path_factory) -> Path:
    """A list file: KDEF photos (or self-made ones without KDEF), a two-face photo, two without a
    face, four unreadable files and a missing one. The KDEF photos are read where they are."""
    root = tmp_path_factory.mktemp("ray-inputs")
    if KDEF_IMAGES.is_dir():
        photos = [str(p) for p in sorted(KDEF_IMAGES.glob("*.jpg"))[::7][:PHOTOS]]
    else:
        rng = np.random.default_rng(0)
        photos = []
        for i in range(PHOTOS):
            scale = rng.uniform(0.4, 1.0)
            img = cv2.resize(astronaut_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            photos.append(str(root / f"astronaut-{i:03d}.jpg"))
            cv2.imwrite(photos[-1], cv2.flip(img, 1) if i % 2 else img)
    cv2.imwrite(str(root / "two.png"), np.hstack([astronaut_bgr, cv2.flip(astronaut_bgr, 1)]))
    cv2.imwrite(str(root / "sky.png"), np.full((200, 300, 3), (235, 206, 135), np.uint8))
    cv2.imwrite(str(root / "grey.jpg"), np.full((64, 64, 3), 128, np.uint8))
    cv2.imwrite(str(root / "whole.jpg"), astronaut_bgr)
    (root / "corrupt.jpg").write_bytes((root / "whole.jpg").read_bytes()[:2000])
    (root / "notes.png").write_text("this is text, not a PNG")
    (root / "empty.jpg").write_bytes(b"")
    (root / "noise.gif").write_bytes(bytes(range(256)))
    extra = ["two.png", "sky.png", "grey.jpg", "corrupt.jpg", "notes.png", "empty.jpg", "noise.gif", "missing.jpg"]
    listing = root / "inputs.txt"
    listing.write_text("\n".join(photos + [str(root / name) for name in extra]) + "\n", encoding="utf-8")
    # The kill tests need only enough blocks (--chunk-size 10: 10 inputs each) to kill something mid-job.
    (root / "fewer.txt").write_text("\n".join(photos[:FEWER] + [str(root / name) for name in extra]) + "\n",
                                    encoding="utf-8")
    return listing


@pytest.fixture(scope="module")
def fewer(inputs) -> Path:
    return inputs.with_name("fewer.txt")


def _listed(listing: Path, rows: list[dict]) -> list[dict]:
    paths = set(listing.read_text(encoding="utf-8").splitlines())
    return [r for r in rows if r["path"] in paths]


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> list[dict]:
    """``moodify batch``'s Parquet rows for the same inputs, by path and face."""
    out = tmp_path_factory.mktemp("ray-reference") / "batch.parquet"
    assert cli(["batch", str(inputs), "-o", str(out), "--quiet", "--workers", "1"]) == EXIT_UNREADABLE
    return _rows(out)


def _rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()  # a folder: every Parquet part in it
    return sorted(rows, key=lambda r: (r["path"], r["face"] or 0))


def assert_same_rows(got: list[dict], expected: list[dict]) -> None:
    """Paths, faces, boxes, errors equal; probabilities within 1e-5 (a face's batch-mates move the 6th decimal)."""
    assert [r["path"] for r in got] == [r["path"] for r in expected]  # every input exactly once, no extra row
    floats = {"confidence", *EMOTIONS}
    for g, e in zip(got, expected):
        assert {k: v for k, v in g.items() if k not in floats} == {k: v for k, v in e.items() if k not in floats}
        for k in floats:
            assert (g[k] is None) == (e[k] is None) and abs((g[k] or 0) - (e[k] or 0)) <= 1e-5, (g["path"], k)


def _ray():
    return pytest.importorskip("ray", reason=RAY_MISSING)


@pytest.fixture(scope="module", autouse=True)
def _token_auth():
    """Ray token authentication on in this process before Ray is first imported (Ray reads the mode
    once, at import): a driver here that joins the test cluster must present the token, whichever
    test runs first."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "token")
        yield


@pytest.fixture(scope="module")
def ray_env() -> dict:
    """The environment of the cluster's ``ray start``s: token authentication on, with Ray's own token
    (``~/.ray/auth_token``, made if missing, as any ``ray.init`` makes it), which a driver in this
    process then finds; a node started by ``ray start --address`` does not turn it on by itself."""
    _ray()
    subprocess.run([str(Path(sys.executable).with_name("ray")), "get-auth-token", "--generate"],
                   capture_output=True, check=True, timeout=60)
    return {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def test_local_ray_gives_the_rows_of_moodify_batch(inputs, reference, ray_env, tmp_path, capsys):
    out = tmp_path / "out"
    status = cli(["batch", str(inputs), "-o", str(out), "--ray", "--workers", "2"])  # a Ray with 2 CPUs
    assert status == EXIT_UNREADABLE
    assert_same_rows(_rows(out), reference)
    err = capsys.readouterr().err
    photos = len(reference) - 9  # 8 special inputs, two.png has 2 rows
    summary = next(line for line in err.splitlines() if " images/s) -> " in line)
    assert summary.startswith(f"moodify batch: {photos + 8} images: {photos + 2} faces, 2 without a face, 5 errors;")
    assert "moodify batch: 5 inputs could not be read" in err and "empty file" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(*args: str, env: dict) -> None:
    ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
             "--metrics-export-port"]  # two nodes on one machine: no port of theirs may collide
    cmd = [str(Path(sys.executable).with_name("ray")), "start", *args, "--object-store-memory",
           str(OBJECT_STORE_BYTES), "--disable-usage-stats", *(x for p in ports for x in (p, str(_free_port())))]
    done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _processes_of(temp_dir: str) -> list:
    """Every process of the cluster rooted at ``temp_dir``: the raylets, GCS, agents and their workers."""
    import psutil

    roots = [p for p in psutil.process_iter(["cmdline"]) if any(temp_dir in a for a in p.info["cmdline"] or [])]
    found = {p.pid: p for p in roots}
    for p in roots:
        try:
            found.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.NoSuchProcess:
            pass
    return list(found.values())


@pytest.fixture(scope="module")
def cluster(ray_env):
    """Two Ray nodes on this machine, one CPU each: ``ray start --head``, then ``ray start --address``.

    Both are stopped at the end, failed or not, by killing their processes by pid (``ray stop``
    would stop every Ray of this user on the machine)."""
    import psutil

    temp_dir = tempfile.mkdtemp(prefix="mrt-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    address = f"127.0.0.1:{port}"
    try:
        _ray_start("--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1",
                   "--resources", '{"head_node": 1}', "--include-dashboard", "false", "--dashboard-port", str(_free_port()),
                   "--temp-dir", temp_dir,
                   env=ray_env)
        _ray_start("--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                   "--resources", '{"second_node": 1}', env=ray_env)
        raylets = [p for p in _processes_of(temp_dir) if p.name() == "raylet"]
        assert len(raylets) == 2
        yield {"address": address, "raylets": {p.pid for p in raylets}, "temp_dir": temp_dir}
    finally:
        procs = _processes_of(temp_dir)
        for p in procs:  # SIGKILL: nothing of a test cluster needs saving, and SIGTERM can take seconds
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=3)  # SIGKILL cannot be refused: only an unreaped zombie would wait longer
        shutil.rmtree(temp_dir, ignore_errors=True)  # the cluster's session: logs, sockets, spilled objects


def _map_workers(raylets: set[int]) -> dict[int, int]:
    """Our actors' processes now alive: pid -> the raylet (node) that runs them."""
    import psutil

    found = {}
    for raylet in raylets:
        try:
            for child in psutil.Process(raylet).children():
                if "MapWorker(MapBatches(_Classifier))" in " ".join(child.cmdline()):
                    found[child.pid] = raylet
        except psutil.NoSuchProcess:
            pass
    return found


def _watch(until: threading.Event, action, period_s: float = 0.02) -> threading.Thread:
    def loop():
        while not until.is_set():
            action()
            time.sleep(period_s)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_two_node_cluster_uses_both_nodes_and_survives_a_killed_worker(fewer, reference, cluster, tmp_path):
    """The job's actors run on both nodes; one is killed (SIGKILL, by pid) once rows are coming in,
    and Ray's retry still yields every input exactly once, with the same rows."""
    out = tmp_path / "out"
    nodes, killed, done = set(), [], threading.Event()

    def look():
        workers = _map_workers(cluster["raylets"])
        nodes.update(workers.values())
        if not killed and workers and any(out.glob("part-*.parquet")):
            pid = max(workers)
            os.kill(pid, signal.SIGKILL)
            killed.append((pid, len(list(out.glob("part-*.parquet")))))

    watcher = _watch(done, look)
    try:
        status = cli(["batch", str(fewer), "-o", str(out), "--ray", cluster["address"], "--chunk-size", "10",
                      "--quiet"])
    finally:
        done.set()
        watcher.join()
    assert status == EXIT_UNREADABLE
    assert nodes == cluster["raylets"], "the job ran on one node only"
    assert killed, "no worker was killed: the job ended before one was seen"
    files_at_kill = killed[0][1]
    assert len(list(out.glob("part-*.parquet"))) > files_at_kill  # the job went on after the kill
    assert_same_rows(_rows(out), _listed(fewer, reference))


def test_driver_killed_mid_job_then_resume_gives_every_input_once(fewer, reference, cluster, ray_env, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "moodify", "batch", str(fewer), "-o", str(out), "--ray", cluster["address"],
           "--chunk-size", "10", "--quiet"]
    driver = subprocess.Popen(cmd, cwd=PROJECT, env={**os.environ, **ray_env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None and not any(out.glob("part-*.parquet")):
        time.sleep(0.01)
    assert driver.poll() is None, "the job ended before its driver could be killed: " + driver.stderr.read().decode()
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    driver.stderr.close()
    expected = _listed(fewer, reference)
    done = {r["path"] for r in _rows(out)}
    assert 0 < len(done) < len({r["path"] for r in expected}), "the driver was not killed mid-job"
    assert not json.loads((out / "_moodify_job.json").read_text())["complete"]

    assert cli(["batch", str(fewer), "-o", str(out), "--ray", cluster["address"], "--quiet"]) == 2  # needs --resume
    assert cli(["batch", str(fewer), "-o", str(out), "--ray", cluster["address"], "--resume", "--quiet"]) \
        == EXIT_UNREADABLE
    assert_same_rows(_rows(out), expected)
    assert json.loads((out / "_moodify_job.json").read_text())["complete"]
