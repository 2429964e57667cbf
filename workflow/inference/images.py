"""Decode untrusted image bytes into an RGB array, with clear typed errors.

Frames come from S3 objects and local folders we do not control: corrupt uploads, truncated
transfers, PDFs with an image extension and decompression bombs all happen. Each becomes an
:class:`InvalidImage` or :class:`ImageTooLarge` naming the frame, never a bare Pillow error.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from workflow.domain.errors import ImageTooLarge, InvalidImage

# Ground Truth's own limits on labeling images (100 megapixels, 40 MB).
MAX_PIXELS = 100_000_000
MAX_BYTES = 40 * 1024 * 1024

# We check the header size ourselves (below) and raise ImageTooLarge; Pillow's warning is noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

RgbImage = npt.NDArray[np.uint8]


def decode_image(
    data: bytes, frame: str, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES
) -> RgbImage:
    """Decode encoded image bytes into an (H, W, 3) uint8 RGB array, upright per EXIF.

    Grayscale, palette, RGBA/LA, CMYK and 16-bit images are converted to 8-bit RGB.
    The pixel limit is checked from the header, before any pixel data is decoded.
    Raises InvalidImage (corrupt, truncated, not an image) or ImageTooLarge.
    """
    return decode_reduced(data, frame, None, max_pixels, max_bytes)[0]


class PixelBudget:
    """At most ``pixels`` pixels being decoded (and held for inference) at once in this process.

    A decode takes its frame's pixels (the whole budget at most, so a frame over it runs alone)
    and waits while others hold them: memory stays bounded whatever the concurrency."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels
        self.held = 0
        self.peak = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        need = min(max(pixels, 1), self.pixels)
        with self._cond:
            self._cond.wait_for(lambda: self.held + need <= self.pixels)
            self.held += need
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            with self._cond:
                self.held -= need
                self._cond.notify_all()


# 100 megapixels decoded at once per process (AUTOLABEL_DECODE_BUDGET_MP): one frame at the
# 100 MP limit alone, or a few hundred road frames, at a time.
DECODE_BUDGET = PixelBudget(int(float(os.environ.get("AUTOLABEL_DECODE_BUDGET_MP", "100")) * 1_000_000))


def decode_reduced(
    data: bytes,
    frame: str,
    fit: Callable[[int, int], tuple[int, int] | None] | None,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
) -> tuple[RgbImage, tuple[int, int]]:
    """Like :func:`decode_image`, at reduced size when ``fit`` allows it.

    ``fit`` is called with the upright full size and gives the least (w, h) wanted, or None; the
    result is never smaller than that on both sides (a JPEG is decoded at 1/2, 1/4 or 1/8 scale
    by its DCT, Pillow's draft mode; another format is box-reduced by an integer factor right
    after loading, before the RGB conversion copies it). Returns the array and the upright full
    frame size."""
    if len(data) == 0:
        raise InvalidImage(frame, "empty object: 0 bytes")
    if len(data) > max_bytes:
        raise ImageTooLarge(frame, f"{len(data)} bytes exceeds the limit of {max_bytes} bytes")
    image = _open(data, frame)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            frame, f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} pixels"
        )
    try:
        turned = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation swaps the sides
        full = (height, width) if turned else (width, height)
        least = fit(*full) if fit else None
        want = (least[1], least[0]) if least and turned else least  # the stored (unrotated) sides
        if want and image.format == "JPEG" and image.mode in ("RGB", "L", "CMYK"):
            image.draft(image.mode, want)
        image.load()
        factor = min(image.width // want[0], image.height // want[1]) if want else 1
        sixteen = image.mode.startswith("I;16")  # a reduced copy is mode I: still 16-bit values
        if factor >= 2:
            orientation = image.getexif().get(0x0112, 1)
            image = _reduce(image, factor)
            if orientation in _TRANSPOSE:  # the reduced copy has no EXIF: turn it here
                image = image.transpose(_TRANSPOSE[orientation])
        else:
            image = ImageOps.exif_transpose(image)
        return _to_rgb(image, sixteen), full
    except OSError as exc:
        reason = "truncated image" if "truncated" in str(exc) else "corrupt image data"
        raise InvalidImage(frame, f"{reason}: {exc}") from exc
    except MemoryError:
        raise
    except Exception as exc:  # Pillow's decoders raise many types on corrupt data (struct.error, ...)
        raise InvalidImage(frame, f"corrupt image data: {type(exc).__name__}: {exc}") from exc


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    """``image`` box-averaged down by ``factor`` (palette images: nearest, indices do not average)."""
    if image.mode == "1":
        image = image.convert("L")
    if image.mode == "P":
        size = (max(1, image.width // factor), max(1, image.height // factor))
        return image.resize(size, Image.Resampling.NEAREST)
    if image.mode not in ("L", "LA", "RGB", "RGBA", "CMYK", "I", "F"):
        image = image.convert("I") if image.mode.startswith("I;16") else image.convert("RGB")
    return image.reduce(factor)


def _open(data: bytes, frame: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(frame, f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage(frame, "not an image: cannot identify image file") from exc
    except MemoryError:
        raise
    except Exception as exc:  # plugins that half-recognise a header raise what they like
        raise InvalidImage(frame, f"not an image: {type(exc).__name__}: {exc}") from exc


def _to_rgb(image: Image.Image, sixteen: bool = False) -> RgbImage:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Pillow's convert("L") clips 16-bit values at 255 instead of scaling them.
        wide = np.asarray(image, dtype=np.int64)
        peak = 65535 if sixteen or mode.startswith("I;16") or wide.max(initial=0) > 255 else 255
        gray = np.clip(np.rint(wide * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float32)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()
