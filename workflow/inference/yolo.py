"""Decode Ultralytics YOLOv8 / YOLO11 ONNX exports (detection and ``-seg``).

``output0`` is [1, 4 + nc (+ nm), N]: box centre/size in input pixels, per-class scores (no
objectness) and, for segmentation models, nm mask coefficients that weight the prototype
masks of ``output1`` [1, nm, mh, mw].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from workflow.domain.errors import ConfigurationError
from workflow.inference.candidates import Candidates, FloatArray, best_class


def decode_yolo(
    outputs: Sequence[npt.NDArray[np.floating]], num_classes: int, thresholds: FloatArray
) -> tuple[Candidates, FloatArray | None]:
    """Candidates (boxes xyxy in input pixels) and the prototypes (nm, mh, mw) or None."""
    head = np.asarray(outputs[0])
    if head.ndim != 3 or head.shape[0] != 1:
        raise ConfigurationError(f"YOLO output0 must be [1, 4+nc(+nm), N], got {list(head.shape)}")
    protos = _protos(outputs)
    nm = 0 if protos is None else protos.shape[0]
    if head.shape[1] != 4 + num_classes + nm:
        raise ConfigurationError(
            f"YOLO output0 has {head.shape[1]} channels, expected 4 + {num_classes} classes"
            f" + {nm} mask coefficients"
        )
    rows_by_anchor = head[0].T  # (N, C); a view, nothing is copied yet
    class_scores = rows_by_anchor[:, 4 : 4 + num_classes].astype(np.float32)
    rows, cls, score = best_class(class_scores, thresholds)
    picked = rows_by_anchor[rows].astype(np.float32)
    cx, cy, w, h = picked[:, 0], picked[:, 1], picked[:, 2], picked[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    coeffs = picked[:, 4 + num_classes :] if nm else None
    return Candidates(boxes.astype(np.float32), score, cls, coeffs), protos


def _protos(outputs: Sequence[npt.NDArray[np.floating]]) -> FloatArray | None:
    if len(outputs) < 2:
        return None
    protos = np.asarray(outputs[1], dtype=np.float32)
    if protos.ndim != 4 or protos.shape[0] != 1:
        raise ConfigurationError(f"YOLO output1 must be [1, nm, mh, mw], got {list(protos.shape)}")
    first: FloatArray = protos[0]
    return first


def infer_num_classes(output0_channels: int, proto_channels: int | None) -> int:
    """Number of classes of an export without ``names`` metadata."""
    return output0_channels - 4 - (proto_channels or 0)
