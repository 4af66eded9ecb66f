"""Upload checks behind the web app's friendly error messages, and the test-only ICE switch."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from moodify import ImageError
from moodify.app_support import LOOPBACK_ICE_ENV, loopback_ice_requested, read_image_upload


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, format="PNG")
    return buf.getvalue()


def test_reads_a_photo(astronaut_jpg):
    bgr = read_image_upload(astronaut_jpg.read_bytes(), "astronaut.jpg")
    assert bgr.shape == (512, 512, 3) and bgr.dtype == np.uint8


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"%PDF-1.4 this is not a picture", "not an image"),
    (_png(64, 64)[:60], "corrupt or truncated"),
])
def test_bad_uploads_get_one_line_messages(data, words):
    with pytest.raises(ImageError) as err:
        read_image_upload(data, "upload.bin")
    message = str(err.value)
    assert message.startswith("upload.bin: ") and words in message and "\n" not in message


def test_huge_image_is_refused_before_decoding():
    data = _png(8000, 7000)  # 56 megapixels, a few hundred kB as a flat PNG
    with pytest.raises(ImageError, match=r"8000x7000 pixels \(56 megapixels\).*downscale"):
        read_image_upload(data, "huge.png")
    assert read_image_upload(data, "huge.png", max_pixels=60_000_000).shape == (7000, 8000, 3)


def test_loopback_switch_reads_the_environment(monkeypatch):
    monkeypatch.delenv(LOOPBACK_ICE_ENV, raising=False)
    assert not loopback_ice_requested()
    monkeypatch.setenv(LOOPBACK_ICE_ENV, "1")
    assert loopback_ice_requested()
