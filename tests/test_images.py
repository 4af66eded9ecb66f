"""``load_gray``: its OpenCV shortcut for 8-bit grayscale PNGs gives exactly what the Pillow path gives."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from moodify.pipeline.images import ImageError, load_gray, load_image


def _face(size: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((xx * 5 + yy * 3) % 256).astype(np.uint8)


def _write(tmp_path, name: str, kind: str) -> str:
    path = tmp_path / name
    face = _face()
    if kind == "gray png":
        cv2.imwrite(str(path), face)
    elif kind == "gray png, rotated by EXIF":
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
        Image.fromarray(face[:, :40]).save(path, exif=exif)
    elif kind == "16-bit png":
        cv2.imwrite(str(path), face.astype(np.uint16) * 257)
    elif kind == "gray + alpha png":
        Image.fromarray(np.dstack([face, np.full_like(face, 128)]), "LA").save(path)
    elif kind == "palette png":
        Image.fromarray(face).convert("P").save(path)
    elif kind == "colour jpeg":
        cv2.imwrite(str(path), np.dstack([face, 255 - face, face // 2]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return str(path)


@pytest.mark.parametrize("kind", ["gray png", "gray png, rotated by EXIF", "16-bit png", "gray + alpha png",
                                  "palette png", "colour jpeg"])
def test_load_gray_equals_load_image_then_gray(tmp_path, kind):
    path = _write(tmp_path, "face.png" if "png" in kind else "face.jpg", kind)
    expected = cv2.cvtColor(load_image(path), cv2.COLOR_BGR2GRAY)
    got = load_gray(path)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    if "EXIF" in kind:
        assert got.shape == (40, 48)  # stored 48x40, shown turned


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"this is not an image", "not an image"),
    ("truncated", "corrupt or truncated"),
])
def test_load_gray_reports_bad_files_like_load_image(tmp_path, content, message):
    good = _write(tmp_path, "good.png", "gray png")
    path = tmp_path / "bad.png"
    path.write_bytes(open(good, "rb").read()[:100] if content == "truncated" else content)
    with pytest.raises(ImageError, match=message):
        load_gray(path)
    with pytest.raises(ImageError, match="no such file"):
        load_gray(tmp_path / "missing.png")
