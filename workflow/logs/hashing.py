"""64-bit perceptual hashes of frames, for near-duplicate removal.

Written here rather than taken from ``imagehash``: that package needs SciPy and PyWavelets (tens of
MB more in the Lambda layer and the extraction image, and two more pins) for what is a resize and,
for pHash, an 8x8 corner of a 32x32 DCT-II, a few lines of NumPy. JPEG frames are decoded at reduced
scale (libjpeg's DCT scaling through Pillow's ``draft``), so hashing an 800x450 JPEG costs about a
millisecond instead of a full decode.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image

from workflow.domain.selection import HashMethod


def _small_gray(data: bytes | Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The frame as a grayscale float array of ``size`` (width, height), JPEGs decoded at reduced scale."""
    if isinstance(data, Image.Image):
        return _shrink(data, size)
    with Image.open(io.BytesIO(data)) as img:
        img.draft("L", (size[0] * 2, size[1] * 2))  # JPEG: decode at 1/2..1/8 scale, no-op otherwise
        return _shrink(img, size)


def _shrink(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    gray = img.convert("L").resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(gray, dtype=np.float32)


def dhash(data: bytes | Image.Image) -> int:
    """Difference hash: 8 rows of 8 left/right brightness comparisons of a 9x8 thumbnail."""
    px = _small_gray(data, (9, 8))
    return _pack(px[:, 1:] > px[:, :-1])


@lru_cache(maxsize=1)
def _dct_matrix(n: int = 32) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    matrix: np.ndarray = m.astype(np.float32)
    return matrix


def phash(data: bytes | Image.Image) -> int:
    """DCT hash: the 8x8 lowest frequencies of a 32x32 thumbnail's DCT-II, each above/below their median."""
    px = _small_gray(data, (32, 32))
    d = _dct_matrix()
    low = (d @ px @ d.T)[:8, :8]
    return _pack(low > np.median(low))


def _pack(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.reshape(-1)).tobytes(), "big")


def frame_hash(data: bytes | Image.Image, method: HashMethod) -> int:
    """The 64-bit hash of a frame (JPEG or PNG bytes, or a decoded image) by ``method``."""
    return dhash(data) if method == "dhash" else phash(data)


def distance(a: int, b: int) -> int:
    """Hamming distance of two 64-bit hashes."""
    return (a ^ b).bit_count()
