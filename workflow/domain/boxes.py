"""Box geometry shared by inference and merging: IoU and class-aware non-maximum suppression."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def box_iou(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def nms(
    boxes: FloatArray,
    scores: FloatArray,
    class_ids: IntArray,
    iou_threshold: float,
    max_keep: int | None = None,
) -> IntArray:
    """Indices of the boxes kept by greedy NMS within each class, best score first.

    Boxes of different classes never suppress each other: each class is shifted to its own
    region of the plane, so one pass over all boxes does every class at once.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    span = float(np.abs(boxes).max()) + 1.0
    offsets = np.asarray(class_ids, np.float64) * 2.0 * span
    shifted = boxes.astype(np.float64) + offsets[:, None]
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    areas = np.prod(np.clip(shifted[:, 2:] - shifted[:, :2], 0.0, None), axis=1)
    keep: list[int] = []
    limit = len(boxes) if max_keep is None else max_keep
    while order.size and len(keep) < limit:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        lt = np.maximum(shifted[best, :2], shifted[rest, :2])
        rb = np.minimum(shifted[best, 2:], shifted[rest, 2:])
        inter = np.prod(np.clip(rb - lt, 0.0, None), axis=1)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)
