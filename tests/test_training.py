"""Training and evaluation on self-made data: the loop learns, resumes exactly, and evaluates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from moodify import cli
from moodify.model.registry import load_checkpoint, load_model, rewrite_checkpoint
from moodify.pipeline.preprocess import Preprocessing
from moodify.training import train
from moodify.training.augment import AugmentConfig, PhotoConfig, augment_batch, photo_augment
from moodify.training.data import DataError, load_dataset, read_folder_layout

from bad_inputs import run_measured
from synthetic import synthetic_faces, write_fer2013_csv

PROJECT = Path(__file__).resolve().parent.parent

# --amp off: "auto" times fp32 against bf16, and two runs compared bit for bit must not differ in it.
TINY = ["--epochs", "4", "--batch-size", "32", "--warmup-epochs", "0.5", "--threads", "2",
        "--widths", "8", "16", "--hidden", "32", "--seed", "3", "--amp", "off"]


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    write_fer2013_csv(root / "fer2013" / "fer2013.csv.gz", {"Training": 40, "PublicTest": 10, "PrivateTest": 10})
    return root


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOODIFY_CACHE", str(tmp_path / "cache"))


@pytest.mark.slow
def test_tiny_training_run_learns_and_writes_a_usable_model(synthetic_root, tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(synthetic_root), "--out", str(out), "--ema-decay", "0", *TINY,
                     "--tta", "on"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    model = load_model(out / "model.pt")
    assert model.metrics["PublicTest"]["accuracy"] > 0.4  # chance is 1/7
    assert model.temperature > 0
    faces, labels = synthetic_faces(10, seed=99)
    assert (model.predict(faces).argmax(1) == labels).mean() > 0.4
    # The checkpoint is plain data: it loads with weights_only=True and records how it was made.
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["labels"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert ckpt["preprocessing"]["framing"]["scale"] > 1
    assert "--epochs 4" in ckpt["training"]["command"]
    # --tta on: predict averages each face with its mirror, whatever PublicTest preferred (both recorded).
    assert model.tta is True and set(ckpt["training"]["tta_choice"]) == {"on", "off"}


def _interrupted_in_epoch(number: int, argv: list[str], monkeypatch) -> int:
    """Run ``moodify train`` with a Ctrl-C at the start of epoch ``number`` (1-based); its exit status."""
    real_epoch = train.train_one_epoch

    def interrupt(*args, epoch, **kwargs):
        if epoch == number - 1:
            raise KeyboardInterrupt
        return real_epoch(*args, epoch=epoch, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", interrupt)
    try:
        return cli.main(argv)
    finally:
        monkeypatch.setattr(train, "train_one_epoch", real_epoch)


@pytest.mark.slow
def test_resume_after_interruption_gives_the_same_model(synthetic_root, tmp_path, monkeypatch):
    common = ["train", "--data", str(synthetic_root), *TINY, "--photo-aug", "0.3"]  # its draws resume too
    assert cli.main([*common, "--out", str(tmp_path / "straight")]) == 0

    assert _interrupted_in_epoch(3, [*common, "--out", str(tmp_path / "resumed")], monkeypatch) == 130
    assert cli.main([*common, "--out", str(tmp_path / "resumed"), "--resume"]) == 0

    a = load_checkpoint(tmp_path / "straight" / "model.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "resumed" / "model.pt")["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2, 3, 4]


@pytest.mark.slow  # trains a network first
def test_evaluate_writes_report_and_plots(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    cli.main(["train", "--data", str(synthetic_root), "--out", str(out), *TINY])
    capsys.readouterr()
    report_dir = tmp_path / "eval"
    assert cli.main(["evaluate", "--model", str(out / "model.pt"), "--data", str(synthetic_root),
                     "--split", "PrivateTest", "--tta", "--out", str(report_dir)]) == 0
    text = capsys.readouterr().out
    assert "macro-F1" in text and "ECE" in text and "disgust" in text
    report = json.loads((report_dir / "report.json").read_text())
    assert report["n"] == 70 and report["tta"] is True
    assert np.array(report["confusion"]).sum() == 70
    assert set(report["per_class"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    for png in ("confusion.png", "reliability.png"):
        assert (report_dir / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_distilled_student_follows_its_teacher(synthetic_root, tmp_path):
    # A teacher taught that every class is the next one: a student distilled from it with weight 1
    # learns the teacher's answers, not the labels of its own training faces.
    splits = {"Training": 40, "PublicTest": 10, "PrivateTest": 10}
    shifted, student_data = tmp_path / "shifted", tmp_path / "student-data"
    write_fer2013_csv(shifted / "fer2013" / "fer2013.csv.gz", splits, shift_labels=dict.fromkeys(splits, 1))
    # True training labels; validation (which picks the epoch to keep) judged the teacher's way.
    write_fer2013_csv(student_data / "fer2013" / "fer2013.csv.gz", splits, shift_labels={"PublicTest": 1})
    tiny = [*TINY, "--ema-decay", "0"]  # 32 steps: too few for an average of weights
    assert cli.main(["train", "--data", str(shifted), "--out", str(tmp_path / "teacher"), *tiny]) == 0
    teacher = tmp_path / "teacher" / "model.pt"
    assert cli.main(["train", "--data", str(student_data), "--out", str(tmp_path / "student"), *tiny,
                     "--teacher", str(teacher), "--distill", "1", "--distill-temperature", "0.5",
                     "--label-smoothing", "0"]) == 0
    student = load_model(tmp_path / "student" / "model.pt")
    faces, labels = synthetic_faces(10, seed=99)
    predicted = student.predict(faces).argmax(1)
    assert (predicted == (labels + 1) % 7).mean() > 0.4 > (predicted == labels).mean()
    assert student.training["teacher"] == [str(teacher)]


@pytest.mark.slow
def test_init_starts_from_a_models_weights_and_takes_its_network(synthetic_root, tmp_path, capsys,
                                                                   monkeypatch):
    start = tmp_path / "start"
    assert cli.main(["train", "--data", str(synthetic_root), "--out", str(start), *TINY]) == 0
    # As if measured on photos (python -m moodify.training.framing --record): a crop for YuNet faces.
    rewrite_checkpoint(start / "model.pt", lambda c: c["preprocessing"]["framings"].update(
        yunet={"scale": 2.25, "shift_y": 0.2, "anchor": "eyes"}))
    # Learning rate 0: the weights stay the model's own; only BatchNorm's running statistics move.
    # The command line asks for another network, which the model's own replaces, and says so.
    assert cli.main(["train", "--data", str(synthetic_root), "--out", str(tmp_path / "tuned"), *TINY,
                     "--epochs", "1", "--lr", "0", "--init", str(start / "model.pt"),
                     "--widths", "4", "8", "16"]) == 0
    err = capsys.readouterr().err
    assert "--init: --widths 8 16 from model.pt (the network it holds), not 4 8 16" in err
    before, after = load_checkpoint(start / "model.pt"), load_checkpoint(tmp_path / "tuned" / "model.pt")
    assert after["config"] == before["config"]
    # Its normalisation and measured photo crops come along: the tuned model crops photos the same way.
    assert Preprocessing.from_dict(after["preprocessing"]) == Preprocessing.from_dict(before["preprocessing"])
    assert Preprocessing.from_dict(after["preprocessing"]).framing_for("yunet").scale == 2.25
    weights = [k for k, v in before["state_dict"].items() if k.endswith("weight") and v.dim() > 1]
    assert weights and all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in weights)
    assert "--init" in after["training"]["command"]
    # Cut off and resumed, a fine-tuning run still ends with the preprocessing it started from.
    argv = ["train", "--data", str(synthetic_root), "--out", str(tmp_path / "cut"), *TINY, "--lr", "0.001",
            "--init", str(start / "model.pt")]
    assert _interrupted_in_epoch(2, argv, monkeypatch) == 130
    real_validate, calls = train.validate, []

    def each_epoch_better(*args, **kwargs):  # so that the kept epoch is one trained after the resume
        report, logits = real_validate(*args, **kwargs)
        calls.append(1)
        return {**report, "accuracy": len(calls)}, logits

    monkeypatch.setattr(train, "validate", each_epoch_better)
    assert cli.main([*argv[:3], "--out", str(tmp_path / "cut"), "--resume"]) == 0
    assert json.loads((tmp_path / "cut" / "log.jsonl").read_text().splitlines()[-1])["best_val_accuracy"] == 3
    resumed = load_checkpoint(tmp_path / "cut" / "model.pt")
    assert Preprocessing.from_dict(resumed["preprocessing"]) == Preprocessing.from_dict(before["preprocessing"])


@pytest.mark.parametrize("init, message", [
    ("accurate", "--init: accurate is an ensemble of 2 networks"),
    ("nope", "--init: unknown model 'nope'"),
    ("damaged", "its weights do not fit the network its config describes"),
])
def test_init_from_what_is_not_one_network_is_refused_in_one_line(synthetic_root, tmp_path, capsys, init, message):
    if init == "damaged":  # a checkpoint whose config says 16 channels where its weights have 8
        ckpt = load_checkpoint(PROJECT / "models" / "moodify-fer2013-fast.pt")
        ckpt["config"]["widths"] = [8, 32, 64, 128]
        init = str(tmp_path / "damaged.pt")
        torch.save(ckpt, init)
    rc = cli.main(["train", "--data", str(synthetic_root), "--out", str(tmp_path / "run"), *TINY, "--init", init])
    assert rc == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("moodify train: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_unknown_teacher_is_a_clear_error(synthetic_root, tmp_path, capsys):
    rc = cli.main(["train", "--data", str(synthetic_root), "--out", str(tmp_path), *TINY, "--teacher", "nope"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--teacher" in err and "unknown model 'nope'" in err and "Traceback" not in err


def test_train_without_data_path_says_how_to_give_one(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("MOODIFY_DATA", raising=False)
    assert cli.main(["train", "--out", str(tmp_path)]) == 2
    assert "MOODIFY_DATA" in capsys.readouterr().err


def test_malformed_csv_is_a_clear_error(tmp_path):
    bad = tmp_path / "fer2013.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="not a FER2013 CSV"):
        load_dataset(bad)
    short = tmp_path / "short" / "fer2013.csv"
    short.parent.mkdir()
    short.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    with pytest.raises(DataError, match="2304 pixel values"):
        load_dataset(short)
    words = short.parent / "words" / "fer2013.csv"
    words.parent.mkdir()
    words.write_text("emotion,pixels,Usage\n3," + " ".join(["7"] * 1000 + ["x"] + ["7"] * 1303) + ",Training\n")
    with pytest.raises(DataError, match="row 1: every row needs 2304 pixel values"):
        load_dataset(words)


@pytest.mark.data
@pytest.mark.slow
def test_parsing_the_real_fer2013_csv_fits_a_small_laptop(data_root, tmp_path):
    # The first read parses 35,887 rows of text (later ones use the cache); it peaked at 7.3 GB.
    script = ("import sys; from moodify.data import load_dataset; sets = load_dataset(sys.argv[1]); "
              "print(sum(len(s) for s in sets.values()))")
    status, out, err, peak = run_measured([sys.executable, "-c", script, str(data_root)], timeout=300,
                                          env={"MOODIFY_CACHE": str(tmp_path), "PYTHONPATH": str(PROJECT)})
    assert status == 0, err
    assert int(out) == 35887
    assert peak < 1500  # MB, numpy and the CSV text included


def test_a_cache_file_cut_short_is_rebuilt_not_a_crash(tmp_path):
    # E.g. a process killed while writing it, or one read while another process was writing it.
    csv_path = write_fer2013_csv(tmp_path / "fer2013" / "fer2013.csv.gz", {"Training": 3, "PublicTest": 1, "PrivateTest": 1})
    first = load_dataset(tmp_path)
    cached = list((tmp_path / "cache").glob("fer2013-*.npz"))
    assert len(cached) == 1 and not list((tmp_path / "cache").glob("*.tmp.npz"))
    cached[0].write_bytes(cached[0].read_bytes()[:200])
    again = load_dataset(csv_path)
    assert np.array_equal(again["Training"].images, first["Training"].images)


def test_csv_plain_and_gzip_read_the_same(tmp_path):
    gz = write_fer2013_csv(tmp_path / "a" / "fer2013.csv.gz", {"Training": 3, "PublicTest": 1, "PrivateTest": 1})
    plain = write_fer2013_csv(tmp_path / "b" / "fer2013.csv", {"Training": 3, "PublicTest": 1, "PrivateTest": 1},
                              gz=False)
    a, b = load_dataset(gz), load_dataset(plain)
    for split in ("Training", "PublicTest", "PrivateTest"):
        assert np.array_equal(a[split].images, b[split].images)
        assert np.array_equal(a[split].labels, b[split].labels)
    assert len(a["Training"]) == 21 and a["Training"].images.shape[1:] == (48, 48)


def test_ferplus_votes_join_by_row_position(tmp_path):
    csv_path = write_fer2013_csv(tmp_path / "fer2013" / "fer2013.csv.gz",
                                 {"Training": 1, "PublicTest": 1, "PrivateTest": 1})
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    fer = load_dataset(csv_path.parent.parent)
    n = sum(len(s) for s in fer.values())
    rows = [header]
    for i in range(n):
        # Row i votes 8x happiness and 2x surprise, except row 0 which is "not a face".
        rows.append("Training,x,0,0,0,0,0,0,0,0,0,10" if i == 0 else "Training,x,0,8,2,0,0,0,0,0,0,0")
    (tmp_path / "ferplus").mkdir()
    (tmp_path / "ferplus" / "fer2013new.csv").write_text("\n".join(rows) + "\n")
    soft = load_dataset(tmp_path, labels="ferplus-soft")
    assert sum(len(s) for s in soft.values()) == n - 1  # the not-a-face row is dropped
    assert (soft["PublicTest"].labels == 3).all()  # majority: happy
    assert np.allclose(soft["PublicTest"].soft[0], [0, 0, 0, 0.8, 0, 0.2, 0])
    (tmp_path / "ferplus" / "fer2013new.csv").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(DataError, match="joined by row position"):
        load_dataset(tmp_path, labels="ferplus")


def test_folder_layout_reader(tmp_path):
    import cv2

    faces, labels = synthetic_faces(3)
    for split in ("train", "test"):
        for i, (face, label) in enumerate(zip(faces, labels)):
            folder = tmp_path / split / ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"][label]
            folder.mkdir(parents=True, exist_ok=True)
            big = cv2.resize(face, (96, 96))  # not 48x48: the reader resizes
            cv2.imwrite(str(folder / f"{i}.png"), big)
    sets = read_folder_layout(tmp_path)
    assert len(sets["PrivateTest"]) == 21
    assert len(sets["Training"]) + len(sets["PublicTest"]) == 21 and len(sets["PublicTest"]) >= 1
    assert sets["Training"].images.shape[1:] == (48, 48)
    assert np.bincount(load_dataset(tmp_path)["PrivateTest"].labels).tolist() == [3] * 7


def test_augmentation_differs_per_face_and_keeps_shape():
    faces, _ = synthetic_faces(1)
    x = torch.as_tensor(faces[:1]).float().div(255).unsqueeze(1).repeat(16, 1, 1, 1)
    out = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    flat = out.flatten(1)
    distinct = {tuple(np.round(row[:200].numpy(), 3)) for row in flat}
    assert len(distinct) == 16  # each face got its own warp, not one shared draw
    off = augment_batch(x, AugmentConfig(shift=0, scale=0, rotate=0, flip=False, erase_p=0))
    assert torch.allclose(off, x, atol=1e-5)


def test_photo_augmentation_gives_each_face_its_own_real_photo_look():
    faces = np.repeat(synthetic_faces(1)[0][:1], 64, axis=0)
    assert photo_augment(faces, PhotoConfig(p=0), np.random.default_rng(0)) is faces
    out = photo_augment(faces, PhotoConfig(p=1), np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == faces.shape
    assert len({o.tobytes() for o in out}) == 64  # each face its own draw, none left as it was
    assert np.array_equal(out, photo_augment(faces, PhotoConfig(p=1), np.random.default_rng(0)))  # seeded
    # Still the same face: changed in look, not in content.
    for o in out:
        assert np.corrcoef(o.ravel().astype(float), faces[0].ravel().astype(float))[0, 1] > 0.5
    # Blur and low resolution take fine detail away, as a small or soft face in a photo lacks it.
    sharpness = lambda f: cv2.Laplacian(f, cv2.CV_64F).var()  # noqa: E731
    soft = PhotoConfig(p=1, gamma=1.0, contrast=0.0, brightness=0.0, noise_std=(0.0, 0.0), jpeg_quality=(95, 95))
    blurred = photo_augment(faces, soft, np.random.default_rng(1))
    assert np.median([sharpness(f) for f in blurred]) < 0.5 * sharpness(faces[0])
    # Tone alone keeps each face's pixel order but moves its levels.
    tone = PhotoConfig(p=1, blur_sigma=(0.0, 0.0), noise_std=(0.0, 0.0), jpeg_quality=(100, 100), low_res=(1.0, 1.0))
    toned = photo_augment(faces[:8], tone, np.random.default_rng(2))
    assert np.abs(toned.astype(int).mean(axis=(1, 2)) - faces[0].mean()).max() > 5


def test_evaluate_on_a_folder_without_test_says_so_in_one_line(tmp_path, capsys):
    import cv2

    from moodify.cli import main as cli

    faces, labels = synthetic_faces(2)
    for i, (face, label) in enumerate(zip(faces, labels)):
        folder = tmp_path / "train" / ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"][label]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), face)
    assert cli(["evaluate", "--data", str(tmp_path)]) == 2  # PrivateTest is test/, which is missing
    err = capsys.readouterr().err.strip()
    assert "no PrivateTest split" in err and "Training, PublicTest" in err and "\n" not in err
    assert cli(["evaluate", "--data", str(tmp_path), "--split", "PublicTest"]) == 0
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_rebuilds_the_run_from_its_checkpoint_and_keeps_its_provenance(synthetic_root, tmp_path,
                                                                               monkeypatch, capsys):
    out = tmp_path / "run"
    first = ["train", "--data", str(synthetic_root), "--out", str(out), *TINY]
    assert _interrupted_in_epoch(2, first, monkeypatch) == 130
    capsys.readouterr()
    # Other widths on the command line, and no other option: the checkpoint's network and options win,
    # and the user is told; a changed --epochs is the user's to change, and is said too.
    assert cli.main(["train", "--data", str(synthetic_root), "--out", str(out), "--resume", "--threads", "2",
                     "--widths", "16", "32", "--epochs", "3"]) == 0
    err = capsys.readouterr().err
    assert "--widths 8 16 from the checkpoint" in err and "--epochs 3 replaces the checkpoint's 4" in err
    model = load_model(out / "model.pt")
    assert model.config.widths == [8, 16] and model.config.hidden == 32
    training = model.training
    assert training["command"].startswith("moodify train") and "--widths 8 16" in training["command"]
    assert len(training["resumes"]) == 1 and "--resume" in training["resumes"][0]
    assert training["seed"] == 3  # restored, though the resume command did not give it
    log = [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3]


def test_amp_auto_trains_in_whichever_precision_measured_faster(monkeypatch, capsys):
    import argparse

    from moodify.training import train_speed
    from moodify.model.network import NetConfig

    config, cpu = NetConfig(widths=[8, 16], hidden=32), torch.device("cpu")
    args = argparse.Namespace(amp="auto", batch_size=32)
    monkeypatch.setattr(train, "_cpu_has_bf16", lambda: True)
    # (fp32, bf16) images/s: AMX-like, AVX-512-BF16 barely ahead (not worth bf16's numerics), emulated.
    for fp32, bf16, expected in [(315, 720, True), (100, 105, False), (300, 20, False)]:
        monkeypatch.setattr(train_speed, "step_rate", lambda config, *, amp, **_: bf16 if amp else fp32)
        assert train._choose_amp(args, config, cpu, rank=0, world=1) is expected
    assert "300 images/s in fp32, 20 with bf16 autocast: training in fp32" in capsys.readouterr().err
    # Where the CPU has no native bf16 there is nothing to measure: fp32.
    monkeypatch.setattr(train, "_cpu_has_bf16", lambda: False)
    monkeypatch.setattr(train_speed, "step_rate", lambda *a, **k: pytest.fail("timed bf16 on a CPU that emulates it"))
    assert train._choose_amp(args, config, cpu, rank=0, world=1) is False
    assert train._choose_amp(argparse.Namespace(amp="on", batch_size=32), config, cpu, rank=0, world=1) is True


def test_timing_training_steps_leaves_the_seeded_run_alone():
    from moodify.model.network import NetConfig
    from moodify.training.train_speed import step_rate

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    rate = step_rate(NetConfig(widths=[8, 16], hidden=32), amp=False, batch_size=16, steps=1)
    assert rate > 0
    assert torch.equal(torch.rand(3), expected)  # the run's initialisation draws what it would have


@pytest.mark.slow
def test_a_resumed_run_keeps_the_precision_it_measured(synthetic_root, tmp_path, monkeypatch):
    from moodify.training import train_speed

    monkeypatch.setattr(train, "_cpu_has_bf16", lambda: True)
    monkeypatch.setattr(train_speed, "step_rate", lambda config, *, amp, **_: 200 if amp else 100)
    argv = ["train", "--data", str(synthetic_root), "--out", str(tmp_path), *TINY[:-2]]  # --amp auto
    assert _interrupted_in_epoch(3, argv, monkeypatch) == 130
    # The machine now times the other way (a different CPU, a busy one): the run goes on in bf16.
    monkeypatch.setattr(train_speed, "step_rate", lambda config, *, amp, **_: 100 if amp else 200)
    assert cli.main([*argv, "--resume"]) == 0
    assert load_checkpoint(tmp_path / "model.pt")["training"]["amp_bf16"] is True
