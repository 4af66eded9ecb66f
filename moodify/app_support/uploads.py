"""The web app's uploads: a picture checked and decoded for people, and the app's torch threads."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageError
from ..pipeline.images import load_image

# Torch threads for the whole app process. Every browser session's script and webcam callback runs
# on its own thread of one process, so the number is set for the process (a per-call context
# manager, like ``moodify video --threads``, would race between sessions). One, as ``moodify video``
# and ``moodify live`` use: the network classifies a face in ~1 ms on one thread, and torch's
# default (one per core) only fights the video decoder and encoder, and the other sessions, for
# the CPU. With another process busy on one of 2 cores, a 4 s clip took the Video mode 24.5 s
# unpinned, 6.3 s pinned, and ``moodify video`` 5.3 s (benchmarks/bench_video.py --busy 1): torch's
# threads wait for each other at every layer while one of them is descheduled.
APP_TORCH_THREADS = 1


def read_image_upload(data: bytes, name: str) -> np.ndarray:
    """An uploaded file's bytes -> BGR uint8, or ``ImageError`` with a one-line message for people.

    The limit is Moodify's one pixel limit (``moodify.pipeline.images.MAX_IMAGE_PIXELS``), read
    from the header before decoding: a larger JPEG is decoded reduced, anything else refused.
    """
    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)):
            pass
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image, or a format Pillow cannot read "
                         "(try a JPEG, PNG, WebP, BMP or TIFF file)") from None
    except Exception:  # too large, or a broken header: load_image below words the error
        pass
    return load_image(data, name=name)


def pin_torch_threads(n: int = APP_TORCH_THREADS) -> None:
    """Make torch use ``n`` CPU threads in this process (see ``APP_TORCH_THREADS``)."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
