"""``moodify export``: the model as ONNX, with its label names and preprocessing in the metadata.

    moodify export --format onnx -o moodify.onnx
    moodify export --format onnx -o moodify-int8.onnx --quantize int8 --data ../shared/data --check-split PublicTest

Every export is checked against torch on real or random faces (calibrated probabilities, with and
without flip TTA) and refused if they differ by more than ``TOLERANCE``. ``--quantize int8``
writes a statically quantized model (onnxruntime's QDQ quantizer, per-channel weights,
activation ranges calibrated on FER2013 Training faces, never on a test split);
``--check-split`` then scores torch, ONNX fp32 and ONNX int8 on that split side by side, the way
``moodify evaluate`` does, so the accuracy cost of int8 is a measured number.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DESCRIPTION = ("Export the model as ONNX (label names, preprocessing and temperature in its metadata) for "
               "`--backend onnx` and other runtimes; optionally int8-quantized, with its accuracy cost measured.")
TOLERANCE = 1e-4  # largest allowed |p_onnx - p_torch| on calibrated probabilities (fp32 export)
CALIBRATION_FACES = 2000  # FER2013 Training faces used to calibrate int8 activation ranges
CALIBRATION_BATCH = 100


def verify_export(torch_model, onnx_model, faces: np.ndarray) -> dict[str, float]:
    """Largest |difference| of calibrated probabilities, without and with flip TTA."""
    return {f"tta={tta}": float(np.abs(torch_model.predict(faces, tta=tta) - onnx_model.predict(faces, tta=tta)).max())
            for tta in (False, True)}


class _FaceReader:
    """onnxruntime's CalibrationDataReader protocol: normalised Training faces in batches."""

    def __init__(self, faces: np.ndarray, prep):
        from ..model.onnx_backend import INPUT_NAME
        from ..pipeline.preprocess import normalize_array

        x = normalize_array(faces, prep)
        self._batches = iter([{INPUT_NAME: x[i:i + CALIBRATION_BATCH]} for i in range(0, len(x), CALIBRATION_BATCH)])

    def get_next(self):
        return next(self._batches, None)

    def rewind(self):  # not needed by the MinMax calibrator; present for the protocol
        pass


def quantize_int8(fp32_path: str | os.PathLike, out: str | os.PathLike, calibration_faces: np.ndarray, prep) -> Path:
    """A static int8 (QDQ, per-channel) copy of an exported model, metadata carried over."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..model.onnx_backend import META_PREFIX, set_metadata

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        quantized = Path(tmp) / "int8.onnx"
        # u8 activations with s8 weights is the combination onnxruntime's x86 int8 kernels are
        # built for; per-channel weights keep the small early convolutions accurate.
        quantize_static(str(prepared), str(quantized), _FaceReader(calibration_faces, prep),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        source = onnx.load(str(fp32_path))
        proto = onnx.load(str(quantized))
        meta = {p.key: p.value for p in source.metadata_props}
        meta[META_PREFIX + "quantization"] = (f"int8 static QDQ, per-channel weights, MinMax calibration on "
                                              f"{len(calibration_faces)} FER2013 Training faces")
        set_metadata(proto, meta)
        proto.doc_string = source.doc_string
        tmp_out = out.with_name(out.name + ".tmp")
        onnx.save(proto, str(tmp_out))
        os.replace(tmp_out, out)
    return out


def _speed(model, faces: np.ndarray, *, batch_size: int = 256) -> float:
    """Faces per second for ``predict`` (TTA off), best of three runs."""
    model.predict(faces[:batch_size], tta=False, batch_size=batch_size)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        model.predict(faces, tta=False, batch_size=batch_size)
        best = min(best, time.perf_counter() - t)
    return len(faces) / best


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    p.add_argument("-o", "--out", required=True, help="output .onnx file")
    p.add_argument("--model", default=None, help="registry name or checkpoint path (default: the shipped model)")
    p.add_argument("--quantize", default="none", choices=["none", "int8"],
                   help="int8: static quantization calibrated on FER2013 Training faces (needs --data)")
    p.add_argument("--data", default=None, help="FER2013 data path, for int8 calibration and --check-split "
                                                "(default: $MOODIFY_DATA)")
    p.add_argument("--calibration-faces", type=int, default=CALIBRATION_FACES,
                   help="Training faces for int8 calibration (evenly spaced)")
    p.add_argument("--check-split", default=None, choices=["PublicTest", "PrivateTest"],
                   help="also score torch and the exported model(s) on this split and print the difference")


def main(args: argparse.Namespace) -> int:
    from ..training.evaluate import evaluate_model
    from ..model.onnx_backend import OnnxEmotionModel, export_onnx
    from ..model.checkpoint import sha256_file
    from ..model.registry import load_model, resolve_model_path
    from ..files import check_outputs

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"{out}: the output of --format onnx should end in .onnx")
    check_outputs({"-o": out}, [resolve_model_path(args.model)[0]])
    model = load_model(args.model)
    sha = sha256_file(resolve_model_path(args.model)[0])
    splits = None
    if args.quantize == "int8" or args.check_split:
        from ..training.data import load_dataset

        splits = load_dataset(args.data)

    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = out if args.quantize == "none" else Path(tmp) / "fp32.onnx"
        export_onnx(model, fp32_path, source_sha256=sha)
        fp32 = OnnxEmotionModel(fp32_path, name=model.name)
        size = model.preprocessing.input_size
        check_faces = (splits["PublicTest"].images[:256] if splits is not None
                       else np.random.default_rng(0).integers(0, 256, (128, size, size), dtype=np.uint8))
        diffs = verify_export(model, fp32, check_faces)
        print("ONNX fp32 vs torch, max |probability difference|: "
              + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()), file=sys.stderr)
        if max(diffs.values()) > TOLERANCE:
            print(f"moodify export: error: the ONNX model differs from torch by more than {TOLERANCE}; not written",
                  file=sys.stderr)
            if fp32_path == out:
                out.unlink()
            return 1

        candidates = {"torch": model, "onnx fp32": fp32}
        if args.quantize == "int8":
            train = splits["Training"].images
            idx = np.linspace(0, len(train) - 1, min(args.calibration_faces, len(train))).astype(int)
            quantize_int8(fp32_path, out, train[idx], model.preprocessing)
            candidates["onnx int8"] = OnnxEmotionModel(out, name=model.name)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)

        if args.check_split:
            split = splits[args.check_split]
            print(f"{args.check_split} ({len(split)} faces), flip TTA {'on' if model.tta else 'off'}:")
            base = None
            speed_faces = split.images[:2048]
            for name, candidate in candidates.items():
                report = evaluate_model(candidate, split.images, split.labels)
                base = report["accuracy"] if base is None else base
                print(f"  {name:<10} accuracy {report['accuracy']:.2%} ({(report['accuracy'] - base) * 100:+.2f} points)  "
                      f"macro-F1 {report['macro_f1']:.4f}  ECE {report['ece']:.2%}  "
                      f"{_speed(candidate, speed_faces):,.0f} faces/s (batch 256, TTA off)")
        return 0
