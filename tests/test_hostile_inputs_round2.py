"""Issue 25: what hostile names, files and checkpoints still broke after issue 16, one test per item,
each failing before its fix. Everything here is small and made on the spot: tiny pictures and
videos, hand-built ONNX graphs, stub detectors; the commands run in this process."""

from __future__ import annotations

import copy
import csv
import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bad_inputs import png_bomb
from moodify.cli import main as cli

PROJECT = Path(__file__).resolve().parent.parent


def run(capsys, *argv) -> tuple[int, str, str]:
    status = cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err: str, command: str) -> str:
    err = err.strip()
    assert err.startswith(f"moodify {command}: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    """A 3-frame 160x120 MJPG video: enough to be opened, read and written."""
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(3):
        writer.write(np.full((120, 160, 3), 60 * i, np.uint8))
    writer.release()
    return path.read_bytes()


@pytest.fixture
def clip(clip_bytes, tmp_path) -> Path:
    path = tmp_path / "clip.avi"  # each test's own: one that fails may have written over it
    path.write_bytes(clip_bytes)
    return path


# 1. An output that is an input, by name or by inode, is refused before anything is written ---------

@pytest.mark.parametrize("argv", [
    ["video", "{clip}", "--csv", "{clip}", "--no-progress"],
    ["video", "{clip}", "-o", "{link}", "--no-progress"],
    ["live", "--source", "{clip}", "--csv", "{clip}", "--no-window"],
    ["live", "--source", "{clip}", "--record", "{link}", "--no-window"],
])
def test_video_and_live_refuse_to_write_over_their_input(clip, tmp_path, capsys, argv):
    link = tmp_path / "hard-link.mp4"
    os.link(clip, link)  # another name for the same file: only its inode tells
    before = clip.read_bytes()
    status, _, err = run(capsys, *(a.format(clip=clip, link=link) for a in argv))
    assert status == 2
    assert "an input" in one_line_error(err, argv[0])
    assert clip.read_bytes() == before


def test_ensemble_and_merge_refuse_to_write_over_an_input(tmp_path, capsys):
    from moodify.batch.outputs import CsvFormat

    a, b = tmp_path / "A.pt", tmp_path / "B.pt"
    a.write_bytes(b"member A")
    b.write_bytes(b"member B")
    status, _, err = run(capsys, "ensemble", a, b, "-o", a)
    assert status == 2 and "an input" in one_line_error(err, "ensemble")
    assert a.read_bytes() == b"member A"
    status, _, err = run(capsys, "ensemble", a, b, "-o", tmp_path)
    assert status == 2 and "is a folder" in one_line_error(err, "ensemble")

    fmt = CsvFormat()
    shards = []
    for name in ("p1.csv", "p2.csv"):
        shards.append(tmp_path / name)
        shards[-1].write_bytes(fmt.header() + fmt.encode([(name + ".jpg", None, 0) + (None,) * (len(fmt.header().split(b",")) - 3)]))
    before = shards[0].read_bytes()
    status, _, err = run(capsys, "merge", *shards, "-o", shards[0], "--overwrite")
    assert status == 2 and "an input" in one_line_error(err, "merge")
    assert shards[0].read_bytes() == before  # it lost a shard's rows before


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_train_and_evaluate_out_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, command, where):
    file = tmp_path / "notes.txt"
    file.write_text("not a folder")
    out = file if where == "a file" else file / "run"
    status, _, err = run(capsys, command, "--data", tmp_path, "--out", out)
    assert status == 2
    assert "notes.txt" in one_line_error(err, command)
    assert file.read_text() == "not a folder"


def _with_timeout(seconds: int):
    def stop(*_):
        raise TimeoutError(f"still running after {seconds} s: it hangs")

    signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)


def test_a_fifo_named_png_in_a_training_folder_is_one_line(tmp_path):
    from moodify.training.data import DataError, read_folder_layout

    happy = tmp_path / "train" / "happy"
    happy.mkdir(parents=True)
    cv2.imwrite(str(happy / "a.png"), np.full((48, 48), 128, np.uint8))
    os.mkfifo(happy / "b.png")  # nobody writes to it: reading it blocks forever
    _with_timeout(20)
    try:
        with pytest.raises(DataError, match="b.png: not a regular file"):
            read_folder_layout(tmp_path)
    finally:
        signal.alarm(0)


# 2. Batch's own files: no link followed, one writer at a time ---------------------------------------

def batch(*argv) -> int:
    return cli(["batch", "--quiet", "--workers", "1", *map(str, argv)])


@pytest.fixture(scope="module")
def blank_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("blank") / "blank.png"
    cv2.imwrite(str(path), np.full((24, 24), 90, np.uint8))  # smaller than any face: no detector work
    return path


def test_batch_never_writes_through_a_link_planted_at_its_partial_or_progress_file(blank_png, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out.csv"
    os.symlink(victim, tmp_path / "out.csv.partial")
    os.symlink(victim, tmp_path / "out.csv.progress")
    assert batch(blank_png, "-o", out, "--overwrite") == 0
    assert victim.read_text() == "precious"
    assert out.read_text().count("\n") == 2 and not out.is_symlink()


def test_a_second_batch_writing_the_same_output_is_refused(blank_png, tmp_path, capsys):
    from moodify.files import WriterLock

    out = tmp_path / "out.csv"
    with WriterLock(out):  # what a first run, still going, holds
        assert batch(blank_png, "-o", out, "--resume") == 2
        assert "another moodify run is writing" in one_line_error(capsys.readouterr().err, "batch")
        assert not out.exists() and not Path(str(out) + ".progress").exists()
    assert batch(blank_png, "-o", out) == 0  # the lock went with its holder


# 3. Names: they round-trip, are safe in a spreadsheet, escaped on a terminal --------------------------

NAMES = ["a\rb.png", "c\nd.png", "e\tf.png", 'g"h.png', "i,j.png", "-k.png", "=1+2.png", "+x.png", "@y.png",
         "'q.png", "\tt.png", "\rr.png", "NA", "null"]
NON_UTF8 = os.fsdecode(b"n\xe9.png")  # a Latin-1 byte: a lone surrogate in Python


@pytest.fixture(scope="module")
def odd_names(blank_png, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("odd-names")
    for name in [*NAMES, NON_UTF8]:
        os.link(blank_png, os.path.join(os.fsencode(folder), os.fsencode(name)))
    return folder


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_every_name_round_trips_through_each_output(odd_names, tmp_path, monkeypatch, suffix):
    from moodify.names import FORMULA_STARTS, from_csv_cell

    monkeypatch.chdir(odd_names)  # paths as typed, so a name's first character is the cell's
    out = tmp_path / f"out{suffix}"
    assert batch("-o", out, "--", *NAMES, NON_UTF8) == 0
    if suffix == ".csv":
        with open(out, newline="", encoding="utf-8") as fh:
            cells = [row["path"] for row in csv.DictReader(fh)]
        import pandas as pd

        assert list(pd.read_csv(out, dtype=str, keep_default_na=False)["path"]) == cells
        assert all(not c.startswith(FORMULA_STARTS) for c in cells)  # nothing a spreadsheet would run
        paths = [from_csv_cell(c) for c in cells]
        escaped = "n\\udce9.png"  # a CSV is UTF-8 text: the byte is written as its escape, as on a terminal
    elif suffix == ".jsonl":
        paths = [json.loads(line)["path"] for line in out.read_text(encoding="utf-8").splitlines()]
        escaped = NON_UTF8  # JSON's \udce9 escape: os.fsencode gives the very bytes back
    else:
        import pandas as pd

        paths = list(pd.read_parquet(out)["path"])
        escaped = "n\\udce9.png"
    assert paths == [*NAMES, escaped]
    if suffix == ".csv":  # merging it gives the exact names back too
        merged = tmp_path / "merged.jsonl"
        assert cli(["merge", str(out), "-o", str(merged)]) == 0
        back = {json.loads(line)["path"] for line in merged.read_text(encoding="utf-8").splitlines()}
        assert back == {*NAMES, escaped}


def test_the_apps_csv_download_is_safe_for_spreadsheets():
    import pandas as pd

    from moodify.app_support.results import results_table, table_csv

    names = ['=HYPERLINK("http://x","y").jpg', "+1.jpg", "-1.jpg", "@SUM(A1).jpg", "\tx.jpg", "a\rb.jpg"]
    table = results_table([(name, []) for name in names])
    data = table_csv(table)
    cells = list(pd.read_csv(__import__("io").BytesIO(data), dtype=str, keep_default_na=False)["path"])
    assert cells == ["'" + n if n[0] in "=+-@\t" else n for n in names]


def test_names_are_printed_with_control_characters_escaped(blank_png, tmp_path, capsys):
    hostile = tmp_path / "\x1b]0;pwned\x07\x1b[2J\u202eevil.jpg"
    hostile.write_bytes(b"not an image")
    status, _, err = run(capsys, "classify", hostile, blank_png)
    assert status == 1
    assert "\x1b" not in err and "\x07" not in err and "\u202e" not in err
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202eevil.jpg: not an image" in err
    out = tmp_path / "out.csv"
    assert batch(hostile, "-o", out) == 3
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b]0;pwned" in err


def test_markdown_text_shows_names_as_their_characters():
    from moodify.names import markdown_text, printable

    assert markdown_text("[click](http:host?phish=1).jpg") == "\\[click\\]\\(http\\:host?phish\\=1\\).jpg"
    assert "![" not in markdown_text("![x](http:host?beacon).png")
    assert markdown_text("WWW.host.org me@host.org.png") == "WWW\\.host.org me\\@host.org.png"
    assert printable("a\rb\n\x1b") == "a\\rb\\n\\x1b" and printable("plain é.jpg") == "plain é.jpg"


def _png(bgr: np.ndarray) -> bytes:
    return cv2.imencode(".png", bgr)[1].tobytes()


@pytest.mark.slow
def test_the_app_shows_uploaded_names_as_plain_text():
    import torch

    testing = pytest.importorskip("streamlit.testing.v1", reason="Streamlit's AppTest runs the app script")
    threads = torch.get_num_threads()
    try:
        at = testing.AppTest.from_file(str(PROJECT / "app.py"), default_timeout=180)
        at.run()
        sky = _png(np.full((120, 160, 3), (235, 206, 135), np.uint8))
        at.file_uploader[0].set_value([("[click](http:host?phish=1).png", sky, "image/png"),
                                       ("![x](http:host?beacon).png", b"not an image", "image/png")]).run()
        assert not at.exception, at.exception
        shown = [e.value for e in [*at.error, *at.warning]] + [e.label for e in at.expander]
        assert len(shown) == 3, shown
        for text in shown:
            assert "](" not in text.replace("\\](", "").replace("\\]\\(", ""), text  # no live link or image
    finally:
        torch.set_num_threads(threads)


# 4. Detector answers that are not boxes --------------------------------------------------------------

def test_boxes_and_landmarks_that_are_not_finite_are_dropped(model):
    import moodify
    from moodify.pipeline.detect import YuNetDetector

    class Wild:  # a detector of one's own, answering what YuNet answered on a photo from the wild
        def detect(self, image):
            return [(np.inf, 0, 10, 10), (np.nan, 1, 20, 20), (0, 0, np.inf, 50), (5000, 5000, 40, 40),
                    (10, 10, 40, 40)]

    faces = moodify.Recognizer(model=model, detector=Wild()).analyze(np.zeros((100, 100, 3), np.uint8))
    assert [f.box for f in faces] == [(10, 10, 40, 40)]

    class InfiniteNet:
        def setInputSize(self, size):
            pass

        def detect(self, image):
            bad = [np.inf, 0, 50, 50, *[np.nan] * 10, 0.9]
            ok = [10, 10, 60, 60, 25, 30, 55, 30, 40, 45, 28, 60, 52, 60, 0.9]
            nan_points = [20, 20, 60, 60, *[np.nan] * 10, 0.8]
            return 1, np.array([bad, ok, nan_points], np.float32)

    detector = YuNetDetector()
    detector._net = InfiniteNet()
    found = detector.detect_faces(np.zeros((200, 200, 3), np.uint8))
    assert [d.box for d in found] == [(10, 10, 60, 60), (20, 20, 60, 60)]
    assert found[0].landmarks is not None and found[1].landmarks is None


# 5. Models: bad batch sizes, checkpoint fields, ONNX files, a wrong YuNet file ------------------------

def tiny_onnx(path: Path, *, classes: int = 7, size: int = 48, meta_size: int | None = None, nan: bool = False,
              loop: bool = False, meta: dict | None = None) -> Path:
    """A hand-built graph faces (N, 1, size, size) -> (N, classes) with Moodify's metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from moodify.model.onnx_backend import META_PREFIX, set_metadata
    from moodify.pipeline.preprocess import Preprocessing

    weights = np.full((size * size, classes), np.nan if nan else 0.001, np.float32)
    inits = [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array([-1, size * size], np.int64), "shape")]
    nodes = [helper.make_node("Reshape", ["faces", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["z"])]
    if loop:  # a Loop of 2**62 iterations that adds nothing: it would run forever
        body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                                  helper.make_node("Identity", ["v_in"], ["v_out"])], "body",
                                 [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                                  helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                                  helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [])],
                                 [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                                  helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])])
        inits += [numpy_helper.from_array(np.array(2 ** 62, np.int64), "trips"),
                  numpy_helper.from_array(np.array(True), "go"), numpy_helper.from_array(np.array(0, np.float32), "zero")]
        nodes += [helper.make_node("Loop", ["trips", "go", "zero"], ["v"], body=body),
                  helper.make_node("Add", ["z", "v"], ["logits"])]
    else:
        nodes.append(helper.make_node("Identity", ["z"], ["logits"]))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("faces", TensorProto.FLOAT,
                                                                           ["batch", 1, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    from moodify.labels import EMOTIONS

    set_metadata(proto, {META_PREFIX + "labels": json.dumps(list(EMOTIONS)), META_PREFIX + "temperature": "1.0",
                         META_PREFIX + "preprocessing": json.dumps(Preprocessing(input_size=meta_size or size).to_dict()),
                         **{META_PREFIX + k: v for k, v in (meta or {}).items()}})
    onnx.save(proto, path)
    return path


ONNX_CASES = {
    "config is a list": ({"meta": {"config": "[1, 2]"}}, "config"),
    "config with an unknown key": ({"meta": {"config": json.dumps({"widths": [8], "heads": 4})}}, "heads"),
    "input_size the graph does not take": ({"meta_size": 64}, "64"),
    "3 classes, metadata says 7": ({"classes": 3}, "(1, 3)"),
    "NaN logits": ({"nan": True}, "NaN"),
    "a Loop of 2**62 iterations": ({"loop": True}, "Loop"),
}


@pytest.mark.parametrize("case", ONNX_CASES)
def test_a_malformed_onnx_model_is_refused_in_one_line(tmp_path, capsys, blank_png, case):
    import moodify

    options, named = ONNX_CASES[case]
    path = tiny_onnx(tmp_path / "tiny.onnx", **options)
    _with_timeout(30)
    try:
        with pytest.raises(moodify.ModelError) as refused:
            moodify.load_model(path)
    finally:
        signal.alarm(0)
    message = str(refused.value)
    assert named in message and "tiny.onnx" in message and "\n" not in message


def test_predict_refuses_a_batch_size_below_one(model, tmp_path):
    from moodify.model.onnx_backend import OnnxEmotionModel

    faces = np.zeros((3, 48, 48), np.uint8)
    onnx_model = OnnxEmotionModel(tiny_onnx(tmp_path / "tiny.onnx"))
    assert onnx_model.predict(faces).shape == (3, 7)
    for m in (model, onnx_model):
        for size in (0, -1):
            with pytest.raises(ValueError, match="batch_size"):
                m.predict(faces, batch_size=size)  # it gave zero rows, silently


@pytest.fixture(scope="module")
def shipped_checkpoint() -> dict:
    from moodify.model.registry import load_checkpoint, resolve_model_path

    path, _, sha = resolve_model_path(None)
    return load_checkpoint(path, expected_sha256=sha)


CHECKPOINT_CASES = {
    "temperature 1e-300": (lambda c: c.update(temperature=1e-300), "temperature"),
    "temperature too large for a float": (lambda c: c.update(temperature=10 ** 400), "temperature"),
    "mean too large for a float": (lambda c: c["preprocessing"].update(mean=10 ** 400), "preprocessing.mean"),
    "std too large for a float": (lambda c: c["preprocessing"].update(std=10 ** 400), "preprocessing.std"),
    "input_size 10**30": (lambda c: (c["preprocessing"].update(input_size=10 ** 30),
                                     c["config"].update(input_size=10 ** 30)), "input_size"),
    "framings a list": (lambda c: c["preprocessing"].update(framings=[1, 2]), "preprocessing.framings"),
    "tta a list": (lambda c: c.update(tta=[1]), "tta"),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_every_checkpoint_field_is_checked_on_load(shipped_checkpoint, tmp_path, case):
    import torch

    import moodify

    edit, field = CHECKPOINT_CASES[case]
    checkpoint = copy.deepcopy(shipped_checkpoint)
    edit(checkpoint)
    path = tmp_path / "edited.pt"
    torch.save(checkpoint, path)
    with pytest.raises(moodify.ModelError) as refused:
        moodify.load_model(path)
    message = str(refused.value)
    assert field in message and "edited.pt" in message and "\n" not in message


def test_a_wrong_yunet_model_file_is_one_line(tmp_path, capsys, blank_png):
    from moodify.errors import DetectorError
    from moodify.pipeline.detect import make_detector

    not_yunet = tiny_onnx(tmp_path / "emotions.onnx")  # an ONNX graph OpenCV loads, but no face detector
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    for wrong in (not_yunet, text):
        with pytest.raises(DetectorError, match=wrong.name):
            make_detector("yunet", model_path=wrong)
    status, _, err = run(capsys, "classify", "--yunet-model", not_yunet, blank_png)
    assert status == 2 and "emotions.onnx" in one_line_error(err, "classify")


# 6. Data files: a line too long, a shard cell too long ------------------------------------------------

def test_a_data_csv_with_one_huge_line_is_refused_in_bounded_memory(tmp_path):
    import tracemalloc

    from moodify.training.data import DataError, read_fer2013_csv

    path = tmp_path / "fer2013.csv.gz"
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(b"emotion,pixels,Usage\n0,")
        block = b"0 " * (1 << 20)
        for _ in range(24):  # one 48 MiB line in a file of a few hundred KB
            fh.write(block)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="line 2 is longer than"):
            read_fer2013_csv(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20  # bytes: the line was read whole (96 MB as text) before


def test_merge_reads_a_shard_whose_error_row_holds_a_very_long_path(tmp_path, capsys):
    from moodify.batch.outputs import CsvFormat
    from moodify.batch.run import _rows_for
    from moodify.batch.worker import _Analyzed

    long_path = "/" + "d" * 250 + ("/" + "x" * 250) * 800 + ".jpg"  # 200 KB: beyond csv's 128 KiB cell limit
    rows, _ = _rows_for(_Analyzed(long_path, error="no such file"))
    shard = tmp_path / "part.csv"
    fmt = CsvFormat()
    shard.write_bytes(fmt.header() + fmt.encode(rows))
    merged = tmp_path / "merged.jsonl"
    status, _, err = run(capsys, "merge", shard, "-o", merged)
    assert status == 0, err
    assert json.loads(merged.read_text(encoding="utf-8"))["path"] == long_path


# 7. Memory: one pixel limit, large JPEGs decoded reduced, video frames capped ------------------------

def test_a_jpeg_over_the_pixel_limit_is_decoded_reduced_with_boxes_in_its_own_pixels(astronaut_jpg, recognizer,
                                                                                      monkeypatch):
    import moodify.pipeline.images as images

    full = recognizer.analyze(astronaut_jpg)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 100_000)  # the 512x512 photo as a "huge" one
    bgr, scale = images.decode_image(astronaut_jpg)
    assert bgr.shape[:2] == (256, 256) and scale == 2
    reduced = recognizer.analyze(astronaut_jpg)
    assert len(reduced) == len(full) == 1
    assert np.abs(np.subtract(reduced[0].box, full[0].box)).max() <= 12  # pixels of the 512-pixel original
    assert reduced[0].emotion == full[0].emotion


@pytest.mark.slow
def test_one_pixel_limit_refuses_a_strip_and_prints_no_pillow_warning(tmp_path):
    from moodify.pipeline.images import MAX_IMAGE_PIXELS, ImageError, load_image

    strip = png_bomb(tmp_path / "strip.png", MAX_IMAGE_PIXELS + 1000, 1)  # a 1-pixel-high strip, over the limit
    with pytest.raises(ImageError, match="megapixels"):
        load_image(strip)
    between = png_bomb(tmp_path / "between.png", 9500, 9500)  # 90 MP: over Pillow's warning, under its error
    done = subprocess.run([sys.executable, "-c", "import sys; from moodify.pipeline.images import load_image\n"
                           "try: load_image(sys.argv[1])\nexcept Exception as e: print(e)", str(between)],
                          cwd=PROJECT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert "megapixels" in done.stdout and "Warning" not in done.stderr, done.stderr


def test_video_frames_over_the_side_cap_are_scaled_in_decoding(clip, tmp_path, capsys, monkeypatch):
    import moodify.video.io as video_io

    monkeypatch.setattr(video_io, "VIDEO_MAX_SIDE", 80)  # the 160x120 clip as an "8K" one
    timeline = tmp_path / "t.csv"
    status, out, err = run(capsys, "video", clip, "--csv", timeline, "-o", tmp_path / "out.mp4", "--no-progress")
    assert status == 0, err
    assert "frames scaled from 160x120 to 80x60" in out
    with video_io.VideoReader(tmp_path / "out.mp4") as reader:
        assert (reader.width, reader.height) == (80, 60)
