"""What evaluation compares: ground-truth and predicted boxes per frame, keyed by file stem."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels


@dataclass(frozen=True)
class GtObject:
    """One labeled object; ``ignore`` objects neither count as misses nor make detections false."""

    class_name: str
    box: Box
    ignore: bool = False
    segmentation: Any = None  # COCO polygon list or RLE, when the labels have one


@dataclass
class GtFrame:
    """The labels of one frame. ``ignore_regions`` (KITTI DontCare) apply to every class."""

    stem: str
    objects: list[GtObject] = field(default_factory=list)
    ignore_regions: list[Box] = field(default_factory=list)
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class PredObject:
    """One predicted box with its score; ``mask`` is a COCO RLE when the model made one."""

    class_name: str
    box: Box
    score: float
    mask: dict[str, Any] | None = None


@dataclass
class PredFrame:
    """The predictions of one frame."""

    stem: str
    objects: list[PredObject] = field(default_factory=list)


def frame_stem(name: str) -> str:
    """The file stem a frame is matched by: ``s3://b/drive/000008.png`` -> ``000008``."""
    return PurePosixPath(name.replace("\\", "/")).stem


def xywh_to_xyxy(bbox: list[float]) -> Box:
    x, y, w, h = (float(v) for v in bbox[:4])
    return (x, y, x + w, y + h)
