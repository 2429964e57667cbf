"""Readers of ground truth (COCO json, KITTI) and predictions (COCO results, Detections files).

Every reader keys frames by file stem so predictions and labels from different tools match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflow.domain.detections import Detections
from workflow.evaluation.kitti import kitti_ground_truth, kitti_predictions
from workflow.evaluation.records import GtFrame, GtObject, PredFrame, PredObject, frame_stem, xywh_to_xyxy

DETECTION_SUFFIXES = (".json", ".out")


@dataclass
class CocoIndex:
    """How a COCO file names its images and categories (to resolve bare results lists)."""

    image_stems: dict[Any, str] = field(default_factory=dict)
    category_names: dict[Any, str] = field(default_factory=dict)


@dataclass
class PredictionSet:
    """Predicted frames, plus the frames the model reported as failed (no detections)."""

    frames: dict[str, PredFrame] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def _coco_index(data: dict[str, Any]) -> CocoIndex:
    return CocoIndex(
        image_stems={img["id"]: frame_stem(str(img.get("file_name", img["id"]))) for img in data["images"]},
        category_names={cat["id"]: str(cat["name"]) for cat in data.get("categories", [])},
    )


def _category(ann: dict[str, Any], index: CocoIndex) -> str:
    if "category_name" in ann:
        return str(ann["category_name"])
    if ann.get("category_id") in index.category_names:
        return index.category_names[ann["category_id"]]
    raise ValueError(
        f"annotation {ann.get('id', '?')} has category_id {ann.get('category_id')!r} that no category "
        "names; give a category_name or a COCO ground truth with categories"
    )


def read_coco_ground_truth(path: Path) -> tuple[dict[str, GtFrame], CocoIndex]:
    """Frames of a COCO dataset json; ``iscrowd``/``ignore`` annotations become ignored objects."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{path} is not a COCO dataset (needs images and annotations)")
    index = _coco_index(data)
    frames = {
        index.image_stems[img["id"]]: GtFrame(
            index.image_stems[img["id"]], width=int(img.get("width", 0)), height=int(img.get("height", 0))
        )
        for img in data["images"]
    }
    for ann in data["annotations"]:
        frames[index.image_stems[ann["image_id"]]].objects.append(
            GtObject(
                class_name=_category(ann, index),
                box=xywh_to_xyxy(ann["bbox"]),
                ignore=bool(ann.get("iscrowd", 0) or ann.get("ignore", 0)),
                segmentation=ann.get("segmentation"),
            )
        )
    return frames, index


def read_ground_truth(
    path: Path, gt_format: str | None = None
) -> tuple[dict[str, GtFrame], CocoIndex | None]:
    """COCO json or KITTI labels (folder or .txt file); the format is guessed when not given."""
    chosen = gt_format or ("coco" if path.suffix.lower() == ".json" else "kitti")
    if chosen == "coco":
        return read_coco_ground_truth(path)
    if chosen == "kitti":
        return kitti_ground_truth(path), None
    raise ValueError(f"unknown ground truth format {gt_format!r} (coco or kitti)")


def _stem_resolver(image_stems: dict[Any, str], known_stems: set[str]) -> Any:
    numeric = {int(s): s for s in known_stems if s.isdigit()}

    def resolve(image_id: Any) -> str:
        if image_id in image_stems:
            return image_stems[image_id]
        if isinstance(image_id, str):
            return frame_stem(image_id)
        return numeric.get(int(image_id), str(image_id))

    return resolve


def _coco_predictions(data: Any, index: CocoIndex | None, known_stems: set[str]) -> PredictionSet:
    if isinstance(data, dict):  # a whole COCO dataset whose annotations carry scores
        index, results = _coco_index(data), data["annotations"]
    else:
        index, results = index or CocoIndex(), data
    stem_of = _stem_resolver(index.image_stems, known_stems)
    out = PredictionSet()
    for res in results:
        stem = stem_of(res["image_id"])
        frame = out.frames.setdefault(stem, PredFrame(stem))
        box = xywh_to_xyxy(res["bbox"]) if "bbox" in res else (0.0, 0.0, 0.0, 0.0)
        mask = res.get("segmentation") if isinstance(res.get("segmentation"), dict) else None
        frame.objects.append(PredObject(_category(res, index), box, float(res.get("score", 1.0)), mask))
    return out


def _detections_frame(data: dict[str, Any]) -> PredFrame:
    detections = Detections.from_dict(data)
    masks = detections.masks or (None,) * len(detections)
    objects = [
        PredObject(name, tuple(float(v) for v in box), float(score), mask)  # type: ignore[arg-type]
        for name, box, score, mask in zip(
            detections.class_names, detections.boxes, detections.scores, masks, strict=True
        )
    ]
    return PredFrame("", objects)


def _add_detection_file(path: Path, out: PredictionSet) -> None:
    data = json.loads(path.read_text())
    entries = data["results"] if isinstance(data, dict) and "results" in data else [data]
    for entry in entries:
        stem = frame_stem(str(entry.get("frame") or path.name))
        if "error" in entry:
            out.failed.append(str(entry.get("frame", path.name)))
            continue
        frame = _detections_frame(entry)
        frame.stem = stem
        out.frames[stem] = frame


def read_predictions(path: Path, index: CocoIndex | None, known_stems: set[str]) -> PredictionSet:
    """Predictions from a COCO results/dataset json, or a folder (or file) of our Detections JSON
    (single-frame or batch ``{"results": [...]}`` outputs), or a folder of KITTI-format .txt."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in DETECTION_SUFFIXES)
        if not files and any(path.glob("*.txt")):
            return PredictionSet(kitti_predictions(path))
        if not files:
            raise ValueError(f"no prediction files (*.json, *.out, *.txt) in {path}")
        out = PredictionSet()
        for file in files:
            _add_detection_file(file, out)
        return out
    if path.suffix.lower() == ".txt":
        return PredictionSet(kitti_predictions(path))
    data = json.loads(path.read_text())
    if isinstance(data, list) or (isinstance(data, dict) and "annotations" in data):
        return _coco_predictions(data, index, known_stems)
    out = PredictionSet()
    _add_detection_file(path, out)
    return out
