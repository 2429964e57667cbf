"""Views of a frame that one prediction runs the model on: the whole frame, overlapping
tiles of it (small distant objects get more input pixels), and their mirror images (TTA).

A view is a rectangle of the ORIGINAL frame, optionally flipped left-right; boxes found in
a view are mapped back to frame pixels here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
RgbImage = npt.NDArray[np.uint8]

# A box this close to a tile's inner edge (a fraction of the tile side) is probably cut by it;
# a neighbouring tile or the whole frame sees that object whole.
EDGE_MARGIN = 0.02


@dataclass(frozen=True)
class View:
    """The frame rectangle ``[x0, x0 + w) x [y0, y0 + h)``, mirrored left-right if ``flipped``."""

    x0: int
    y0: int
    w: int
    h: int
    flipped: bool = False
    is_tile: bool = False

    def crop(self, image: RgbImage) -> RgbImage:
        """The view's pixels out of the whole frame."""
        part = image[self.y0 : self.y0 + self.h, self.x0 : self.x0 + self.w]
        return np.ascontiguousarray(part[:, ::-1] if self.flipped else part)

    def to_frame(self, boxes: FloatArray) -> FloatArray:
        """Map (N, 4) xyxy boxes from view pixels to frame pixels."""
        out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        if self.flipped:
            out[:, [0, 2]] = self.w - out[:, [2, 0]]
        out[:, [0, 2]] += self.x0
        out[:, [1, 3]] += self.y0
        return out

    def cut_by_edge(self, boxes: FloatArray, frame_w: int, frame_h: int) -> BoolArray:
        """Which boxes (in FRAME pixels) touch an edge of this tile that is not a frame edge."""
        if not self.is_tile:
            return np.zeros(len(boxes), dtype=bool)
        x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
        mx, my = max(2.0, EDGE_MARGIN * self.w), max(2.0, EDGE_MARGIN * self.h)
        left = (self.x0 > 0) & (x1 <= self.x0 + mx)
        top = (self.y0 > 0) & (y1 <= self.y0 + my)
        right = (self.x0 + self.w < frame_w) & (x2 >= self.x0 + self.w - mx)
        bottom = (self.y0 + self.h < frame_h) & (y2 >= self.y0 + self.h - my)
        cut: BoolArray = left | top | right | bottom
        return cut


def plan_views(
    frame_w: int,
    frame_h: int,
    tile_size: int | None = None,
    overlap: float = 0.25,
    flip: bool = False,
    band: tuple[float, float] | None = None,
) -> list[View]:
    """The whole frame, then tiles of ``tile_size`` (when given and smaller than the frame),
    then the mirror of each of those when ``flip``.

    ``band`` = (top, bottom) as fractions of the frame height: tiles cover only that horizontal
    band (in road frames, the band around the horizon where road users are small and distant);
    None covers the whole frame.
    """
    views = [View(0, 0, frame_w, frame_h)]
    if tile_size is not None and (frame_w > tile_size or frame_h > tile_size):
        tw, th = min(tile_size, frame_w), min(tile_size, frame_h)
        views += [
            View(x, y, tw, th, is_tile=True)
            for y in band_origins(frame_h, th, overlap, band)
            for x in tile_origins(frame_w, tw, overlap)
        ]
    if flip:
        views += [View(v.x0, v.y0, v.w, v.h, flipped=True, is_tile=v.is_tile) for v in views]
    return views


def band_origins(length: int, tile: int, overlap: float, band: tuple[float, float] | None) -> list[int]:
    """Start offsets of tile rows covering the band ``[top, bottom)`` (fractions of ``length``);
    a band shorter than a tile gets one row centred on it, kept inside the frame."""
    if band is None:
        return tile_origins(length, tile, overlap)
    top, bottom = round(band[0] * length), round(band[1] * length)
    if bottom - top <= tile:
        centre = (top + bottom) / 2
        return [int(min(max(round(centre - tile / 2), 0), max(length - tile, 0)))]
    return [top + o for o in tile_origins(bottom - top, tile, overlap)]


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``, evenly spread, with at
    least ``overlap`` (a fraction of the tile) shared between neighbours."""
    if tile >= length:
        return [0]
    step = max(1.0, tile * (1.0 - overlap))
    count = math.ceil((length - tile) / step) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]
