"""Merging the detections several models made of one frame into one label set."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from workflow.domain.boxes import box_iou, nms
from workflow.domain.detections import Detections, Provenance


def iou_matrix(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Pairwise IoU of xyxy boxes: (N,4) x (M,4) -> (N,M)."""
    return box_iou(a, b)


def class_nms(dets: Detections, iou_threshold: float = 0.55) -> npt.NDArray[np.int64]:
    """Indices kept by greedy NMS within each class, best score first, in ascending order."""
    names = sorted(set(dets.class_names))
    ids = np.array([names.index(n) for n in dets.class_names], dtype=np.int64)
    return np.sort(nms(dets.boxes, dets.scores, ids, iou_threshold))


def concat(parts: list[Detections], provenance: Provenance) -> Detections:
    """All detections of one frame from several models (already mapped into one taxonomy)."""
    if not parts:
        raise ValueError("nothing to concatenate")
    first = parts[0]
    with_masks = all(p.masks is not None for p in parts)
    return Detections(
        boxes=np.concatenate([p.boxes for p in parts]).reshape(-1, 4),
        scores=np.concatenate([p.scores for p in parts]),
        class_ids=np.concatenate([p.class_ids for p in parts]),
        class_names=tuple(n for p in parts for n in p.class_names),
        image_width=first.image_width,
        image_height=first.image_height,
        provenance=provenance,
        frame=first.frame,
        masks=tuple(m for p in parts for m in (p.masks or ())) if with_masks else None,
    )


def merge_models(parts: list[Detections], iou_threshold: float = 0.55) -> Detections:
    """One label set from several models' detections of a frame: concatenate, then class-wise NMS.

    A single model's detections pass through unchanged.
    """
    if len(parts) == 1:
        return parts[0]
    names = "+".join(p.provenance.model for p in parts)
    provenance = Provenance(
        model=names,
        version="+".join(p.provenance.version for p in parts),
        settings={
            "merge": "class-nms",
            "iou": iou_threshold,
            "models": [p.provenance.to_dict() for p in parts],
        },
    )
    merged = concat(parts, provenance)
    return merged.select(class_nms(merged, iou_threshold))
