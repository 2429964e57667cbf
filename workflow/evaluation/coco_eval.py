"""COCO-style average precision (AP50 and AP50:95, per class and mean) with pycocotools.

Ground truth and predictions are rebuilt as an in-memory COCO dataset with 1-based ids
(pycocotools treats a matched annotation id of 0 as "unmatched"). Ignored objects and ignore
regions become ``iscrowd`` annotations: a detection overlapping one (intersection over the
detection's area) is neither a true nor a false positive, as KITTI's DontCare rule asks.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from workflow.evaluation.classes import ClassPlan
from workflow.evaluation.records import Box, GtFrame, PredFrame

IOU_TYPES = ("bbox", "segm")


@dataclass(frozen=True)
class ClassResult:
    """AP of one class; ``None`` where the class has no (non-ignored) labeled object."""

    name: str
    gt_count: int
    det_count: int
    ap50: float | None
    ap: float | None  # AP averaged over IoU 0.50:0.95


@dataclass(frozen=True)
class EvalReport:
    """The outcome of one evaluation."""

    iou_type: str
    classes: tuple[ClassResult, ...]
    map50: float | None
    map: float | None
    labeled_frames: int
    predicted_frames: int
    predictions_without_labels: tuple[str, ...]
    failed_frames: tuple[str, ...]
    unmapped_classes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, APs rounded to 4 decimals."""
        data = asdict(self)
        for row in data["classes"]:
            row["ap50"], row["ap"] = _round(row["ap50"]), _round(row["ap"])
        data["map50"], data["map"] = _round(self.map50), _round(self.map)
        return data


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _box_ann(ann_id: int, image_id: int, category_id: int, box: Box, crowd: bool) -> dict[str, Any]:
    x1, y1, x2, y2 = box
    w, h = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x1, y1, w, h],
        "area": w * h,
        "iscrowd": int(crowd),
        "segmentation": [[x1, y1, x1, y2, x2, y2, x2, y1]],
    }


def _gt_dataset(
    gt: Mapping[str, GtFrame], cat_ids: Mapping[str, int], ignore_as: Mapping[str, str]
) -> dict[str, Any]:
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for image_id, stem in enumerate(sorted(gt), 1):
        frame = gt[stem]
        images.append({"id": image_id, "file_name": stem, "width": frame.width, "height": frame.height})
        for obj in frame.objects:
            name, crowd = obj.class_name, obj.ignore
            if name not in cat_ids and ignore_as.get(name) in cat_ids:
                name, crowd = ignore_as[name], True
            if name in cat_ids:
                ann = _box_ann(len(anns) + 1, image_id, cat_ids[name], obj.box, crowd)
                if obj.segmentation:
                    ann["segmentation"] = obj.segmentation
                anns.append(ann)
        for region in frame.ignore_regions:
            anns.extend(_box_ann(len(anns) + 1, image_id, c, region, True) for c in cat_ids.values())
    categories = [{"id": i, "name": n} for n, i in cat_ids.items()]
    return {"images": images, "annotations": anns, "categories": categories}


def _results(
    preds: Mapping[str, PredFrame], image_ids: Mapping[str, int], cat_ids: Mapping[str, int], plan: ClassPlan,
    iou_type: str,
) -> list[dict[str, Any]]:  # fmt: skip
    results = []
    for stem, frame in preds.items():
        if stem not in image_ids:
            continue
        for obj in frame.objects:
            target = plan.mapping.get(obj.class_name, "")
            if target not in cat_ids:
                continue
            res: dict[str, Any] = {
                "image_id": image_ids[stem],
                "category_id": cat_ids[target],
                "score": obj.score,
            }
            if iou_type == "segm":
                if obj.mask is None:
                    raise ValueError(f"segm evaluation needs masks; a {obj.class_name} in {stem} has none")
                res["segmentation"] = obj.mask
            else:
                x1, y1, x2, y2 = obj.box
                res["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            results.append(res)
    return results


def _class_aps(evaluator: COCOeval, k: int) -> tuple[float | None, float | None]:
    precision = evaluator.eval["precision"][:, :, k, 0, -1]  # IoU x recall, area all, most dets
    valid, valid50 = precision[precision > -1], precision[0][precision[0] > -1]
    return (
        float(np.mean(valid50)) if valid50.size else None,
        float(np.mean(valid)) if valid.size else None,
    )


def _run_cocoeval(
    dataset: dict[str, Any], results: list[dict[str, Any]], iou_type: str, max_dets: int
) -> Any:
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), iou_type)
        evaluator.params.maxDets = [1, 10, max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def evaluate(
    gt: Mapping[str, GtFrame],
    preds: Mapping[str, PredFrame],
    plan: ClassPlan,
    ignore_as: Mapping[str, str] | None = None,
    iou_type: str = "bbox",
    max_dets: int = 100,
    failed_frames: tuple[str, ...] = (),
) -> EvalReport:
    """AP per evaluated class of ``preds`` against ``gt`` (frames matched by stem).

    ``ignore_as`` maps a labeled class that is not evaluated to the evaluated class in which its
    objects are ignored (KITTI: Van in Car, Person_sitting in Pedestrian).
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou type {iou_type!r} is not one of {IOU_TYPES}")
    cat_ids = {name: i for i, name in enumerate(plan.classes, 1)}
    dataset = _gt_dataset(gt, cat_ids, ignore_as or {})
    image_ids = {img["file_name"]: img["id"] for img in dataset["images"]}
    results = _results(preds, image_ids, cat_ids, plan, iou_type)
    evaluator = _run_cocoeval(dataset, results, iou_type, max_dets) if results else None
    per_class = []
    for name, cat_id in cat_ids.items():
        gt_count = sum(1 for a in dataset["annotations"] if a["category_id"] == cat_id and not a["iscrowd"])
        det_count = sum(1 for r in results if r["category_id"] == cat_id)
        if evaluator is not None:
            ap50, ap = _class_aps(evaluator, cat_id - 1)
        else:
            ap50 = ap = 0.0 if gt_count else None
        per_class.append(ClassResult(name, gt_count, det_count, ap50, ap))
    return EvalReport(
        iou_type=iou_type,
        classes=tuple(per_class),
        map50=_mean([c.ap50 for c in per_class]),
        map=_mean([c.ap for c in per_class]),
        labeled_frames=len(gt),
        predicted_frames=sum(1 for stem in preds if stem in gt),
        predictions_without_labels=tuple(sorted(stem for stem in preds if stem not in gt)),
        failed_frames=tuple(failed_frames),
        unmapped_classes=plan.unmapped,
    )


def format_report(report: EvalReport) -> str:
    """A plain-text table of the report."""

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    width = max([len("class"), *(len(c.name) for c in report.classes)])
    lines = [f"{'class':<{width}}  {'GT':>5}  {'dets':>6}  {'AP50':>6}  {'AP50:95':>7}"]
    for c in report.classes:
        lines.append(
            f"{c.name:<{width}}  {c.gt_count:>5}  {c.det_count:>6}  {num(c.ap50):>6}  {num(c.ap):>7}"
        )
    lines.append(f"{'mean':<{width}}  {'':>5}  {'':>6}  {num(report.map50):>6}  {num(report.map):>7}")
    lines.append(
        f"frames: {report.labeled_frames} labeled, {report.predicted_frames} with predictions, "
        f"{len(report.predictions_without_labels)} predicted but unlabeled, "
        f"{len(report.failed_frames)} failed ({report.iou_type} IoU)"
    )
    if report.unmapped_classes:
        lines.append("predicted classes not evaluated: " + ", ".join(report.unmapped_classes))
    return "\n".join(lines)
