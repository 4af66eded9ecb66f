"""The onnxruntime backend: the same network as ``EmotionModel``, run by onnxruntime.

The .onnx graph is the bare network (normalised faces (N, 1, 48, 48) float32 -> logits (N, 7)).
Everything needed to use it travels in the file's ``metadata_props``, as it does in a
checkpoint: label names in order, preprocessing (size, mean/std, framing), calibration
temperature, flip-TTA default, metrics, and the sha256 of the checkpoint it came from. The Python
wrapper here reads those values, so normalisation, TTA and temperature happen exactly as in
``moodify.model.torch_backend`` and the probabilities agree with torch to ~1e-6.

``load_model(name, backend="onnx")`` exports a checkpoint on first use into
``$MOODIFY_CACHE/onnx/<sha256>.onnx`` (default ``~/.cache/moodify``), records the export's own
sha256 beside it (``<sha256>.onnx.sha256``), and reuses it after that only while it still matches.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..labels import EMOTIONS
from ..pipeline.preprocess import Preprocessing, normalize_array
from .base import calibrated, check_batch_size, check_faces, check_settings, read_temperature
from .checkpoint import net_config, sha256_file
from .network import fold_batchnorm

ONNX_OPSET = 17
# Ops whose graphs run other graphs: Moodify's export (a CNN) never makes them, and a Loop of 2**62
# iterations would run forever, so a file holding one is refused unread by onnxruntime.
CONTROL_FLOW_OPS = frozenset({"Loop", "If", "Scan", "SequenceMap"})
INPUT_NAME = "faces"  # normalised faces, float32 (N, 1, H, W)
OUTPUT_NAME = "logits"  # uncalibrated, (N, 7)
META_PREFIX = "moodify."


class OnnxEmotionModel:
    """An exported Moodify network run by onnxruntime; the same interface as ``EmotionModel``.

    ``path``: a .onnx file written by ``moodify export`` (or ``export_onnx``). ``threads``:
    onnxruntime intra-op threads (default: onnxruntime's choice, one per physical core).
    """

    def __init__(self, path: str | os.PathLike, *, name: str | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"ONNX model file not found: {self.path}")
        _check_graph(self.path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(f"{self.path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_PREFIX + "labels" not in meta:
            raise ModelError(f"{self.path}: no Moodify metadata (labels, preprocessing); export it with `moodify export`")
        try:
            self.labels = tuple(json.loads(meta[META_PREFIX + "labels"]))
        except (TypeError, ValueError):
            self.labels = ()
        if self.labels != EMOTIONS:
            raise ModelError(f"{self.path}: label order {self.labels} differs from {EMOTIONS}; "
                             "refusing to swap classes silently")
        try:
            self.preprocessing = Preprocessing.from_dict(json.loads(meta.get(META_PREFIX + "preprocessing", "null")))
        except (TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise ModelError(f"{self.path}: metadata {exc}") from None
        self.temperature = read_temperature(meta.get(META_PREFIX + "temperature", 1.0), name=str(self.path))
        check_settings(self.preprocessing, self.temperature, name=str(self.path))
        try:
            self.tta = bool(json.loads(meta.get(META_PREFIX + "tta", "false")))
            self.metrics: dict = json.loads(meta.get(META_PREFIX + "metrics", "{}"))
            config = json.loads(meta[META_PREFIX + "config"]) if META_PREFIX + "config" in meta else None
        except ValueError as exc:
            raise ModelError(f"{self.path}: metadata that is not JSON ({exc})") from None
        if not isinstance(self.metrics, dict):
            raise ModelError(f"{self.path}: metadata moodify.metrics is a {type(self.metrics).__name__}, not a mapping")
        self.config = None if config is None else net_config(config, name=f"{self.path} metadata moodify.config")
        self._check_shapes()
        self.source_sha256 = meta.get(META_PREFIX + "source_sha256")
        self.quantization = meta.get(META_PREFIX + "quantization", "none")
        self.name = name or meta.get(META_PREFIX + "name") or self.path.name
        self.net = None  # no torch module behind this model

    def _check_shapes(self) -> None:
        """The graph takes the faces the metadata describes and answers 7 logits a face: checked
        on its declared shapes, then on one run over a blank face."""
        size = self.preprocessing.input_size
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
            raise ModelError(f"{self.path}: the graph does not take {INPUT_NAME!r} and answer {OUTPUT_NAME!r}; "
                             "export it with `moodify export`")
        declared = inputs[0].shape
        if len(declared) != 4 or any(isinstance(d, int) and d != want for d, want in zip(declared[1:], (1, size, size))):
            raise ModelError(f"{self.path}: the graph takes faces of shape {declared}, the metadata says "
                             f"(N, 1, {size}, {size}); the file is damaged")
        try:
            probe = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.zeros((1, 1, size, size), np.float32)})[0]
        except Exception as exc:  # onnxruntime's own error types
            raise ModelError(f"{self.path}: the graph cannot run on a {size}x{size} face "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from None
        self._check_answer(probe, 1)

    def _check_answer(self, z: np.ndarray, n: int) -> None:
        if z.shape != (n, len(EMOTIONS)):
            raise ModelError(f"{self.path}: the graph answers shape {z.shape} for {n} face(s), not ({n}, "
                             f"{len(EMOTIONS)}) logits, one per emotion; the file is damaged")
        if not np.isfinite(z).all():
            raise ModelError(f"{self.path}: the graph answered NaN or infinite logits; the file is damaged")

    def logits(self, faces: np.ndarray, *, tta: bool | None = None, batch_size: int = 512) -> np.ndarray:
        """Uncalibrated logits (N, 7) for uint8 faces (N, 48, 48); ``tta`` averages with the mirror image."""
        check_batch_size(batch_size)  # a zero or negative one gave zero rows, silently
        faces = check_faces(faces, self.preprocessing.input_size)
        tta = self.tta if tta is None else tta
        prep = self.preprocessing
        out = []
        for start in range(0, len(faces), batch_size):
            x = normalize_array(faces[start:start + batch_size], prep)
            if tta:
                # One run over faces and mirrors together: larger batches are cheaper per face.
                both = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.concatenate([x, x[..., ::-1]])})[0]
                z = (both[:len(x)] + both[len(x):]) / 2
            else:
                z = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x)})[0]
            self._check_answer(z, len(x))  # never a "nan%" or a wrong-width table
            out.append(z.astype(np.float32))
        if not out:
            return np.zeros((0, len(EMOTIONS)), dtype=np.float32)
        return np.concatenate(out)

    def predict(self, faces: np.ndarray, *, tta: bool | None = None, batch_size: int = 512) -> np.ndarray:
        """Calibrated probabilities (N, 7) in EMOTIONS order for uint8 faces (N, 48, 48)."""
        return calibrated(self.logits(faces, tta=tta, batch_size=batch_size), self.temperature).astype(np.float32)

    def __repr__(self) -> str:
        acc = self.metrics.get("PrivateTest", {}).get("accuracy")
        return f"OnnxEmotionModel(name={self.name!r}, quantization={self.quantization!r}, private_test_accuracy={acc})"


def _check_graph(path: Path) -> None:
    """Refuse, before onnxruntime reads it, a graph with control flow (``CONTROL_FLOW_OPS``) or any
    node that runs a sub-graph."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
    nodes = list(proto.graph.node) + [n for f in proto.functions for n in f.node]
    for node in nodes:
        if node.op_type in CONTROL_FLOW_OPS or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                                   for a in node.attribute):
            raise ModelError(f"{path}: the graph holds a {node.op_type} node (control flow), which Moodify's "
                             "export never makes; refused unrun")


def model_metadata(model, *, source_sha256: str | None = None, quantization: str = "none") -> dict[str, str]:
    """The ``metadata_props`` of an exported model: what a checkpoint carries besides weights."""
    from dataclasses import asdict

    from .. import __version__

    meta = {
        "labels": json.dumps(list(model.labels)),
        "preprocessing": json.dumps(model.preprocessing.to_dict()),
        "temperature": repr(float(model.temperature)),
        "tta": json.dumps(bool(model.tta)),
        "metrics": json.dumps(model.metrics),
        "name": str(model.name),
        "quantization": quantization,
        "input": f"{INPUT_NAME}: float32 (N, 1, {model.preprocessing.input_size}, {model.preprocessing.input_size}), "
                 "grayscale uint8 / 255, minus mean, over std (see preprocessing)",
        "output": f"{OUTPUT_NAME}: (N, {len(model.labels)}) uncalibrated; probabilities = softmax(logits / temperature)",
        "moodify_version": __version__,
    }
    if getattr(model, "config", None) is not None:
        meta["config"] = json.dumps(asdict(model.config))
    if source_sha256:
        meta["source_sha256"] = source_sha256
    return {META_PREFIX + k: v for k, v in meta.items()}


def export_onnx(model, path: str | os.PathLike, *, source_sha256: str | None = None) -> Path:
    """Write a torch ``EmotionModel`` as ONNX (dynamic batch, opset 17) with its metadata.

    Written to a temporary file and renamed into place, so a concurrent reader (another shard on
    the same machine) never sees half a file.
    """
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = model.preprocessing.input_size
    # A folded copy (a no-op fold for an EmotionModel, whose net is folded at load): the .to()
    # below then moves the copy, never the caller's network.
    net = fold_batchnorm(model.net).to("cpu", memory_format=torch.contiguous_format)
    example = torch.zeros(2, 1, size, size)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        # The TorchScript exporter (dynamo=False): the dynamo one needs onnxscript, not installed
        # here. It warns that it is the legacy path on every call; that is known, so kept quiet.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(net, (example,), tmp, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              opset_version=ONNX_OPSET, do_constant_folding=True, dynamo=False)
        proto = onnx.load(tmp)
        set_metadata(proto, model_metadata(model, source_sha256=source_sha256))
        proto.doc_string = f"Moodify facial emotion model {model.name}: {', '.join(model.labels)}"
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        # mkstemp made the file private (0600); the export is an ordinary file, readable as the
        # umask allows (0644 usually), like any other file the user writes.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    """This process's umask (reading it means setting it; it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def set_metadata(proto: Any, meta: dict[str, str]) -> None:
    """Replace the ``metadata_props`` keys in ``meta`` on an ONNX ModelProto."""
    keep = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def onnx_cache_dir() -> Path:
    return Path(os.environ.get("MOODIFY_CACHE", Path.home() / ".cache" / "moodify")) / "onnx"


def cached_export(checkpoint: dict, *, name: str, sha256: str, threads: int | None = None) -> OnnxEmotionModel:
    """An ``OnnxEmotionModel`` for a checked checkpoint whose file has ``sha256``: exported once
    into the cache, then reused while the export is intact.

    The cache file is named by the checkpoint's sha256, so a retrained or re-recorded checkpoint
    never runs through a stale export.
    """
    from .torch_backend import EmotionModel

    cached = onnx_cache_dir() / f"{sha256}.onnx"
    if not _cache_intact(cached):
        export_onnx(EmotionModel(checkpoint, name=name), cached, source_sha256=sha256)
        _write_atomically(_cache_digest_path(cached), sha256_file(cached) + "\n")
    return OnnxEmotionModel(cached, name=name, threads=threads)


def _cache_digest_path(cached: Path) -> Path:
    return cached.with_name(cached.name + ".sha256")


def _cache_intact(cached: Path) -> bool:
    """Whether a cached export is the file Moodify wrote: its sha256, recorded beside it at export,
    still matches. An edited, truncated or unrecorded (older Moodify) export is exported again."""
    digest = _cache_digest_path(cached)
    if not (cached.is_file() and digest.is_file()):
        return False
    return digest.read_text(encoding="ascii", errors="replace").strip() == sha256_file(cached)


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
