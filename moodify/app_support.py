"""Small pieces the web app (app.py) needs that are not UI: upload checks and a test-only network switch.

Kept out of app.py so they are unit-tested, and out of the core modules because only the app uses them.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from .images import ImageError, load_image

# Uploads larger than this are refused before decoding: a 50-megapixel photo already takes ~150 MB
# decoded, and detection runs on a 640-pixel copy anyway, so nothing is gained beyond it.
MAX_UPLOAD_PIXELS = 50_000_000

# Test-only: set to 1 to make aiortc offer only 127.0.0.1 ICE candidates, which is what lets a
# headless browser in a loopback-only network namespace reach the live-webcam stream.
LOOPBACK_ICE_ENV = "MOODIFY_TEST_LOOPBACK_ICE"


def read_image_upload(data: bytes, name: str, *, max_pixels: int = MAX_UPLOAD_PIXELS) -> np.ndarray:
    """An uploaded file's bytes -> BGR uint8, or ``ImageError`` with a one-line message for people.

    The picture's size is read from its header first, so a huge image is refused without decoding it.
    """
    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image, or a format Pillow cannot read "
                         "(try a JPEG, PNG, WebP, BMP or TIFF file)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: the image is too large to open safely; downscale it first") from None
    except Exception:  # a broken header: load_image below words the error
        width = height = 0
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is more than "
                         f"the app accepts ({max_pixels / 1e6:.0f} megapixels); downscale the photo first")
    return load_image(data, name=name)


def loopback_ice_requested() -> bool:
    """Whether the test-only loopback ICE switch (``MOODIFY_TEST_LOOPBACK_ICE=1``) is on."""
    return os.environ.get(LOOPBACK_ICE_ENV, "") == "1"


def patch_loopback_ice() -> None:
    """Make aioice gather only 127.0.0.1 host candidates (it skips loopback by default).

    For browser tests only: headless Chromium and the app run in a network namespace that has
    nothing but ``lo``, where aioice would otherwise offer no candidate at all.
    """
    import aioice.ice

    def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback_only
