"""Evaluate prediction files against ground-truth files: the whole of ``autolabel eval``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from workflow.evaluation.classes import COCO_TO_KITTI, plan_classes
from workflow.evaluation.coco_eval import EvalReport, evaluate
from workflow.evaluation.kitti import KITTI_NEIGHBOURS
from workflow.evaluation.readers import read_ground_truth, read_predictions


def evaluate_files(
    pred_path: Path,
    gt_path: Path,
    gt_format: str | None = None,
    class_map: Mapping[str, str] | None = None,
    iou_type: str = "bbox",
    max_dets: int = 100,
) -> EvalReport:
    """Read both sides, decide the classes, and compute COCO-style AP.

    With KITTI labels and no class map, COCO detector names are mapped onto KITTI types
    (car->Car, person->Pedestrian, bicycle->Cyclist, truck->Truck, train->Tram), and Van /
    Person_sitting labels are ignored in Car / Pedestrian as the KITTI devkit does. With COCO
    labels and no class map, every labeled category is evaluated.
    """
    gt, index = read_ground_truth(gt_path, gt_format)
    is_kitti = index is None
    if is_kitti and iou_type != "bbox":
        raise ValueError("KITTI labels have boxes only; use --iou-type bbox")
    predictions = read_predictions(pred_path, index, set(gt))
    pred_names = {o.class_name for f in predictions.frames.values() for o in f.objects}
    gt_names = {o.class_name for f in gt.values() for o in f.objects}
    plan = plan_classes(
        pred_names,
        gt_names,
        class_map=class_map,
        default_map=COCO_TO_KITTI if is_kitti else None,
        all_gt_classes=not is_kitti and not class_map,
    )
    return evaluate(
        gt,
        predictions.frames,
        plan,
        ignore_as=KITTI_NEIGHBOURS if is_kitti else None,
        iou_type=iou_type,
        max_dets=max_dets,
        failed_frames=tuple(predictions.failed),
    )
