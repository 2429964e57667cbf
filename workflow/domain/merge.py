"""Merging the detections several models made of one frame into one label set."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from workflow.domain.detections import Detections, Provenance


def iou_matrix(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Pairwise IoU of xyxy boxes: (N,4) x (M,4) -> (N,M)."""
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def class_nms(dets: Detections, iou_threshold: float = 0.55) -> npt.NDArray[np.int64]:
    """Indices kept by greedy NMS within each class name, best score first."""
    keep: list[int] = []
    for name in sorted(set(dets.class_names)):
        idx = np.array([i for i, n in enumerate(dets.class_names) if n == name], dtype=np.int64)
        idx = idx[np.argsort(-dets.scores[idx], kind="stable")]
        while len(idx):
            best, rest = idx[0], idx[1:]
            keep.append(int(best))
            overlap = iou_matrix(dets.boxes[best : best + 1], dets.boxes[rest])[0]
            idx = rest[overlap < iou_threshold]
    return np.array(sorted(keep), dtype=np.int64)


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
