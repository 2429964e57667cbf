"""Decode NanoDet (GFL head) outputs into candidate boxes in model-input pixels.

Per stride s the model gives a class map [1, N, C] (already sigmoid) and a box distribution
map [1, N, 4 * (reg_max + 1)]: for each side (left, top, right, bottom) a softmax over
``reg_max + 1`` bins whose expectation, times s, is the distance from the anchor centre.
Anchors run row-major over the (H/s) x (W/s) feature map, centred at ``(i + offset) * s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from workflow.domain.errors import ConfigurationError
from workflow.inference.candidates import Candidates, FloatArray, best_class
from workflow.inference.spec import ModelSpec


def decode_nanodet(
    outputs: Sequence[npt.NDArray[np.floating]],
    spec: ModelSpec,
    in_w: int,
    in_h: int,
    thresholds: FloatArray,
) -> Candidates:
    """Candidates (boxes xyxy in input pixels) from the six NanoDet outputs, in any order."""
    levels = _pair_levels(outputs, spec, in_w, in_h)
    parts = [
        _decode_level(cls_map, box_map, stride, in_w, spec, thresholds) for stride, cls_map, box_map in levels
    ]
    return Candidates(
        boxes=np.concatenate([p.boxes for p in parts]).astype(np.float32),
        scores=np.concatenate([p.scores for p in parts]).astype(np.float32),
        class_ids=np.concatenate([p.class_ids for p in parts]).astype(np.int64),
    )


def _pair_levels(
    outputs: Sequence[npt.NDArray[np.floating]], spec: ModelSpec, in_w: int, in_h: int
) -> list[tuple[int, FloatArray, FloatArray]]:
    box_dim = 4 * (spec.reg_max + 1)
    cls_maps: dict[int, FloatArray] = {}
    box_maps: dict[int, FloatArray] = {}
    for out in outputs:
        arr = np.asarray(out, dtype=np.float32).reshape(-1, out.shape[-1])
        target = box_maps if out.shape[-1] == box_dim else cls_maps
        target[arr.shape[0]] = arr
    levels = []
    for stride in spec.strides:
        n = math.ceil(in_h / stride) * math.ceil(in_w / stride)
        if n not in cls_maps or n not in box_maps:
            raise ConfigurationError(
                f"NanoDet outputs {[list(o.shape) for o in outputs]} have no stride-{stride} pair "
                f"for a {in_w}x{in_h} input (expected {n} anchors)"
            )
        if cls_maps[n].shape[1] != len(spec.names):
            raise ConfigurationError(f"{cls_maps[n].shape[1]} class scores but {len(spec.names)} names")
        levels.append((stride, cls_maps[n], box_maps[n]))
    return levels


def _decode_level(
    cls_map: FloatArray,
    box_map: FloatArray,
    stride: int,
    in_w: int,
    spec: ModelSpec,
    thresholds: FloatArray,
) -> Candidates:
    rows, cls, score = best_class(cls_map, thresholds)
    bins = box_map[rows].reshape(-1, 4, spec.reg_max + 1)
    bins = np.exp(bins - bins.max(axis=2, keepdims=True))
    bins /= bins.sum(axis=2, keepdims=True)
    dist = (bins @ np.arange(spec.reg_max + 1, dtype=np.float32)) * stride  # (M, 4): l, t, r, b
    feat_w = math.ceil(in_w / stride)
    cx = (rows % feat_w + spec.center_offset) * stride
    cy = (rows // feat_w + spec.center_offset) * stride
    boxes = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], axis=1)
    return Candidates(boxes.astype(np.float32), score, cls)
