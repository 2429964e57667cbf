"""Fit an image into a fixed model input, and map model-space boxes back to the image exactly.

Road frames are wide (KITTI 1242x375 is 3.3:1). Squashing one into a square input makes cars
three times taller than wide, which pretrained detectors never saw; letterboxing keeps the
aspect and pads the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

FloatArray = npt.NDArray[np.float32]
RgbImage = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Geometry:
    """Where a source image of ``src_w x src_h`` lands inside a model input of ``in_w x in_h``.

    A source pixel coordinate ``x`` maps to ``x * scale_x + pad_x`` in the model input.
    """

    src_w: int
    src_h: int
    in_w: int
    in_h: int
    new_w: int
    new_h: int
    pad_x: int
    pad_y: int

    @property
    def scale_x(self) -> float:
        return self.new_w / self.src_w

    @property
    def scale_y(self) -> float:
        return self.new_h / self.src_h

    def to_source(self, boxes: FloatArray) -> FloatArray:
        """Map (N, 4) xyxy boxes from model-input pixels to source pixels, clipped to the source."""
        out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0.0, float(self.src_w))
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0.0, float(self.src_h))
        return out

    def to_input(self, x: float, y: float) -> tuple[float, float]:
        """Map one source point (pixel-edge coordinates) into model-input coordinates."""
        return x * self.scale_x + self.pad_x, y * self.scale_y + self.pad_y


def letterbox_geometry(src_w: int, src_h: int, in_w: int, in_h: int) -> Geometry:
    """Aspect-preserving fit, centred, padding the remainder."""
    ratio = min(in_w / src_w, in_h / src_h)
    new_w = max(1, min(in_w, round(src_w * ratio)))
    new_h = max(1, min(in_h, round(src_h * ratio)))
    return Geometry(src_w, src_h, in_w, in_h, new_w, new_h, (in_w - new_w) // 2, (in_h - new_h) // 2)


def squash_geometry(src_w: int, src_h: int, in_w: int, in_h: int) -> Geometry:
    """Naive resize to the input size, distorting the aspect (kept for comparison)."""
    return Geometry(src_w, src_h, in_w, in_h, in_w, in_h, 0, 0)


def place(image: RgbImage, geometry: Geometry, pad_value: int) -> RgbImage:
    """Resize ``image`` and paste it into a ``pad_value``-filled canvas as ``geometry`` says."""
    if (image.shape[1], image.shape[0]) != (geometry.src_w, geometry.src_h):
        raise ValueError(
            f"image is {image.shape[1]}x{image.shape[0]}, geometry expects {geometry.src_w}x{geometry.src_h}"
        )
    if (geometry.new_w, geometry.new_h) == (geometry.src_w, geometry.src_h):
        resized = image
    else:
        resized = np.asarray(
            Image.fromarray(image).resize((geometry.new_w, geometry.new_h), Image.Resampling.BILINEAR)
        )
    if (geometry.new_w, geometry.new_h) == (geometry.in_w, geometry.in_h):
        return np.ascontiguousarray(resized)
    canvas = np.full((geometry.in_h, geometry.in_w, 3), pad_value, dtype=np.uint8)
    canvas[
        geometry.pad_y : geometry.pad_y + geometry.new_h, geometry.pad_x : geometry.pad_x + geometry.new_w
    ] = resized
    return canvas
