"""Decode untrusted image bytes into an RGB array, with clear typed errors.

Frames come from S3 objects and local folders we do not control: corrupt uploads, truncated
transfers, PDFs with an image extension and decompression bombs all happen. Each becomes an
:class:`InvalidImage` or :class:`ImageTooLarge` naming the frame, never a bare Pillow error.
"""

from __future__ import annotations

import io
import warnings

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
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except OSError as exc:
        reason = "truncated image" if "truncated" in str(exc) else "corrupt image data"
        raise InvalidImage(frame, f"{reason}: {exc}") from exc
    except MemoryError:
        raise
    except Exception as exc:  # Pillow's decoders raise many types on corrupt data (struct.error, ...)
        raise InvalidImage(frame, f"corrupt image data: {type(exc).__name__}: {exc}") from exc


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


def _to_rgb(image: Image.Image) -> RgbImage:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Pillow's convert("L") clips 16-bit values at 255 instead of scaling them.
        wide = np.asarray(image, dtype=np.int64)
        peak = 65535 if mode.startswith("I;16") or wide.max(initial=0) > 255 else 255
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
