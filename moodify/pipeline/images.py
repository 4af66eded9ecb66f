"""Turning whatever a user hands us (a path, bytes, a PIL image, a numpy array) into BGR uint8.

Every odd case a photo library meets is handled here once: EXIF orientation, grayscale, alpha,
palette, 16-bit and float images, CMYK. Anything unreadable raises ``ImageError`` with a
one-line message that names the input, never a bare decoder traceback.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

# The one pixel limit, on every decode path (Pillow's and the OpenCV fast path alike, the CLI, the
# API, batch and the web app), checked from the file's header before any pixel is decoded, so a
# small file cannot claim gigabytes. 50 megapixels is a 50 MP phone photo; decoded it takes at most
# 200 MB (4 bytes a pixel), and detection searches a 960-pixel copy anyway. A JPEG over it (up to
# Pillow's own ceiling, PILLOW_MAX_PIXELS) is decoded at 1/2, 1/4 or 1/8 scale by the JPEG decoder
# itself (``draft``), never whole, down to REDUCED_MAX_PIXELS: a 13000x13000 JPEG takes 32 MB at
# 1/4, not 507 (four of them through `moodify batch --workers 2`: 2.2 GB summed peak, 6.2 GB before).
MAX_IMAGE_PIXELS = 50_000_000
# 16 MP (4000-pixel sides): a face 1/80 of the picture wide is still 50 pixels, more than the
# 48-pixel crop needs; the detector searches a 960-pixel copy whatever it is given.
REDUCED_MAX_PIXELS = 16_000_000
PILLOW_MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS  # Pillow refuses to open anything larger (DecompressionBombError)
# 16-bit, alpha and float images are converted to 8-bit in blocks of rows (CONVERT_BLOCK_PIXELS),
# so converting costs one uint8 copy, not several float64 ones.
CONVERT_BLOCK_PIXELS = 1 << 20


# Image files by suffix (case-insensitive): what a folder is searched for (batch, labelled photos).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                            ".pgm", ".ppm", ".pnm"})



def load_image(source, *, name: str | None = None) -> np.ndarray:
    """Any supported image input -> BGR uint8 array (H, W, 3), EXIF orientation applied.

    A JPEG over ``MAX_IMAGE_PIXELS`` comes back at a reduced scale (``decode_image`` says which).
    """
    return decode_image(source, name=name)[0]


def decode_image(source, *, name: str | None = None) -> tuple[np.ndarray, float]:
    """``(bgr, scale)``: the picture as ``load_image`` gives it, and how many of the original's
    pixels one of its pixels spans (1.0, or 2, 4 or 8 for a JPEG decoded reduced)."""
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__)
    if isinstance(source, np.ndarray):
        return array_to_bgr(source, name=label), 1.0
    if isinstance(source, Image.Image):
        return pil_to_bgr(source, name=label), 1.0
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _open_pil(io.BytesIO(bytes(source)), label)
    if isinstance(source, (str, os.PathLike)):
        _check_regular_file(source, label)
        return _open_pil(Path(source), label)
    if hasattr(source, "read"):
        return _open_pil(source, label)
    raise ImageError(f"{label}: unsupported input type {type(source).__name__}")


def _check_regular_file(path: str | os.PathLike, label: str) -> None:
    """Refuse anything but a non-empty regular file before opening it: reading a FIFO or a
    device named ``x.jpg`` would block forever or never end."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except OSError as exc:  # a symlink loop, a permission problem, a name too long
        raise ImageError(f"{label}: cannot open ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{label}: is a folder, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{label}: not a regular file (a pipe, socket or device), not an image")
    if st.st_size == 0:
        raise ImageError(f"{label}: empty file (0 bytes)")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC: the last 8 bytes of every complete PNG


def load_gray(path: str | os.PathLike) -> np.ndarray:
    """An image file -> grayscale uint8 (H, W), the same pixels as ``load_image`` then BGR2GRAY.

    8-bit grayscale PNGs (how FER2013-style face crops are stored) are decoded by OpenCV
    directly, about 4x faster than through Pillow, which matters at thousands of crops a second;
    every other file, and every failure, takes the ``load_image`` path with its checks and messages.
    """
    _check_regular_file(path, str(path))
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        data = None
    # Only whole files (a file cut short goes to Pillow, which words the problem for people),
    # files without an eXIf chunk (its orientation is applied by the Pillow path only), and only
    # 8-bit grayscale within the size limits, as the header says (anything else is decoded by Pillow).
    if (data is not None and data[:8].tobytes() == PNG_SIGNATURE and data[-8:].tobytes() == PNG_END
            and _png_is_small_gray8(data) and b"eXIf" not in data.tobytes()):
        gray = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if gray is not None and gray.ndim == 2 and gray.dtype == np.uint8:
            return gray
    return cv2.cvtColor(load_image(path), cv2.COLOR_BGR2GRAY)


def _png_is_small_gray8(data: np.ndarray) -> bool:
    """Whether a PNG's IHDR says 8-bit grayscale (colour type 0) within MAX_IMAGE_PIXELS."""
    header = data[8:26].tobytes()
    if len(header) < 18 or header[4:8] != b"IHDR":
        return False
    width, height = int.from_bytes(header[8:12], "big"), int.from_bytes(header[12:16], "big")
    return header[16] == 8 and header[17] == 0 and width * height <= MAX_IMAGE_PIXELS


def check_size(width: int, height: int, label: str) -> None:
    """Refuse, before decoding, an image over MAX_IMAGE_PIXELS."""
    pixels = width * height
    if pixels > MAX_IMAGE_PIXELS:
        raise ImageError(f"{label}: too large to decode safely: {width}x{height} pixels ({pixels / 1e6:.0f} "
                         f"megapixels) is more than the {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels Moodify decodes; "
                         "downscale it first")


def _reduce_jpeg(img: Image.Image) -> float:
    """Have the JPEG decoder of a JPEG over MAX_IMAGE_PIXELS decode it at 1/2, 1/4 or 1/8 scale (the
    least reduction to REDUCED_MAX_PIXELS, else 1/8); returns the scale (1.0: nothing to do, or not a JPEG)."""
    width, height = img.size
    if img.format != "JPEG" or width * height <= MAX_IMAGE_PIXELS:
        return 1.0
    for k in (2, 4, 8):
        if -(-width // k) * -(-height // k) <= REDUCED_MAX_PIXELS or k == 8:
            img.draft(img.mode, (-(-width // k), -(-height // k)))
            return width / img.width
    return 1.0  # not reached: k == 8 always answers


def _quiet_pillow_bomb_warning() -> None:
    # Pillow warns (DecompressionBombWarning, printed raw on stderr) about images between its own
    # two limits; MAX_IMAGE_PIXELS above is stricter and says what happens in one line instead. The
    # filter is the process's (a per-call catch_warnings would not be thread-safe); it is put back
    # at every decode, since a caller's catch_warnings (a test runner's) may have dropped it.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _open_pil(fp, label: str) -> tuple[np.ndarray, float]:
    _quiet_pillow_bomb_warning()
    try:
        with Image.open(fp) as img:
            scale = _reduce_jpeg(img)
            check_size(img.width, img.height, label)
            img.load()
            return pil_to_bgr(img, name=label), scale
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError:  # Pillow's own check, before ours: the same limit, worded alike
        raise ImageError(f"{label}: too large to decode safely: more than the {PILLOW_MAX_PIXELS / 1e6:.0f} "
                         "megapixels any picture may claim; downscale it first") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated and corrupt data as OSError / SyntaxError.
        raise ImageError(f"{label}: corrupt or truncated image ({exc})") from None


def pil_to_bgr(img: Image.Image, *, name: str = "image") -> np.ndarray:
    """A PIL image in any mode -> BGR uint8, after applying its EXIF orientation."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block must not cost the picture; keep it unrotated
        pass
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Converted in blocks of rows straight from Pillow's raster: no full-size copy of it.
        width, height = img.size
        dtype = np.asarray(img.crop((0, 0, 1, 1))).dtype

        def rows(start: int, stop: int) -> np.ndarray:
            return np.asarray(img.crop((0, start, width, min(stop, height))))  # crop pads past the edge

        return cv2.cvtColor(_to_uint8(rows, (height, width), dtype, name=name), cv2.COLOR_GRAY2BGR)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    elif mode == "L":
        return cv2.cvtColor(np.asarray(img), cv2.COLOR_GRAY2BGR)
    elif mode != "RGB":
        img = img.convert("RGB")  # 1, CMYK, YCbCr, LAB, HSV
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)


def array_to_bgr(arr: np.ndarray, *, name: str = "array") -> np.ndarray:
    """A numpy image (grayscale, BGR or BGRA; uint8, uint16 or float in [0, 1]) -> BGR uint8."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or min(arr.shape[:2]) < 1:
        raise ImageError(f"{name}: expected an image array (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating):
        source = arr
        arr = _to_uint8(lambda start, stop: source[start:stop], source.shape, source.dtype, name=name)
    else:
        raise ImageError(f"{name}: unsupported pixel type {arr.dtype}")
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    if arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(arr)


def _to_uint8(rows, shape: tuple[int, ...], dtype: np.dtype, *, name: str) -> np.ndarray:
    """uint16, wider integer or float pixels -> uint8, reading ``rows(start, stop)`` in blocks.

    uint16 keeps its top byte; floats in [0, 1] are scaled by 255; integers in 256..65535 are
    16-bit values (Pillow's "I" mode); anything else outside 0..255 is stretched to 0..255. One
    pass finds the range and one converts, each over CONVERT_BLOCK_PIXELS at a time, so the only
    full-size allocation is the uint8 result.
    """
    height = shape[0]
    step = max(1, CONVERT_BLOCK_PIXELS // max(1, int(np.prod(shape[1:]))))
    blocks = range(0, height, step)
    out = np.empty(shape, dtype=np.uint8)
    if dtype == np.uint16:
        for start in blocks:
            out[start:start + step] = rows(start, start + step) // 257
        return out
    was_float = np.issubdtype(dtype, np.floating)
    low, high = np.inf, -np.inf
    for start in blocks:
        block = rows(start, start + step)
        if was_float and not np.isfinite(block).all():
            raise ImageError(f"{name}: image contains NaN or infinite values")
        low, high = min(low, float(block.min())), max(high, float(block.max()))

    def convert(v: np.ndarray) -> np.ndarray:
        if was_float and low >= 0 and high <= 1:
            return v * 255  # float images in [0, 1]
        if not was_float and low >= 0 and 255 < high <= 65535:
            return v / 257  # 16-bit values in a wider integer type (Pillow's "I" mode)
        if high > 255 or low < 0:
            return (v - low) / max(high - low, 1e-12) * 255  # anything else: stretch to 0..255
        return v

    for start in blocks:
        out[start:start + step] = np.clip(convert(rows(start, start + step).astype(np.float64)) + 0.5, 0, 255)
    return out
