"""Pooling: the candidates of several views of one frame (whole, tiles, mirrors) pooled into one set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from workflow.domain.boxes import nms
from workflow.inference.candidates import Candidates
from workflow.inference.tiling import View

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# A box cut by a tile edge that lies this much (intersection over its own area) inside a larger
# box of its class is a fragment of that object, not another object.
FRAGMENT_MIN_INSIDE = 0.6


@dataclass(frozen=True)
class Pooled:
    """All candidates of all views in frame pixels; ``origin[i]`` = (view index, row in view)."""

    boxes: FloatArray
    scores: FloatArray
    class_ids: IntArray
    cut: BoolArray
    origin: IntArray


def pool(views: Sequence[tuple[View, Candidates]], width: int, height: int) -> Pooled:
    """Map every view's candidates (boxes in view pixels) to the frame and put them together."""
    boxes, scores, ids, cut, origin = [], [], [], [], []
    for index, (view, cands) in enumerate(views):
        in_frame = view.to_frame(cands.boxes)
        rows = np.flatnonzero(
            (in_frame[:, 2] - in_frame[:, 0] > 0.5) & (in_frame[:, 3] - in_frame[:, 1] > 0.5)
        )
        boxes.append(in_frame[rows])
        scores.append(cands.scores[rows])
        ids.append(cands.class_ids[rows])
        cut.append(view.cut_by_edge(in_frame[rows], width, height))
        origin.append(np.stack([np.full(len(rows), index), rows], axis=1).astype(np.int64))
    return Pooled(
        boxes=np.concatenate(boxes).astype(np.float32).reshape(-1, 4),
        scores=np.concatenate(scores).astype(np.float32),
        class_ids=np.concatenate(ids).astype(np.int64),
        cut=np.concatenate(cut).astype(bool),
        origin=np.concatenate(origin).reshape(-1, 2),
    )


def select(pooled: Pooled, iou_threshold: float, max_keep: int) -> IntArray:
    """Indices kept: class-aware NMS, then tile fragments dropped, best first, at most ``max_keep``."""
    kept = nms(pooled.boxes, pooled.scores, pooled.class_ids, iou_threshold)
    kept = drop_fragments(pooled.boxes, pooled.scores, pooled.class_ids, pooled.cut, kept)
    return kept[:max_keep]


def drop_fragments(
    boxes: FloatArray, scores: FloatArray, class_ids: IntArray, cut: BoolArray, kept: IntArray
) -> IntArray:
    """``kept`` without the cut boxes that lie mostly inside a larger, at least as confident kept
    box of their class.

    A tile sees only part of an object that crosses its edge and may still box that part; NMS
    keeps such a fragment because its IoU with the whole object's box is low. A larger box that
    scores LOWER does not remove a tile box: at low thresholds large doubtful boxes (a crowd, a
    false box over several objects) are common, and the confident tile box is the real object.
    """
    fragments = kept[cut[kept]]
    if len(fragments) == 0:
        return kept
    small, large = boxes[fragments], boxes[kept]
    lt = np.maximum(small[:, None, :2], large[None, :, :2])
    rb = np.minimum(small[:, None, 2:], large[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area_small = np.prod(small[:, 2:] - small[:, :2], axis=1)
    area_large = np.prod(large[:, 2:] - large[:, :2], axis=1)
    inside = inter / np.maximum(area_small[:, None], 1e-9) >= FRAGMENT_MIN_INSIDE
    same_class = class_ids[fragments][:, None] == class_ids[kept][None, :]
    larger = area_large[None, :] > area_small[:, None]
    surer = scores[kept][None, :] >= scores[fragments][:, None]
    drop = set(fragments[(inside & same_class & larger & surer).any(axis=1)].tolist())
    return np.asarray([i for i in kept.tolist() if i not in drop], np.int64)
